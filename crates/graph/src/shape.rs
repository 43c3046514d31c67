//! Shape helpers every front end uses: numpy broadcasting, "same" padding (Keras' `same` is
//! ONNX's `SAME_UPPER`: the odd cell goes after; `SAME_LOWER` puts it before), a pooling
//! window's output size with or without `ceil_mode`, and the model-file pooling window as the
//! graph's [`PoolGeometry`]. Convolutions resolve through [`cnn_conv::Conv2dGeometry::resolve`]
//! with explicit (possibly asymmetric) pads, which these helpers compute; the kernel crate's
//! own `Padding::Same` gives the same pads as [`same_pads`] with `upper = true` (tested below).
//! Nothing here words an error: the front ends do, in their own style.

use crate::ir::Shape;
use crate::op::PoolGeometry;
use cnn_conv::Pool2dGeometry;

/// numpy broadcasting of two shapes (`None` when they do not broadcast).
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Shape> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        if i + s.len() >= rank {
            s[i + s.len() - rank]
        } else {
            1
        }
    };
    (0..rank)
        .map(|i| {
            let (da, db) = (dim(a, i), dim(b, i));
            if da == db || db == 1 {
                Some(da)
            } else if da == 1 {
                Some(db)
            } else {
                None
            }
        })
        .collect()
}

/// The window's extent with dilation, `dilation * (kernel - 1) + 1` (saturating: a zero kernel
/// or a huge dilation is refused by the geometry, not here).
pub fn effective_kernel(kernel: usize, dilation: usize) -> usize {
    dilation
        .saturating_mul(kernel.saturating_sub(1))
        .saturating_add(1)
}

/// "Same" padding on one axis: the total that makes the output `ceil(input / stride)`, split
/// in two; the odd cell goes after (`upper`: Keras `same`, ONNX `SAME_UPPER`) or before
/// (ONNX `SAME_LOWER`). Returns `(before, after)`.
pub fn same_pads(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    upper: bool,
) -> (usize, usize) {
    let out = input.div_ceil(stride.max(1));
    let total = (out.max(1) - 1)
        .saturating_mul(stride)
        .saturating_add(effective_kernel(kernel, dilation))
        .saturating_sub(input);
    let (small, large) = (total / 2, total - total / 2);
    if upper {
        (small, large)
    } else {
        (large, small)
    }
}

/// Why a pooling window does not fit its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowTooLarge {
    /// The window's extent with dilation.
    pub effective: usize,
    /// The input's extent with its padding.
    pub padded: usize,
}

/// A pooling window's output size on one axis: `floor` (or with `ceil_mode`, `ceil`) of
/// `(padded - effective) / stride + 1`; in ceil mode the last window must start inside the
/// input or its leading padding.
pub fn pool_output(
    input: usize,
    begin: usize,
    end: usize,
    effective: usize,
    stride: usize,
    ceil_mode: bool,
) -> Result<usize, WindowTooLarge> {
    let padded = input.saturating_add(begin).saturating_add(end);
    if effective > padded {
        return Err(WindowTooLarge { effective, padded });
    }
    let span = padded - effective;
    let mut out = if ceil_mode {
        span.div_ceil(stride)
    } else {
        span / stride
    } + 1;
    if ceil_mode && (out - 1) * stride >= input.saturating_add(begin) {
        out -= 1;
    }
    Ok(out)
}

/// A model file's pooling window on `batch` images as the graph's pooling geometry (padding
/// only ever excludes cells: max, or an average over the cells inside).
pub fn pool_geometry(g: &Pool2dGeometry, batch: usize, max: bool) -> PoolGeometry {
    PoolGeometry {
        max,
        count_include_pad: false,
        planes: batch * g.channels,
        in_hw: [g.in_h, g.in_w],
        kernel: [g.pool_h, g.pool_w],
        stride: [g.stride_h, g.stride_w],
        dilation: [1, 1],
        pad_begin: [g.pad_top, g.pad_left],
        pad_end: [g.pad_bottom, g.pad_right],
        out_hw: [g.out_h, g.out_w],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cnn_conv::{Conv2dGeometry, Conv2dSpec, Padding};
    use proptest::prelude::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shapes(&[2, 1, 4], &[3, 1]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast_shapes(&[], &[5]), Some(vec![5]));
        assert_eq!(broadcast_shapes(&[2, 3], &[4, 3]), None);
    }

    #[test]
    fn ceil_mode_drops_a_window_starting_in_the_trailing_padding() {
        // 5 cells, window 2, stride 2: floor 2, ceil 3.
        assert_eq!(pool_output(5, 0, 0, 2, 2, false), Ok(2));
        assert_eq!(pool_output(5, 0, 0, 2, 2, true), Ok(3));
        // 4 cells + 1 trailing pad, window 2, stride 2: a third window would start at 4, in
        // the padding: dropped.
        assert_eq!(pool_output(4, 0, 1, 2, 2, true), Ok(2));
        assert_eq!(
            pool_output(2, 0, 0, 3, 1, false),
            Err(WindowTooLarge {
                effective: 3,
                padded: 2
            })
        );
    }

    proptest! {
        #[test]
        fn same_upper_is_the_kernel_crates_same(
            input in 1usize..40, kernel in 1usize..8, stride in 1usize..5, dilation in 1usize..4,
        ) {
            let spec = Conv2dSpec {
                filters: 1,
                kernel: [kernel, kernel],
                stride: [stride, stride],
                dilation: [dilation, dilation],
                padding: Padding::Same,
                groups: 1,
            };
            let Ok(g) = Conv2dGeometry::resolve(1, input, input, &spec) else {
                return Ok(());
            };
            let (b, a) = same_pads(input, kernel, stride, dilation, true);
            prop_assert_eq!((g.pad_top, g.pad_bottom), (b, a));
            let (lb, la) = same_pads(input, kernel, stride, dilation, false);
            prop_assert_eq!((lb, la), (a, b));
            prop_assert_eq!(g.out_h, input.div_ceil(stride));
        }
    }
}
