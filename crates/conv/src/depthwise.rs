//! The depthwise convolution (`groups == in_c`): a direct kernel, because as a GEMM every group
//! would be a single-row product with nothing to amortise the packing.
//!
//! Output channel `o` (of `in_c * depth_multiplier`) convolves input channel
//! `o / depth_multiplier` with its own `k_h x k_w` filter (weights `[out_c, 1, k_h, k_w]`).
//! Each plane is first copied into a zero-padded, stride-phase-split scratch block (one pass
//! over the input plane; stride 2 rows are de-interleaved pair by pair), after which every
//! tap's input is one unit-stride run over the whole plane flattened with a fixed row pitch:
//! the taps are summed in one long branch-free loop (all nine at once for a 3x3 kernel), with
//! no border cases and no strided reads at any stride, padding or dilation, and no per-row
//! overhead on small planes. Rows are then copied out, the bias and a clamping activation (ReLU,
//! Clip) applied as they are (others over the whole plane in one pass after). The layout of that block is computed once per call. On x86-64
//! CPUs with AVX2 and FMA the plane kernel is compiled a second time with those features
//! enabled (8-wide vectors) and picked at run time. Planes are spread over rayon tasks, each
//! with its own scratch. Accumulation is in f32. This module does not handle grouped
//! convolutions with more than one channel per group (that is the im2col path of
//! [`crate::conv2d`]).

use crate::activation::{at_least, at_most};
use crate::error::check_conv_args;
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
    let min_planes = TASK_MIN_MACS.div_ceil((plane_out * taps).max(1));
    let simd = !portable && crate::isa::selected().has_avx2();
    let layout = Phased::new(geom);
    output
        .par_chunks_mut(plane_out)
        .enumerate()
        .with_min_len(min_planes)
        .for_each_init(Vec::new, |scratch, (i, out)| {
            let (n, o) = (i / geom.out_c, i % geom.out_c);
            let c = o / dm;
            let src = &input[(n * geom.in_c + c) * plane_in..][..plane_in];
            let w = &weights[o * taps..(o + 1) * taps];
            let b = bias.map_or(0.0, |b| b[o]);
            if simd {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `simd` is only set when the CPU has AVX2 and FMA.
                unsafe {
                    plane_phased_avx2(geom, &layout, src, w, b, act, out, scratch)
                };
            } else {
                plane_phased(geom, &layout, src, w, b, act, out, scratch);
            }
        });
    Ok(())
}

/// The layout of [`plane_phased`]'s scratch block, the same for every plane of a call (computed
/// once: its divisions would cost a small plane as much as its arithmetic).
struct Phased {
    /// Padded input rows any tap reads.
    rows: usize,
    /// Columns of a phase (its row pitch) and values of one phase.
    width: usize,
    phase_len: usize,
    /// Outputs of the flat run (`out_h` rows of pitch `width`, the last one `out_w` long).
    len: usize,
    /// Input columns that land inside the span.
    n: usize,
    /// Where tap `(kh, kw)`'s run starts in the block, in the weights' order.
    taps: Vec<usize>,
}

impl Phased {
    fn new(g: &Conv2dGeometry) -> Self {
        let (sh, sw) = (g.stride_h, g.stride_w);
        let rows = (g.out_h - 1) * sh + (g.k_h - 1) * g.dil_h + 1;
        let span = (g.out_w - 1) * sw + (g.k_w - 1) * g.dil_w + 1;
        let (height, width) = (rows.div_ceil(sh), span.div_ceil(sw));
        let phase_len = height * width;
        let taps = (0..g.k_h)
            .flat_map(|kh| (0..g.k_w).map(move |kw| (kh * g.dil_h, kw * g.dil_w)))
            .map(|(r, c)| ((r % sh) * sw + c % sw) * phase_len + (r / sh) * width + c / sw)
            .collect();
        Self {
            rows,
            width,
            phase_len,
            len: (g.out_h - 1) * width + g.out_w,
            n: g.in_w.min(span.saturating_sub(g.pad_left)),
            taps,
        }
    }
}

/// [`plane_phased`] compiled with AVX2 and FMA enabled.
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn plane_phased_avx2(
    geom: &Conv2dGeometry,
    layout: &Phased,
    src: &[f32],
    w: &[f32],
    bias: f32,
    act: Activation,
    out: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    plane_phased(geom, layout, src, w, bias, act, out, scratch)
}

/// One plane through a zero-padded, phase-split copy of its input: padded row `r` and column
/// `c` go to phase `(r % stride_h, c % stride_w)`, at row `r / stride_h`, column
/// `c / stride_w` of a `height x width` block. Then the input of tap `(kh, kw)` for output
/// `(oh, ow)` sits at `(oh + kh*dil_h/stride_h) * width + ow + kw*dil_w/stride_w` of one phase:
/// over the whole plane, flattened with row pitch `width`, every tap is a single unit-stride
/// run. The kernel sums all taps over that flat run — one long vectorisable loop whatever the
/// stride, padding, dilation or plane size (the `width - out_w` columns between rows are
/// computed and dropped) — copies the rows out adding the bias and clamping (ReLU, Clip), or
/// else applies the activation to the whole output plane at once after the copy. The copy in
/// costs one pass over the input plane.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn plane_phased(
    g: &Conv2dGeometry,
    layout: &Phased,
    src: &[f32],
    w: &[f32],
    bias: f32,
    act: Activation,
    out: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let (sh, sw) = (g.stride_h, g.stride_w);
    let Phased {
        rows,
        width,
        phase_len,
        len,
        n,
        ..
    } = *layout;
    // Zero-filled once per scratch: every plane of a call copies its input to the same places,
    // so the padding written as zeros for the first plane stays zero for the next ones.
    if scratch.len() != sh * sw * phase_len + len {
        scratch.clear();
        scratch.resize(sh * sw * phase_len + len, 0.0);
    }
    let (phases, acc) = scratch.split_at_mut(sh * sw * phase_len);
    // Padded row `r` is row `r / sh` of phase `r % sh`; both are stepped, not divided (a
    // division per row costs as much as a small plane's whole row of work).
    let (mut phase, mut phase_row) = (0, 0);
    for r in 0..rows {
        let (ph, at) = (phase, phase_row * width);
        phase += 1;
        if phase == sh {
            (phase, phase_row) = (0, phase_row + 1);
        }
        let Some(ih) = r.checked_sub(g.pad_top).filter(|&ih| ih < g.in_h) else {
            continue; // a padding row stays zero
        };
        let irow = &src[ih * g.in_w..(ih + 1) * g.in_w];
        let block = &mut phases[ph * sw * phase_len..][..sw * phase_len];
        if sw == 1 {
            block[at + g.pad_left..][..n].copy_from_slice(&irow[..n]);
        } else if sw == 2 {
            deinterleave2(irow, n, g.pad_left, at, block.split_at_mut(phase_len));
        } else {
            for (iw, &v) in irow[..n].iter().enumerate() {
                let c = iw + g.pad_left;
                block[(c % sw) * phase_len + at + c / sw] = v;
            }
        }
    }
    let tap = |kh: usize, kw: usize| {
        let start = layout.taps[kh * g.k_w + kw];
        &phases[start..start + len]
    };
    if g.k_h == 3 && g.k_w == 3 {
        let (a0, a1, a2) = (tap(0, 0), tap(0, 1), tap(0, 2));
        let (b0, b1, b2) = (tap(1, 0), tap(1, 1), tap(1, 2));
        let (c0, c1, c2) = (tap(2, 0), tap(2, 1), tap(2, 2));
        let w: &[f32; 9] = w.try_into().expect("3x3 taps");
        for (t, a) in acc.iter_mut().enumerate() {
            let s0 = w[0] * a0[t] + w[1] * a1[t] + w[2] * a2[t];
            let s1 = w[3] * b0[t] + w[4] * b1[t] + w[5] * b2[t];
            let s2 = w[6] * c0[t] + w[7] * c1[t] + w[8] * c2[t];
            *a = s0 + s1 + s2;
        }
    } else if matches!(g.k_w, 3 | 5 | 7) {
        // A row of taps per pass over the run (5x5: five passes, not twenty-five).
        for (kh, wrow) in w.chunks_exact(g.k_w).enumerate() {
            let first = kh == 0;
            match g.k_w {
                3 => row_taps::<3>(acc, std::array::from_fn(|kw| tap(kh, kw)), wrow, first),
                5 => row_taps::<5>(acc, std::array::from_fn(|kw| tap(kh, kw)), wrow, first),
                _ => row_taps::<7>(acc, std::array::from_fn(|kw| tap(kh, kw)), wrow, first),
            }
        }
    } else {
        acc.fill(0.0);
        for (kh, wrow) in w.chunks_exact(g.k_w).enumerate() {
            for (kw, &wv) in wrow.iter().enumerate() {
                acc.iter_mut()
                    .zip(tap(kh, kw))
                    .for_each(|(a, &x)| *a += wv * x);
            }
        }
    }
    // The rows out of the flat run; bias and a clamping activation are applied on the way,
    // others over the whole plane at once after it (one long loop, not one per row).
    let rows = out
        .chunks_exact_mut(g.out_w)
        .zip(acc.chunks(width).map(|row| &row[..g.out_w]));
    match act.as_clamp() {
        Some(None) if bias == 0.0 => rows.for_each(|(o, a)| o.copy_from_slice(a)),
        Some(None) => rows.for_each(|(o, a)| finish_row(o, a, |x| x + bias)),
        Some(Some((lo, hi))) => {
            rows.for_each(|(o, a)| finish_row(o, a, |x| at_most(at_least(x + bias, lo), hi)))
        }
        None => {
            rows.for_each(|(o, a)| o.copy_from_slice(a));
            act.apply_with_bias(out, bias);
        }
    }
}

/// One row of `K` taps over the flat run: `acc[t] (+)= sum_k w[k] * taps[k][t]` (assigned
/// when `first`), one branch-free loop the compiler vectorises.
#[inline(always)]
fn row_taps<const K: usize>(acc: &mut [f32], taps: [&[f32]; K], w: &[f32], first: bool) {
    let w: [f32; K] = std::array::from_fn(|k| w[k]);
    let taps: [&[f32]; K] = std::array::from_fn(|k| &taps[k][..acc.len()]);
    if first {
        for (t, a) in acc.iter_mut().enumerate() {
            *a = (0..K).fold(0.0, |s, k| s + w[k] * taps[k][t]);
        }
    } else {
        for (t, a) in acc.iter_mut().enumerate() {
            *a += (0..K).fold(0.0, |s, k| s + w[k] * taps[k][t]);
        }
    }
}

/// `out[i] = f(src[i])`.
#[inline(always)]
fn finish_row(out: &mut [f32], src: &[f32], f: impl Fn(f32) -> f32) {
    out.iter_mut().zip(src).for_each(|(o, &x)| *o = f(x));
}

/// Stride 2: splits the first `n` values of `row` (padded column of value `iw` is
/// `iw + pad`) into the even and odd phase rows starting at `at`, in one pass over pairs.
#[inline(always)]
fn deinterleave2(
    row: &[f32],
    n: usize,
    pad: usize,
    at: usize,
    (even, odd): (&mut [f32], &mut [f32]),
) {
    let mut iw = 0;
    if pad % 2 == 1 && n > 0 {
        odd[at + pad / 2] = row[0];
        iw = 1;
    }
    // From here the padded column iw + pad is even.
    let j0 = at + (iw + pad) / 2;
    let pairs = (n - iw) / 2;
    let src = row[iw..iw + 2 * pairs].chunks_exact(2);
    for ((e, o), pair) in even[j0..j0 + pairs]
        .iter_mut()
        .zip(&mut odd[j0..j0 + pairs])
        .zip(src)
    {
        *e = pair[0];
        *o = pair[1];
    }
    if (n - iw) % 2 == 1 {
        even[j0 + pairs] = row[n - 1];
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
