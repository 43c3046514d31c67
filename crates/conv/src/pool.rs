//! Pooling: windowed max and average over each channel plane, and their global versions.
//!
//! Padded cells never take part (Keras/TensorFlow semantics): max pooling takes the maximum of
//! the real cells of the window only, and average pooling divides by the number of real cells,
//! not by the window size. [`Pool2dGeometry::resolve`] guarantees every window holds at least
//! one real cell. Each window is clipped to the image once (a row range and a column range), so
//! there are no per-cell bounds tests: the window's rows are reduced element-wise into one row
//! (vectorised), then each output reduces its columns of that row. Planes are spread over
//! rayon tasks; each task allocates one row of scratch.

use crate::error::{check_len, check_pool_geometry, mul_len};
use crate::{KernelError, Pool2dGeometry};
use rayon::prelude::*;

/// Input cells a rayon task should at least read.
const TASK_MIN_CELLS: usize = 1 << 14;

/// Max pooling `input[batch, c, in_h, in_w]` -> `output[batch, c, out_h, out_w]`.
pub fn max_pool2d(
    geom: &Pool2dGeometry,
    input: &[f32],
    batch: usize,
    output: &mut [f32],
) -> Result<(), KernelError> {
    pool(geom, input, batch, output, Reduce::Max)
}

/// Average pooling (padded cells excluded from the count).
pub fn avg_pool2d(
    geom: &Pool2dGeometry,
    input: &[f32],
    batch: usize,
    output: &mut [f32],
) -> Result<(), KernelError> {
    pool(geom, input, batch, output, Reduce::Avg { limits: None })
}

/// Average pooling that counts padded cells (ONNX `count_include_pad`, PyTorch's default):
/// every window divides by its cells inside the padding the layer declares. `overhang` is
/// the part of the geometry's bottom and right padding that is not declared (ceil mode's
/// extra row or column): cells there are not counted.
pub fn avg_pool2d_include_pad(
    geom: &Pool2dGeometry,
    input: &[f32],
    batch: usize,
    output: &mut [f32],
    overhang: [usize; 2],
) -> Result<(), KernelError> {
    let limit = |pad_begin: usize, len: usize, pad_end: usize, extra: usize| {
        pad_begin + len + pad_end.saturating_sub(extra)
    };
    let limits = [
        limit(geom.pad_top, geom.in_h, geom.pad_bottom, overhang[0]),
        limit(geom.pad_left, geom.in_w, geom.pad_right, overhang[1]),
    ];
    pool(
        geom,
        input,
        batch,
        output,
        Reduce::Avg {
            limits: Some(limits),
        },
    )
}

/// What a pooling window computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reduce {
    Max,
    /// The mean: over the real cells of the window (`limits: None`), or over its cells before
    /// `limits` (the end of the declared padding, in padded coordinates, per axis).
    Avg {
        limits: Option<[usize; 2]>,
    },
}

/// Runs `reduce` over the real cells of every window of every plane.
fn pool(
    geom: &Pool2dGeometry,
    input: &[f32],
    batch: usize,
    output: &mut [f32],
    reduce: Reduce,
) -> Result<(), KernelError> {
    check_pool_geometry(geom)?;
    check_len(
        "input",
        input.len(),
        mul_len("input", batch, geom.in_len())?,
    )?;
    check_len(
        "output",
        output.len(),
        mul_len("output", batch, geom.out_len())?,
    )?;
    if batch == 0 {
        return Ok(());
    }
    let g = geom;
    let plane_in = g.in_h * g.in_w;
    let plane_out = g.out_h * g.out_w;
    let min_planes = TASK_MIN_CELLS.div_ceil(plane_in.max(1));
    let avx2 = crate::isa::selected().has_avx2();
    output
        .par_chunks_mut(plane_out)
        .zip(input.par_chunks(plane_in))
        .with_min_len(min_planes)
        .for_each_init(
            || vec![0.0f32; 2 * g.in_w],
            |scratch, (out, src)| {
                #[cfg(target_arch = "x86_64")]
                if avx2 {
                    // SAFETY: the selected build runs AVX2 only on CPUs that have it.
                    return unsafe { pool_plane_avx2(g, src, out, scratch, reduce) };
                }
                let _ = avx2;
                pool_plane(g, src, out, scratch, reduce)
            },
        );
    Ok(())
}

/// [`pool_plane`] compiled with AVX2 enabled (8-lane vectors for its row loops).
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pool_plane_avx2(
    g: &Pool2dGeometry,
    src: &[f32],
    out: &mut [f32],
    scratch: &mut [f32],
    reduce: Reduce,
) {
    pool_plane(g, src, out, scratch, reduce)
}

/// One plane: for each output row, the window's input rows are first reduced element-wise
/// into `acc` (`in_w` floats; a unit-stride, vectorisable loop), then each output reduces its
/// columns of `acc`. Outputs whose window is not clipped by the border (the interior) run
/// without any window arithmetic: `pool 2, stride 2` interior outputs pair up `acc` directly;
/// other interior windows are reduced along the row first (`pool_w - 1` vectorisable passes
/// into `slide`, `slide[i]` covering `acc[i .. i + pool_w]`), then every `stride_w`-th value
/// is taken. `scratch` holds `2 * in_w` floats. Inlined into each build's function.
#[inline(always)]
fn pool_plane(
    g: &Pool2dGeometry,
    src: &[f32],
    out: &mut [f32],
    scratch: &mut [f32],
    reduce: Reduce,
) {
    let (acc, slide) = scratch.split_at_mut(g.in_w);
    let (in_w, sw, pw) = (g.in_w, g.stride_w, g.pool_w);
    // Interior outputs: ow*sw >= pad_left and ow*sw - pad_left + pool_w <= in_w.
    let ow_lo = g.pad_left.div_ceil(sw).min(g.out_w);
    let ow_hi = if in_w + g.pad_left >= pw {
        ((in_w + g.pad_left - pw) / sw + 1).min(g.out_w)
    } else {
        0
    }
    .max(ow_lo);
    for (oh, orow) in out.chunks_exact_mut(g.out_w).enumerate() {
        let (h0, h1) = window(oh, g.stride_h, g.pad_top, g.pool_h, g.in_h);
        let rows = h1 - h0;
        acc.copy_from_slice(&src[h0 * in_w..(h0 + 1) * in_w]);
        for ih in h0 + 1..h1 {
            let row = &src[ih * in_w..(ih + 1) * in_w];
            match reduce {
                Reduce::Max => acc.iter_mut().zip(row).for_each(|(a, &v)| *a = a.max(v)),
                Reduce::Avg { .. } => acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v),
            }
        }
        // The rows a mean divides by: the real ones, or those inside the declared padding.
        let rows_counted = match reduce {
            Reduce::Avg {
                limits: Some([limit_h, _]),
            } => g.pool_h.min(limit_h.saturating_sub(oh * g.stride_h)),
            _ => rows,
        };
        let cell = |ow: usize, w0: usize, w1: usize| -> f32 {
            let cells = &acc[w0..w1];
            match reduce {
                Reduce::Max => cells.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)),
                // At least one real cell per window (checked by resolve).
                Reduce::Avg { limits } => {
                    let cols = match limits {
                        Some([_, limit_w]) => pw.min(limit_w.saturating_sub(ow * sw)),
                        None => w1 - w0,
                    };
                    cells.iter().sum::<f32>() / (rows_counted * cols).max(1) as f32
                }
            }
        };
        for ow in (0..ow_lo).chain(ow_hi..g.out_w) {
            let (w0, w1) = window(ow, sw, g.pad_left, pw, in_w);
            orow[ow] = cell(ow, w0, w1);
        }
        let inner = &mut orow[ow_lo..ow_hi];
        let start = ow_lo * sw - g.pad_left;
        if pw == 2 && sw == 2 {
            let pairs = acc[start..start + 2 * inner.len()].chunks_exact(2);
            match reduce {
                Reduce::Max => inner
                    .iter_mut()
                    .zip(pairs)
                    .for_each(|(o, p)| *o = p[0].max(p[1])),
                Reduce::Avg { .. } => {
                    let scale = 1.0 / (rows_counted * 2) as f32;
                    inner
                        .iter_mut()
                        .zip(pairs)
                        .for_each(|(o, p)| *o = (p[0] + p[1]) * scale)
                }
            }
        } else if !inner.is_empty() {
            let starts = (inner.len() - 1) * sw + 1;
            let slide = &mut slide[..starts];
            slide.copy_from_slice(&acc[start..start + starts]);
            for k in 1..pw {
                let next = &acc[start + k..start + k + starts];
                match reduce {
                    Reduce::Max => slide.iter_mut().zip(next).for_each(|(m, &v)| *m = m.max(v)),
                    Reduce::Avg { .. } => slide.iter_mut().zip(next).for_each(|(m, &v)| *m += v),
                }
            }
            let picked = slide.iter().step_by(sw);
            match reduce {
                Reduce::Max => inner.iter_mut().zip(picked).for_each(|(o, &m)| *o = m),
                Reduce::Avg { .. } => {
                    let scale = 1.0 / (rows_counted * pw) as f32;
                    inner
                        .iter_mut()
                        .zip(picked)
                        .for_each(|(o, &m)| *o = m * scale)
                }
            }
        }
    }
}

/// The input range `[lo, hi)` covered by output `o`'s window along one axis, clipped to the
/// image.
fn window(o: usize, stride: usize, pad: usize, size: usize, input: usize) -> (usize, usize) {
    let start = o * stride;
    let lo = start.saturating_sub(pad).min(input);
    let hi = (start + size).saturating_sub(pad).min(input);
    (lo, hi.max(lo))
}

/// Global average pooling `input[batch, channels, spatial]` -> `output[batch, channels]`.
/// The sum of each plane is accumulated in f64.
pub fn global_avg_pool2d(
    input: &[f32],
    batch: usize,
    channels: usize,
    spatial: usize,
    output: &mut [f32],
) -> Result<(), KernelError> {
    global(input, batch, channels, spatial, output, |plane| {
        (sum_f64(plane) / plane.len() as f64) as f32
    })
}

/// The sum of `values` in f64, over eight independent lanes (so it vectorises: one f64 chain
/// would wait on each addition's latency).
fn sum_f64(values: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = values.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| f64::from(v)).sum();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += f64::from(v);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// Global max pooling `input[batch, channels, spatial]` -> `output[batch, channels]`.
pub fn global_max_pool2d(
    input: &[f32],
    batch: usize,
    channels: usize,
    spatial: usize,
    output: &mut [f32],
) -> Result<(), KernelError> {
    global(input, batch, channels, spatial, output, max_lanes)
}

/// The largest of `values` (`f32::max`: a NaN is passed over), over eight independent lanes
/// so it vectorises.
fn max_lanes(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = values.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = l.max(v);
        }
    }
    lanes.iter().fold(tail, |m, &v| m.max(v))
}

/// Reduces every `[spatial]` plane to one value.
fn global<F>(
    input: &[f32],
    batch: usize,
    channels: usize,
    spatial: usize,
    output: &mut [f32],
    reduce: F,
) -> Result<(), KernelError>
where
    F: Fn(&[f32]) -> f32,
{
    if spatial == 0 {
        return Err(KernelError::Invalid {
            what: "global pooling",
            reason: "the input has no spatial positions".into(),
        });
    }
    let planes = mul_len("global pooling output", batch, channels)?;
    check_len("output", output.len(), planes)?;
    check_len("input", input.len(), mul_len("input", planes, spatial)?)?;
    for (o, plane) in output.iter_mut().zip(input.chunks_exact(spatial)) {
        *o = reduce(plane);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Padding, Pool2dSpec};

    fn geom(
        c: usize,
        h: usize,
        w: usize,
        pool: usize,
        stride: usize,
        p: Padding,
    ) -> Pool2dGeometry {
        let spec = Pool2dSpec {
            pool: [pool, pool],
            stride: [stride, stride],
            padding: p,
        };
        Pool2dGeometry::resolve(c, h, w, &spec).unwrap()
    }

    fn iota(n: usize) -> Vec<f32> {
        (1..=n).map(|v| v as f32).collect()
    }

    #[test]
    fn five_by_five_pool2_valid_is_two_by_two() {
        // Rows of 1..25; the last row and column are dropped.
        let g = geom(1, 5, 5, 2, 2, Padding::Valid);
        assert_eq!((g.out_h, g.out_w), (2, 2));
        let x = iota(25);
        let mut out = [0.0; 4];
        max_pool2d(&g, &x, 1, &mut out).unwrap();
        assert_eq!(out, [7.0, 9.0, 17.0, 19.0]);
        avg_pool2d(&g, &x, 1, &mut out).unwrap();
        // (1+2+6+7)/4 = 4, (3+4+8+9)/4 = 6, (11+12+16+17)/4 = 14, (13+14+18+19)/4 = 16.
        assert_eq!(out, [4.0, 6.0, 14.0, 16.0]);
    }

    #[test]
    fn same_padding_excludes_padded_cells() {
        // 5x5, pool 2, stride 2, same: out 3x3 with one padded row/column at the bottom/right.
        let g = geom(1, 5, 5, 2, 2, Padding::Same);
        assert_eq!((g.out_h, g.out_w, g.pad_top, g.pad_bottom), (3, 3, 0, 1));
        let x: Vec<f32> = iota(25).into_iter().map(|v| -v).collect();
        let mut out = [0.0; 9];
        max_pool2d(&g, &x, 1, &mut out).unwrap();
        // Max of negatives: padding (which would be 0) must not win.
        assert_eq!(
            out,
            [-1.0, -3.0, -5.0, -11.0, -13.0, -15.0, -21.0, -23.0, -25.0]
        );
        avg_pool2d(&g, &x, 1, &mut out).unwrap();
        // Right column windows hold 2 real cells: (5+10)/2; bottom-right holds only 25.
        assert_eq!(out[2], -7.5);
        assert_eq!(out[6], -(21.0 + 22.0) / 2.0);
        assert_eq!(out[8], -25.0);
        assert_eq!(out[0], -(1.0 + 2.0 + 6.0 + 7.0) / 4.0);
    }

    #[test]
    fn same_padding_stride_one_pool_three() {
        // 3x3 input 1..9, pool 3, stride 1, same: each output averages its real neighbours.
        let g = geom(1, 3, 3, 3, 1, Padding::Same);
        let x = iota(9);
        let mut out = [0.0; 9];
        avg_pool2d(&g, &x, 1, &mut out).unwrap();
        assert_eq!(out[0], (1.0 + 2.0 + 4.0 + 5.0) / 4.0);
        assert_eq!(out[1], (1.0 + 2.0 + 3.0 + 4.0 + 5.0 + 6.0) / 6.0);
        assert_eq!(out[4], 5.0);
        max_pool2d(&g, &x, 1, &mut out).unwrap();
        assert_eq!(out, [5.0, 6.0, 6.0, 8.0, 9.0, 9.0, 8.0, 9.0, 9.0]);
    }

    #[test]
    fn stride_different_from_pool_and_batches() {
        // 1x4x5, pool 3, stride 1 (overlapping) on two images and two channels.
        let g = geom(2, 4, 5, 3, 1, Padding::Valid);
        assert_eq!((g.out_h, g.out_w), (2, 3));
        let x = iota(2 * 2 * 20);
        let mut out = vec![0.0; 2 * 2 * 6];
        max_pool2d(&g, &x, 2, &mut out).unwrap();
        // Plane p holds 20p+1..20p+20; window (i, j) max is at (i+2, j+2).
        for p in 0..4 {
            let base = 20.0 * p as f32;
            let expect = [13.0, 14.0, 15.0, 18.0, 19.0, 20.0].map(|v| v + base);
            assert_eq!(&out[p * 6..(p + 1) * 6], &expect);
        }
        // Pool 2 stride 3 (gaps): 1x5x5 -> 2x2 windows at rows/cols {0,1} and {3,4}.
        let g = geom(1, 5, 5, 2, 3, Padding::Valid);
        let mut out = [0.0; 4];
        avg_pool2d(&g, &iota(25), 1, &mut out).unwrap();
        assert_eq!(out, [4.0, 7.0, 19.0, 22.0]);
    }

    #[test]
    fn global_pools() {
        let x = [1.0, 2.0, 3.0, 4.0, -1.0, -2.0, -3.0, -6.0];
        let mut out = [0.0; 2];
        global_avg_pool2d(&x, 1, 2, 4, &mut out).unwrap();
        assert_eq!(out, [2.5, -3.0]);
        global_max_pool2d(&x, 1, 2, 4, &mut out).unwrap();
        assert_eq!(out, [4.0, -1.0]);
        let mut out4 = [0.0; 4];
        global_max_pool2d(&x, 2, 2, 2, &mut out4).unwrap();
        assert_eq!(out4, [2.0, 4.0, -1.0, -3.0]);
        assert!(matches!(
            global_avg_pool2d(&x, 1, 2, 3, &mut out),
            Err(KernelError::Length { .. })
        ));
        assert!(global_max_pool2d(&[], 1, 2, 0, &mut out).is_err());
    }

    #[test]
    fn length_errors() {
        let g = geom(1, 5, 5, 2, 2, Padding::Valid);
        let mut out = [0.0; 4];
        assert!(matches!(
            max_pool2d(&g, &iota(24), 1, &mut out),
            Err(KernelError::Length { .. })
        ));
        assert!(matches!(
            avg_pool2d(&g, &iota(25), 1, &mut out[..3]),
            Err(KernelError::Length { .. })
        ));
        let mut bad = g;
        bad.out_h = 3;
        assert!(max_pool2d(&bad, &iota(25), 1, &mut out).is_err());
    }

    #[test]
    fn global_pooling_in_lanes_equals_a_plain_loop() {
        for spatial in [1usize, 7, 8, 9, 23, 64, 100] {
            let x: Vec<f32> = (0..3 * spatial)
                .map(|i| ((i * 7919 % 1000) as f32) / 250.0 - 2.0)
                .collect();
            let (mut max, mut avg) = (vec![0.0; 3], vec![0.0; 3]);
            global_max_pool2d(&x, 1, 3, spatial, &mut max).unwrap();
            global_avg_pool2d(&x, 1, 3, spatial, &mut avg).unwrap();
            for (c, plane) in x.chunks(spatial).enumerate() {
                let m = plane.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let a = plane.iter().map(|&v| f64::from(v)).sum::<f64>() / spatial as f64;
                assert_eq!(max[c], m, "max of {spatial}");
                assert!((f64::from(avg[c]) - a).abs() < 1e-6, "mean of {spatial}");
            }
        }
    }
}
