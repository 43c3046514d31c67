//! Transposed convolution (ONNX ConvTranspose, "deconvolution"): the im2col trick run
//! backwards. Per image and group, one GEMM `cols = W_g^T [M_g*kh*kw x C_g] x x_g [C_g x H*W]`
//! gives every input pixel's contribution to every kernel tap; `col2im` then adds each column
//! into the output window it covers (stride, dilation, padding as the forward convolution's),
//! and the bias is added. Weights are `[C, M/group, kh, kw]` (ONNX's layout), the output
//! `[N, M, OH, OW]` with `OH = stride * (H - 1) + output_padding + dil * (kh - 1) + 1 -
//! pad_top - pad_bottom`.
//!
//! [`conv_transpose2d_direct`] is the naive reference (a scatter loop, f64 accumulation) the
//! GEMM path is property-tested against. Nothing here threads; the column buffer of one group
//! of one image is allocated fallibly per call.

use crate::gemm::{gemm, MatMut, MatRef};
use crate::KernelError;

/// A transposed convolution resolved against its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTranspose2dGeometry {
    pub in_c: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_c: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// `[top, bottom, left, right]`, cropped from the full output.
    pub pads: [usize; 4],
    pub output_padding: [usize; 2],
    pub groups: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl ConvTranspose2dGeometry {
    /// Resolves the output size; `None` when it is not positive, overflows, or the channels do
    /// not split into `groups`.
    #[allow(clippy::too_many_arguments)]
    pub fn resolve(
        in_c: usize,
        [in_h, in_w]: [usize; 2],
        out_c: usize,
        [k_h, k_w]: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
        pads: [usize; 4],
        output_padding: [usize; 2],
        groups: usize,
    ) -> Option<Self> {
        if groups == 0
            || !in_c.is_multiple_of(groups)
            || !out_c.is_multiple_of(groups)
            || k_h == 0
            || k_w == 0
        {
            return None;
        }
        let size = |i: usize, k: usize, s: usize, d: usize, op: usize, p: usize| -> Option<usize> {
            let full = s
                .checked_mul(i.checked_sub(1)?)?
                .checked_add(op)?
                .checked_add(d.checked_mul(k - 1)?)?
                .checked_add(1)?;
            full.checked_sub(p).filter(|&o| o > 0)
        };
        let out_h = size(
            in_h,
            k_h,
            stride[0],
            dilation[0],
            output_padding[0],
            pads[0] + pads[1],
        )?;
        let out_w = size(
            in_w,
            k_w,
            stride[1],
            dilation[1],
            output_padding[1],
            pads[2] + pads[3],
        )?;
        Some(Self {
            in_c,
            in_h,
            in_w,
            out_c,
            k_h,
            k_w,
            stride,
            dilation,
            pads,
            output_padding,
            groups,
            out_h,
            out_w,
        })
    }

    /// Multiply-accumulates of one image: every input value times every tap of its group
    /// (`None` when that overflows).
    pub fn macs(&self) -> Option<u64> {
        [
            self.in_c,
            self.in_h,
            self.in_w,
            self.out_c / self.groups.max(1),
            self.k_h,
            self.k_w,
        ]
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
    }

    /// The GEMM of one group of one image: `M x K x N` = `(M/g * kh * kw) x C/g x (H * W)`.
    pub fn gemm_mkn(&self) -> [usize; 3] {
        [
            self.out_c / self.groups * self.k_h * self.k_w,
            self.in_c / self.groups,
            self.in_h * self.in_w,
        ]
    }
}

/// The product of `dims`, or an error naming `what` when it overflows.
fn product(what: &'static str, dims: &[usize]) -> Result<usize, KernelError> {
    dims.iter().try_fold(1usize, |a, &d| {
        a.checked_mul(d).ok_or_else(|| KernelError::Invalid {
            what,
            reason: format!("the dimensions {dims:?} overflow the address space"),
        })
    })
}

fn check(
    g: &ConvTranspose2dGeometry,
    x: &[f32],
    batch: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    out: &[f32],
) -> Result<(), KernelError> {
    let want = |what: &'static str, expected: Result<usize, KernelError>, found: usize| {
        let expected = expected?;
        if expected == found {
            Ok(())
        } else {
            Err(KernelError::Length {
                what,
                expected,
                found,
            })
        }
    };
    want(
        "input",
        product("input", &[batch, g.in_c, g.in_h, g.in_w]),
        x.len(),
    )?;
    want(
        "weights",
        product("weights", &[g.in_c, g.out_c / g.groups, g.k_h, g.k_w]),
        w.len(),
    )?;
    want(
        "output",
        product("output", &[batch, g.out_c, g.out_h, g.out_w]),
        out.len(),
    )?;
    if let Some(b) = bias {
        want("bias", Ok(g.out_c), b.len())?;
    }
    Ok(())
}

/// The output cell tap `(ki, kj)` of input pixel `(h, w)` lands on, if inside the output.
#[inline]
fn target(
    g: &ConvTranspose2dGeometry,
    h: usize,
    w: usize,
    ki: usize,
    kj: usize,
) -> Option<(usize, usize)> {
    let oh = (h * g.stride[0] + ki * g.dilation[0]).checked_sub(g.pads[0])?;
    let ow = (w * g.stride[1] + kj * g.dilation[1]).checked_sub(g.pads[2])?;
    (oh < g.out_h && ow < g.out_w).then_some((oh, ow))
}

/// `out = conv_transpose(x, w) + bias` on `batch` images: one GEMM per image and group, then
/// col2im. `out` is overwritten.
pub fn conv_transpose2d(
    g: &ConvTranspose2dGeometry,
    x: &[f32],
    batch: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    check(g, x, batch, w, bias, out)?;
    let [m, k, n] = g.gemm_mkn();
    let cols_len = product("the columns", &[m, n])?;
    let mut cols = cnn_tensor::try_zeroed(cols_len, "the transposed convolution's columns")?;
    let (mg, plane) = (g.out_c / g.groups, g.out_h * g.out_w);
    for b in 0..batch {
        let image = &x[b * g.in_c * n..(b + 1) * g.in_c * n];
        let dst = &mut out[b * g.out_c * plane..(b + 1) * g.out_c * plane];
        for (c, o) in dst.chunks_exact_mut(plane).enumerate() {
            o.fill(bias.map_or(0.0, |bs| bs[c]));
        }
        for grp in 0..g.groups {
            // W_g is [C_g x M_g*kh*kw] row-major: read transposed as [M_g*kh*kw x C_g].
            let wg = &w[grp * k * m..(grp + 1) * k * m];
            let a = MatRef {
                data: wg,
                rows: m,
                cols: k,
                rs: 1,
                cs: m,
            };
            let xb = MatRef::row_major(&image[grp * k * n..(grp + 1) * k * n], k, n, n);
            gemm(a, xb, &mut MatMut::new(&mut cols, m, n, n)?)?;
            // col2im: row (mo, ki, kj) of the columns, at input pixel (h, w), adds into
            // output channel grp * M_g + mo at the cell that tap covers.
            for mo in 0..mg {
                let o = &mut dst[(grp * mg + mo) * plane..(grp * mg + mo + 1) * plane];
                for ki in 0..g.k_h {
                    for kj in 0..g.k_w {
                        let row = &cols[((mo * g.k_h + ki) * g.k_w + kj) * n..][..n];
                        for h in 0..g.in_h {
                            for wi in 0..g.in_w {
                                if let Some((oh, ow)) = target(g, h, wi, ki, kj) {
                                    o[oh * g.out_w + ow] += row[h * g.in_w + wi];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// The naive reference: every input value times every tap, scattered into the output, in f64.
pub fn conv_transpose2d_direct(
    g: &ConvTranspose2dGeometry,
    x: &[f32],
    batch: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    check(g, x, batch, w, bias, out)?;
    let (cg, mg) = (g.in_c / g.groups, g.out_c / g.groups);
    let plane = g.out_h * g.out_w;
    let mut acc = vec![0f64; g.out_c * plane];
    for b in 0..batch {
        for (c, a) in acc.chunks_exact_mut(plane).enumerate() {
            a.fill(bias.map_or(0.0, |bs| bs[c] as f64));
        }
        for c in 0..g.in_c {
            let grp = c / cg;
            for h in 0..g.in_h {
                for wi in 0..g.in_w {
                    let v = x[((b * g.in_c + c) * g.in_h + h) * g.in_w + wi] as f64;
                    for mo in 0..mg {
                        for ki in 0..g.k_h {
                            for kj in 0..g.k_w {
                                if let Some((oh, ow)) = target(g, h, wi, ki, kj) {
                                    let wv = w[((c * mg + mo) * g.k_h + ki) * g.k_w + kj] as f64;
                                    acc[(grp * mg + mo) * plane + oh * g.out_w + ow] += v * wv;
                                }
                            }
                        }
                    }
                }
            }
        }
        for (o, &a) in out[b * g.out_c * plane..(b + 1) * g.out_c * plane]
            .iter_mut()
            .zip(&acc)
        {
            *o = a as f32;
        }
    }
    Ok(())
}
