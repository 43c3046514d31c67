//! The depthwise convolution (`groups == in_c`): a direct kernel, because as a GEMM every group
//! would be a single-row product with nothing to amortise the packing.
//!
//! Output channel `o` (of `in_c * depth_multiplier`) convolves input channel
//! `o / depth_multiplier` with its own `k_h x k_w` filter (weights `[out_c, 1, k_h, k_w]`).
//! Each output row is computed tap by tap: for a tap `(kh, kw)` the output columns whose input
//! is inside the image form one contiguous range, computed once per call, so the inner loop is
//! a branch-free `out[ow] += w * in[ow*stride + offset]` over that range (a unit-stride,
//! vectorisable loop when `stride_w == 1`) and the padded border is simply skipped, never
//! tested per pixel. Output planes are spread over rayon tasks. Accumulation is in f32,
//! starting from the bias. This module does not handle grouped convolutions with more than one
//! channel per group (that is the im2col path of [`crate::conv2d`]).

use crate::conv::check_conv_args;
use crate::im2col::valid_range;
use crate::{Activation, Conv2dGeometry, KernelError};
use rayon::prelude::*;

/// Multiply-accumulates a rayon task should at least get.
const TASK_MIN_MACS: usize = 1 << 14;

/// Convolution of `batch` images `input[batch, in_c, in_h, in_w]` with
/// `weights[out_c, in_c/groups, k_h, k_w]`, optional `bias[out_c]`, fused activation, into
/// `output[batch, out_c, out_h, out_w]` (overwritten).
///
/// The geometry must have `groups == in_c` (so `out_c = in_c * depth_multiplier`); anything
/// else is [`KernelError::NotDepthwise`]. A single input channel with `groups == 1` is accepted
/// too: it is the same computation.
pub fn depthwise_conv2d(
    geom: &Conv2dGeometry,
    input: &[f32],
    batch: usize,
    weights: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
) -> Result<(), KernelError> {
    check_conv_args(geom, input, batch, weights, bias, output)?;
    if geom.groups != geom.in_c {
        return Err(KernelError::NotDepthwise {
            groups: geom.groups,
            in_c: geom.in_c,
        });
    }
    if batch == 0 {
        return Ok(());
    }
    let taps = geom.k_h * geom.k_w;
    let plane_in = geom.in_h * geom.in_w;
    let plane_out = geom.out_h * geom.out_w;
    let dm = geom.out_c_per_group();
    // One entry per kernel column; k_w is bounded by the weights the caller already holds.
    let cols: Vec<TapCols> = (0..geom.k_w).map(|kw| TapCols::new(geom, kw)).collect();
    let min_planes = TASK_MIN_MACS.div_ceil((plane_out * taps).max(1));
    output
        .par_chunks_mut(plane_out)
        .enumerate()
        .with_min_len(min_planes)
        .for_each(|(i, out)| {
            let (n, o) = (i / geom.out_c, i % geom.out_c);
            let c = o / dm;
            let src = &input[(n * geom.in_c + c) * plane_in..][..plane_in];
            let w = &weights[o * taps..(o + 1) * taps];
            out.fill(bias.map_or(0.0, |b| b[o]));
            plane(geom, &cols, src, w, out);
            act.apply(out);
        });
    Ok(())
}

/// For kernel column `kw`: the output columns `[lo, hi)` whose input column is inside the
/// image, and the input column `start` read by output column `lo`.
#[derive(Debug, Clone, Copy)]
struct TapCols {
    lo: usize,
    hi: usize,
    start: usize,
}

impl TapCols {
    fn new(geom: &Conv2dGeometry, kw: usize) -> Self {
        let offset = kw * geom.dil_w;
        let (lo, hi) = valid_range(geom.out_w, geom.stride_w, geom.pad_left, offset, geom.in_w);
        // lo*stride + offset >= pad_left whenever the range is not empty.
        let start = (lo * geom.stride_w + offset).saturating_sub(geom.pad_left);
        Self { lo, hi, start }
    }
}

/// Accumulates one input plane `src[in_h, in_w]` convolved with `w[k_h, k_w]` into
/// `out[out_h, out_w]` (already holding the bias).
fn plane(geom: &Conv2dGeometry, cols: &[TapCols], src: &[f32], w: &[f32], out: &mut [f32]) {
    let (sw, in_w) = (geom.stride_w, geom.in_w);
    for (oh, orow) in out.chunks_exact_mut(geom.out_w).enumerate() {
        for (kh, wrow) in w.chunks_exact(geom.k_w).enumerate() {
            let ih = (oh * geom.stride_h + kh * geom.dil_h)
                .checked_sub(geom.pad_top)
                .filter(|&ih| ih < geom.in_h);
            let Some(ih) = ih else { continue };
            let irow = &src[ih * in_w..(ih + 1) * in_w];
            for (tap, &wv) in cols.iter().zip(wrow) {
                let dst = &mut orow[tap.lo..tap.hi];
                if dst.is_empty() {
                    continue;
                }
                if sw == 1 {
                    let s = &irow[tap.start..tap.start + dst.len()];
                    for (d, x) in dst.iter_mut().zip(s) {
                        *d += wv * x;
                    }
                } else {
                    for (d, x) in dst.iter_mut().zip(irow[tap.start..].iter().step_by(sw)) {
                        *d += wv * x;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Conv2dSpec, Padding};

    #[test]
    fn box_filter_with_same_padding() {
        // One 3x3 channel of ones, 3x3 box filter, same padding: counts of real neighbours.
        let spec = Conv2dSpec {
            filters: 2,
            kernel: [3, 3],
            stride: [1, 1],
            dilation: [1, 1],
            padding: Padding::Same,
            groups: 1,
        };
        let g = Conv2dGeometry::resolve(1, 3, 3, &spec).unwrap();
        let input = [1.0f32; 9];
        let mut w = vec![1.0f32; 9];
        w.extend([2.0f32; 9]);
        let mut out = [0.0f32; 18];
        depthwise_conv2d(
            &g,
            &input,
            1,
            &w,
            Some(&[0.0, 1.0]),
            Activation::Linear,
            &mut out,
        )
        .unwrap();
        assert_eq!(&out[..9], &[4.0, 6.0, 4.0, 6.0, 9.0, 6.0, 4.0, 6.0, 4.0]);
        assert_eq!(
            &out[9..],
            &[9.0, 13.0, 9.0, 13.0, 19.0, 13.0, 9.0, 13.0, 9.0]
        );
    }

    #[test]
    fn rejects_a_grouped_geometry() {
        let spec = Conv2dSpec {
            filters: 4,
            kernel: [3, 3],
            stride: [1, 1],
            dilation: [1, 1],
            padding: Padding::Valid,
            groups: 2,
        };
        let g = Conv2dGeometry::resolve(4, 3, 3, &spec).unwrap();
        let input = [0.0; 36];
        let w = [0.0; 4 * 2 * 9];
        let mut out = [0.0; 4];
        let r = depthwise_conv2d(&g, &input, 1, &w, None, Activation::Linear, &mut out);
        assert_eq!(r, Err(KernelError::NotDepthwise { groups: 2, in_c: 4 }));
    }
}
