//! Convolution and pooling geometry: a `…Spec` is what the user wrote (kernel, stride, padding
//! rule, dilation, groups); a `…Geometry` is the spec resolved against an input size — explicit
//! top/bottom/left/right padding and the output size — or an error saying why that cannot work.
//!
//! Output size follows the usual rule `(in + pad_total - dilation*(k-1) - 1) / stride + 1`.
//! `Padding::Same` is Keras'/TensorFlow's rule: the output is `ceil(in / stride)` and the padding
//! needed for that is split with any odd remainder going to the bottom/right.
//! Nothing here allocates or computes; it is pure arithmetic on sizes, done with checked
//! operations so that an absurd size is an error, not a wrap.

use std::fmt;

/// How a convolution or pooling window treats the border.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// No padding: windows must fit inside the input.
    Valid,
    /// Keras "same": output `ceil(in / stride)`, odd remainder of padding bottom/right.
    Same,
    /// Explicit symmetric padding `[h, w]` on each side.
    Explicit { h: usize, w: usize },
    /// Explicit asymmetric padding (used by importers).
    Asymmetric {
        top: usize,
        bottom: usize,
        left: usize,
        right: usize,
    },
}

impl fmt::Display for Padding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Padding::Valid => write!(f, "valid"),
            Padding::Same => write!(f, "same"),
            Padding::Explicit { h, w } => write!(f, "[{h}, {w}]"),
            Padding::Asymmetric {
                top,
                bottom,
                left,
                right,
            } => write!(
                f,
                "[top {top}, bottom {bottom}, left {left}, right {right}]"
            ),
        }
    }
}

/// Why a geometry cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    #[error("{what} must be at least 1")]
    Zero { what: &'static str },
    #[error(
        "the {kh}x{kw} window (dilation {dh}x{dw}, {eh}x{ew} effective) is larger than the \
         padded {ph}x{pw} input"
    )]
    WindowTooLarge {
        kh: usize,
        kw: usize,
        dh: usize,
        dw: usize,
        eh: usize,
        ew: usize,
        ph: usize,
        pw: usize,
    },
    #[error(
        "groups = {groups} must divide both the {in_c} input channels and the {out_c} filters"
    )]
    Groups {
        groups: usize,
        in_c: usize,
        out_c: usize,
    },
    #[error("sizes overflow while resolving the geometry")]
    Overflow,
    #[error(
        "padding {pad} is not smaller than the {pool_h}x{pool_w} pool window, so a window could \
         hold nothing but padding"
    )]
    PoolPadding {
        pad: usize,
        pool_h: usize,
        pool_w: usize,
    },
}

/// The user's description of a convolution (before knowing the input size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dSpec {
    pub filters: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub padding: Padding,
    pub groups: usize,
}

/// A convolution resolved against an input `[in_c, in_h, in_w]`.
///
/// Weights are `[out_c, in_c / groups, k_h, k_w]`; for one group `g` that is the row-major
/// `[out_c/groups, (in_c/groups)*k_h*k_w]` GEMM operand starting at `g * weights_per_group()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub in_c: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_c: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dil_h: usize,
    pub dil_w: usize,
    pub pad_top: usize,
    pub pad_bottom: usize,
    pub pad_left: usize,
    pub pad_right: usize,
    pub groups: usize,
    pub out_h: usize,
    pub out_w: usize,
}

/// Resolves one spatial axis: returns `(pad_before, pad_after, out)`.
fn resolve_axis(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    padding: (usize, usize, bool),
) -> Result<(usize, usize, usize, usize), GeometryError> {
    let effective = dilation
        .checked_mul(kernel - 1)
        .and_then(|x| x.checked_add(1))
        .ok_or(GeometryError::Overflow)?;
    let (before, after) = if padding.2 {
        // Keras "same": out = ceil(in / stride).
        let out = input.div_ceil(stride);
        let needed = (out.saturating_sub(1))
            .checked_mul(stride)
            .and_then(|x| x.checked_add(effective))
            .ok_or(GeometryError::Overflow)?;
        let total = needed.saturating_sub(input);
        (total / 2, total - total / 2)
    } else {
        (padding.0, padding.1)
    };
    let padded = input
        .checked_add(before)
        .and_then(|x| x.checked_add(after))
        .ok_or(GeometryError::Overflow)?;
    if effective > padded {
        return Err(GeometryError::WindowTooLarge {
            kh: kernel,
            kw: 0,
            dh: dilation,
            dw: 0,
            eh: effective,
            ew: 0,
            ph: padded,
            pw: 0,
        });
    }
    let out = (padded - effective) / stride + 1;
    Ok((before, after, out, effective))
}

/// Resolves a 2-D window (shared by convolution and pooling):
/// returns `[top, bottom, left, right]` padding and `[out_h, out_w]`.
pub fn resolve_window(
    in_h: usize,
    in_w: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    padding: Padding,
) -> Result<([usize; 4], [usize; 2]), GeometryError> {
    for (v, what) in [
        (in_h, "input height"),
        (in_w, "input width"),
        (kernel[0], "kernel height"),
        (kernel[1], "kernel width"),
        (stride[0], "stride"),
        (stride[1], "stride"),
        (dilation[0], "dilation"),
        (dilation[1], "dilation"),
    ] {
        if v == 0 {
            return Err(GeometryError::Zero { what });
        }
    }
    let (ph, pw, same) = match padding {
        Padding::Valid => ((0, 0), (0, 0), false),
        Padding::Same => ((0, 0), (0, 0), true),
        Padding::Explicit { h, w } => ((h, h), (w, w), false),
        Padding::Asymmetric {
            top,
            bottom,
            left,
            right,
        } => ((top, bottom), (left, right), false),
    };
    let rh = resolve_axis(in_h, kernel[0], stride[0], dilation[0], (ph.0, ph.1, same));
    let rw = resolve_axis(in_w, kernel[1], stride[1], dilation[1], (pw.0, pw.1, same));
    match (rh, rw) {
        (Ok(h), Ok(w)) => Ok(([h.0, h.1, w.0, w.1], [h.2, w.2])),
        (Err(GeometryError::WindowTooLarge { .. }), _)
        | (_, Err(GeometryError::WindowTooLarge { .. })) => {
            let eh = dilation[0].saturating_mul(kernel[0] - 1).saturating_add(1);
            let ew = dilation[1].saturating_mul(kernel[1] - 1).saturating_add(1);
            let (t, b, l, r) = match padding {
                Padding::Explicit { h, w } => (h, h, w, w),
                Padding::Asymmetric {
                    top,
                    bottom,
                    left,
                    right,
                } => (top, bottom, left, right),
                _ => (0, 0, 0, 0),
            };
            Err(GeometryError::WindowTooLarge {
                kh: kernel[0],
                kw: kernel[1],
                dh: dilation[0],
                dw: dilation[1],
                eh,
                ew,
                ph: in_h.saturating_add(t).saturating_add(b),
                pw: in_w.saturating_add(l).saturating_add(r),
            })
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

impl Conv2dGeometry {
    /// Resolves `spec` against an input of `in_c` channels and `in_h x in_w` pixels.
    pub fn resolve(
        in_c: usize,
        in_h: usize,
        in_w: usize,
        spec: &Conv2dSpec,
    ) -> Result<Self, GeometryError> {
        if in_c == 0 {
            return Err(GeometryError::Zero {
                what: "input channels",
            });
        }
        if spec.filters == 0 {
            return Err(GeometryError::Zero { what: "filters" });
        }
        if spec.groups == 0 {
            return Err(GeometryError::Zero { what: "groups" });
        }
        if !in_c.is_multiple_of(spec.groups) || !spec.filters.is_multiple_of(spec.groups) {
            return Err(GeometryError::Groups {
                groups: spec.groups,
                in_c,
                out_c: spec.filters,
            });
        }
        let (pad, out) = resolve_window(
            in_h,
            in_w,
            spec.kernel,
            spec.stride,
            spec.dilation,
            spec.padding,
        )?;
        let g = Self {
            in_c,
            in_h,
            in_w,
            out_c: spec.filters,
            k_h: spec.kernel[0],
            k_w: spec.kernel[1],
            stride_h: spec.stride[0],
            stride_w: spec.stride[1],
            dil_h: spec.dilation[0],
            dil_w: spec.dilation[1],
            pad_top: pad[0],
            pad_bottom: pad[1],
            pad_left: pad[2],
            pad_right: pad[3],
            groups: spec.groups,
            out_h: out[0],
            out_w: out[1],
        };
        // Every size derived later must fit in usize.
        // Checked in this order so that no unchecked product below can overflow: the weight
        // length bounds `col_rows` and the output length bounds `col_cols`.
        g.in_len_checked()
            .and_then(|_| g.out_len_checked())
            .and_then(|_| g.weight_len_checked())
            .and_then(|_| g.col_rows().checked_mul(g.col_cols()))
            .ok_or(GeometryError::Overflow)?;
        Ok(g)
    }

    fn in_len_checked(&self) -> Option<usize> {
        self.in_c.checked_mul(self.in_h)?.checked_mul(self.in_w)
    }

    fn out_len_checked(&self) -> Option<usize> {
        self.out_c.checked_mul(self.out_h)?.checked_mul(self.out_w)
    }

    fn weight_len_checked(&self) -> Option<usize> {
        self.out_c
            .checked_mul(self.in_c / self.groups)?
            .checked_mul(self.k_h)?
            .checked_mul(self.k_w)
    }

    /// Input channels per group.
    pub fn in_c_per_group(&self) -> usize {
        self.in_c / self.groups
    }

    /// Filters per group (the GEMM's M).
    pub fn out_c_per_group(&self) -> usize {
        self.out_c / self.groups
    }

    /// Elements of one input image `[in_c, in_h, in_w]`.
    pub fn in_len(&self) -> usize {
        self.in_c * self.in_h * self.in_w
    }

    /// Elements of one output image `[out_c, out_h, out_w]`.
    pub fn out_len(&self) -> usize {
        self.out_c * self.out_h * self.out_w
    }

    /// Elements of the weight tensor `[out_c, in_c/groups, k_h, k_w]`.
    pub fn weight_len(&self) -> usize {
        self.out_c * self.in_c_per_group() * self.k_h * self.k_w
    }

    /// Rows of one group's column matrix: `(in_c/groups) * k_h * k_w` (the GEMM's K).
    pub fn col_rows(&self) -> usize {
        self.in_c_per_group() * self.k_h * self.k_w
    }

    /// Columns of the column matrix: `out_h * out_w` (the GEMM's N).
    pub fn col_cols(&self) -> usize {
        self.out_h * self.out_w
    }

    /// True when the input already is the column matrix: 1x1 kernel, stride 1, no padding
    /// (dilation is irrelevant for a 1x1 kernel).
    pub fn is_pointwise(&self) -> bool {
        self.k_h == 1
            && self.k_w == 1
            && self.stride_h == 1
            && self.stride_w == 1
            && self.pad_top == 0
            && self.pad_bottom == 0
            && self.pad_left == 0
            && self.pad_right == 0
    }

    /// True for a depthwise convolution: one group per input channel.
    pub fn is_depthwise(&self) -> bool {
        self.groups == self.in_c && self.groups > 1
    }

    /// Multiply-accumulates of one image: `out_c * out_h * out_w * (in_c/groups) * k_h * k_w`
    /// (bias additions are not counted).
    pub fn macs(&self) -> u64 {
        self.out_c as u64
            * self.out_h as u64
            * self.out_w as u64
            * self.in_c_per_group() as u64
            * self.k_h as u64
            * self.k_w as u64
    }
}

/// The user's description of a pooling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2dSpec {
    pub pool: [usize; 2],
    pub stride: [usize; 2],
    pub padding: Padding,
}

/// A pooling window resolved against an input `[c, in_h, in_w]`.
/// Padded cells never take part: max ignores them and average divides by the number of real
/// cells in the window (Keras/TensorFlow semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2dGeometry {
    pub channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub pool_h: usize,
    pub pool_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_top: usize,
    pub pad_bottom: usize,
    pub pad_left: usize,
    pub pad_right: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl Pool2dGeometry {
    /// Resolves `spec` against an input of `channels x in_h x in_w`.
    pub fn resolve(
        channels: usize,
        in_h: usize,
        in_w: usize,
        spec: &Pool2dSpec,
    ) -> Result<Self, GeometryError> {
        if channels == 0 {
            return Err(GeometryError::Zero {
                what: "input channels",
            });
        }
        let (pad, out) = resolve_window(in_h, in_w, spec.pool, spec.stride, [1, 1], spec.padding)?;
        if pad[0] >= spec.pool[0]
            || pad[1] >= spec.pool[0]
            || pad[2] >= spec.pool[1]
            || pad[3] >= spec.pool[1]
        {
            // A window made only of padding has no value to pool.
            return Err(GeometryError::PoolPadding {
                pad: pad.iter().copied().max().unwrap_or(0),
                pool_h: spec.pool[0],
                pool_w: spec.pool[1],
            });
        }
        Ok(Self {
            channels,
            in_h,
            in_w,
            pool_h: spec.pool[0],
            pool_w: spec.pool[1],
            stride_h: spec.stride[0],
            stride_w: spec.stride[1],
            pad_top: pad[0],
            pad_bottom: pad[1],
            pad_left: pad[2],
            pad_right: pad[3],
            out_h: out[0],
            out_w: out[1],
        })
    }

    /// Elements of one input image.
    pub fn in_len(&self) -> usize {
        self.channels * self.in_h * self.in_w
    }

    /// Elements of one output image.
    pub fn out_len(&self) -> usize {
        self.channels * self.out_h * self.out_w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(k: usize, s: usize, p: Padding) -> Conv2dSpec {
        Conv2dSpec {
            filters: 4,
            kernel: [k, k],
            stride: [s, s],
            dilation: [1, 1],
            padding: p,
            groups: 1,
        }
    }

    #[test]
    fn valid_output_size() {
        // 28 - 3 + 1 = 26 (seed 000, first conv of vgg1/vgg2).
        let g = Conv2dGeometry::resolve(1, 28, 28, &spec(3, 1, Padding::Valid)).unwrap();
        assert_eq!((g.out_h, g.out_w), (26, 26));
        assert_eq!(g.col_rows(), 9);
        assert_eq!(g.col_cols(), 676);
    }

    #[test]
    fn same_is_ceil_and_odd_padding_goes_bottom_right() {
        // in 5, k 2, s 1: out 5, total padding 1 -> top 0, bottom 1.
        let g = Conv2dGeometry::resolve(1, 5, 5, &spec(2, 1, Padding::Same)).unwrap();
        assert_eq!((g.out_h, g.pad_top, g.pad_bottom), (5, 0, 1));
        // in 7, k 3, s 2: out 4, needed (4-1)*2+3 = 9 -> total 2 -> 1 and 1.
        let g = Conv2dGeometry::resolve(1, 7, 7, &spec(3, 2, Padding::Same)).unwrap();
        assert_eq!((g.out_h, g.pad_top, g.pad_bottom), (4, 1, 1));
        // in 6, k 3, s 2: out 3, needed 7 -> total 1 -> 0 top, 1 bottom.
        let g = Conv2dGeometry::resolve(1, 6, 6, &spec(3, 2, Padding::Same)).unwrap();
        assert_eq!((g.out_h, g.pad_top, g.pad_bottom), (3, 0, 1));
        // seed 002: 1000x1000, 10x10 window, "same" keeps 1000x1000 (4 top, 5 bottom).
        let g = Conv2dGeometry::resolve(1, 1000, 1000, &spec(10, 1, Padding::Same)).unwrap();
        assert_eq!((g.out_h, g.pad_top, g.pad_bottom), (1000, 4, 5));
    }

    #[test]
    fn window_larger_than_input_is_an_error() {
        let e = Conv2dGeometry::resolve(1, 2, 5, &spec(3, 1, Padding::Valid)).unwrap_err();
        assert!(
            e.to_string().contains("larger than the padded 2x5 input"),
            "{e}"
        );
    }

    #[test]
    fn groups_must_divide() {
        let mut s = spec(3, 1, Padding::Valid);
        s.groups = 3;
        let e = Conv2dGeometry::resolve(4, 8, 8, &s).unwrap_err();
        assert!(matches!(e, GeometryError::Groups { .. }));
    }

    #[test]
    fn pointwise_detection() {
        let g = Conv2dGeometry::resolve(8, 5, 5, &spec(1, 1, Padding::Valid)).unwrap();
        assert!(g.is_pointwise());
        let g = Conv2dGeometry::resolve(8, 5, 5, &spec(1, 2, Padding::Valid)).unwrap();
        assert!(!g.is_pointwise());
    }

    #[test]
    fn pool_geometry() {
        let s = Pool2dSpec {
            pool: [2, 2],
            stride: [2, 2],
            padding: Padding::Valid,
        };
        let g = Pool2dGeometry::resolve(32, 24, 24, &s).unwrap();
        assert_eq!((g.out_h, g.out_w), (12, 12));
        let g = Pool2dGeometry::resolve(32, 5, 5, &s).unwrap();
        assert_eq!((g.out_h, g.out_w), (2, 2));
        let s = Pool2dSpec {
            padding: Padding::Same,
            ..s
        };
        let g = Pool2dGeometry::resolve(32, 5, 5, &s).unwrap();
        assert_eq!((g.out_h, g.out_w, g.pad_bottom), (3, 3, 1));
    }
}
