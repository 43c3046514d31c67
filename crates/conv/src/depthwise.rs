//! The depthwise convolution (`groups == in_c`): a direct kernel, because as a GEMM every group
//! would be a single-row product with nothing to amortise the packing.
//!
//! Output channel `o` (of `in_c * depth_multiplier`) convolves input channel
//! `o / depth_multiplier` with its own `k_h x k_w` filter (weights `[out_c, 1, k_h, k_w]`).
//! Each output row is computed tap by tap: for a tap `(kh, kw)` the output columns whose input
//! is inside the image form one contiguous range, computed once per call, so the inner loop is
//! a branch-free `out[ow] += w * in[ow*stride + offset]` over that range (a unit-stride,
//! vectorisable loop when `stride_w == 1`) and the padded border is simply skipped, never
//! tested per pixel. The common 3x3 kernel with unit stride along the row and unit dilation
//! has a fused path: on output rows whose three input rows are inside the image, the interior
//! columns sum all nine taps in one pass (`out[ow] += sum w * in`, nine unit-stride reads, no
//! bounds tests), and the one or two border columns are computed pixel by pixel. On x86-64 CPUs
//! with AVX2 and FMA the plane kernel is compiled a second time with those features enabled
//! (8-wide vectors) and picked at run time. Each output row starts from the bias and gets its
//! activation while it is still in L1. Output planes are spread over rayon tasks. Accumulation
//! is in f32. This module does not handle grouped convolutions with more than one channel per
//! group (that is the im2col path of [`crate::conv2d`]).

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
    depthwise_conv2d_tuned(geom, input, batch, weights, bias, act, output, false)
}

/// [`depthwise_conv2d`], optionally forced onto the portable (baseline target) code even when
/// the CPU has AVX2+FMA. For tests. Not part of the stable API.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn depthwise_conv2d_tuned(
    geom: &Conv2dGeometry,
    input: &[f32],
    batch: usize,
    weights: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
    portable: bool,
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
    let simd = !portable && has_avx2_fma();
    output
        .par_chunks_mut(plane_out)
        .enumerate()
        .with_min_len(min_planes)
        .for_each(|(i, out)| {
            let (n, o) = (i / geom.out_c, i % geom.out_c);
            let c = o / dm;
            let src = &input[(n * geom.in_c + c) * plane_in..][..plane_in];
            let w = &weights[o * taps..(o + 1) * taps];
            let b = bias.map_or(0.0, |b| b[o]);
            if simd {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `simd` is only set when the CPU has AVX2 and FMA.
                unsafe {
                    plane_avx2(geom, &cols, src, w, b, act, out)
                };
            } else {
                plane(geom, &cols, src, w, b, act, out);
            }
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

/// Whether the CPU runs [`plane_avx2`] (detected once).
fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`plane`] compiled with AVX2 and FMA enabled (8-wide vectors).
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_avx2(
    geom: &Conv2dGeometry,
    cols: &[TapCols],
    src: &[f32],
    w: &[f32],
    bias: f32,
    act: Activation,
    out: &mut [f32],
) {
    plane(geom, cols, src, w, bias, act, out)
}

/// Writes `act(bias + src[in_h, in_w] convolved with w[k_h, k_w])` into `out[out_h, out_w]`,
/// row by row. For a 3x3 kernel with unit stride and
/// dilation, the output rows whose three input rows are all inside the image take a fused
/// path over their interior columns (all nine taps in one pass, no bounds tests); everything
/// else goes tap by tap.
#[inline(always)]
fn plane(
    geom: &Conv2dGeometry,
    cols: &[TapCols],
    src: &[f32],
    w: &[f32],
    bias: f32,
    act: Activation,
    out: &mut [f32],
) {
    let g = geom;
    let fused_shape = g.k_h == 3
        && g.k_w == 3
        && g.stride_w == 1
        && g.dil_w == 1
        && g.dil_h == 1
        && g.in_w + g.pad_left >= 2;
    // Interior columns: every tap's input column ow - pad_left + kw is inside the row.
    let ow_lo = g.pad_left.min(g.out_w);
    let ow_hi = if fused_shape {
        (g.in_w + g.pad_left - 2).min(g.out_w).max(ow_lo)
    } else {
        ow_lo
    };
    for (oh, orow) in out.chunks_exact_mut(g.out_w).enumerate() {
        let top = (oh * g.stride_h).checked_sub(g.pad_top);
        let fused = match top {
            Some(ih) if fused_shape && ow_hi > ow_lo && ih + 2 < g.in_h => Some(ih),
            _ => None,
        };
        // Each row starts from the bias and gets its activation while it is in L1.
        orow.fill(bias);
        let Some(ih) = fused else {
            row_taps(g, cols, src, w, oh, orow, 0, g.out_w);
            act.apply(orow);
            continue;
        };
        // The few border columns, pixel by pixel (a tap-by-tap pass costs more per column).
        for ow in (0..ow_lo).chain(ow_hi..g.out_w) {
            orow[ow] += pixel3x3(g, src, w, ih, ow);
        }
        let n = ow_hi - ow_lo;
        let base = ow_lo - g.pad_left;
        let row = |r: usize, kw: usize| &src[(ih + r) * g.in_w + base + kw..][..n];
        let (a0, a1, a2) = (row(0, 0), row(0, 1), row(0, 2));
        let (b0, b1, b2) = (row(1, 0), row(1, 1), row(1, 2));
        let (c0, c1, c2) = (row(2, 0), row(2, 1), row(2, 2));
        let dst = &mut orow[ow_lo..ow_hi];
        let w: &[f32; 9] = w.try_into().expect("3x3 taps");
        for j in 0..n {
            let s0 = w[0] * a0[j] + w[1] * a1[j] + w[2] * a2[j];
            let s1 = w[3] * b0[j] + w[4] * b1[j] + w[5] * b2[j];
            let s2 = w[6] * c0[j] + w[7] * c1[j] + w[8] * c2[j];
            dst[j] += s0 + s1 + s2;
        }
        act.apply(orow);
    }
}

/// The 3x3 sum of one output pixel whose input rows `ih .. ih + 3` are inside the image, for
/// any column `ow` (unit stride and dilation; padded columns contribute nothing).
#[inline(always)]
fn pixel3x3(g: &Conv2dGeometry, src: &[f32], w: &[f32], ih: usize, ow: usize) -> f32 {
    let mut sum = 0.0;
    for kw in 0..3 {
        let Some(iw) = (ow + kw).checked_sub(g.pad_left).filter(|&iw| iw < g.in_w) else {
            continue;
        };
        for kh in 0..3 {
            sum += w[kh * 3 + kw] * src[(ih + kh) * g.in_w + iw];
        }
    }
    sum
}

/// Accumulates all taps into output columns `[c0, c1)` of output row `oh`, tap by tap: for a
/// tap the valid columns form one range, so the inner loop is branch-free.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn row_taps(
    geom: &Conv2dGeometry,
    cols: &[TapCols],
    src: &[f32],
    w: &[f32],
    oh: usize,
    orow: &mut [f32],
    c0: usize,
    c1: usize,
) {
    let (sw, in_w) = (geom.stride_w, geom.in_w);
    for (kh, wrow) in w.chunks_exact(geom.k_w).enumerate() {
        let ih = (oh * geom.stride_h + kh * geom.dil_h)
            .checked_sub(geom.pad_top)
            .filter(|&ih| ih < geom.in_h);
        let Some(ih) = ih else { continue };
        let irow = &src[ih * in_w..(ih + 1) * in_w];
        for (tap, &wv) in cols.iter().zip(wrow) {
            let (lo, hi) = (tap.lo.max(c0), tap.hi.min(c1));
            if lo >= hi {
                continue;
            }
            let dst = &mut orow[lo..hi];
            // Input column read by output column lo.
            let start = tap.start + (lo - tap.lo) * sw;
            if sw == 1 {
                let s = &irow[start..start + dst.len()];
                for (d, x) in dst.iter_mut().zip(s) {
                    *d += wv * x;
                }
            } else {
                for (d, x) in dst.iter_mut().zip(irow[start..].iter().step_by(sw)) {
                    *d += wv * x;
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
