//! Locally connected layers: a convolution whose filters are not shared, i.e. every output
//! position `p = oh*out_w + ow` has its own `[out_c, K]` weight matrix
//! (`K = in_c*k_h*k_w`, ordered `(c, kh, kw)` like an im2col row). Weights are
//! `[out_h*out_w, out_c, K]`, bias `[out_c, out_h, out_w]`, groups must be 1, padded cells are 0.
//!
//! With unshared weights there is nothing for a GEMM to reuse, and the full column matrix would
//! be as large as the weights times `1/out_c` (400 MB for a 1000x1000 input with a 10x10
//! window), so it is never built. Instead each position gathers its patch (K values) into a
//! small per-task buffer and does one `[out_c, K] x [K]` mat-vec. Positions are processed in
//! blocks, in parallel with rayon, into a small position-major scratch block that is then
//! written out channel-major with the bias and activation. Accumulation is in f32.
//! [`locally_connected2d_direct`] is the naive reference (f64 accumulation).

use crate::direct::input_at;
use crate::error::{check_conv_geometry, check_len, mul_len};
use crate::{Activation, Conv2dGeometry, KernelError};
use rayon::prelude::*;

/// Bound of the position-major scratch block, in bytes (at least one position is held).
const BLOCK_BYTES: usize = 1 << 20;

/// Positions per rayon task.
const TASK_POSITIONS: usize = 64;

/// Checks the arguments of both locally connected kernels.
fn check_args(
    geom: &Conv2dGeometry,
    input: &[f32],
    batch: usize,
    weights: &[f32],
    bias: Option<&[f32]>,
    output: &[f32],
) -> Result<(), KernelError> {
    check_conv_geometry(geom)?;
    if geom.groups != 1 {
        return Err(KernelError::Invalid {
            what: "locally connected layer",
            reason: format!("groups must be 1, got {}", geom.groups),
        });
    }
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
    let per_position = mul_len("weights", geom.out_c, geom.col_rows())?;
    let w_len = mul_len("weights", geom.col_cols(), per_position)?;
    check_len("locally connected weights", weights.len(), w_len)?;
    if let Some(b) = bias {
        check_len("locally connected bias", b.len(), geom.out_len())?;
    }
    Ok(())
}

/// Locally connected layer (unshared weights): `weights[out_h*out_w, out_c, in_c*k_h*k_w]`,
/// `bias[out_c, out_h, out_w]`. Geometry has groups == 1.
pub fn locally_connected2d(
    geom: &Conv2dGeometry,
    input: &[f32],
    batch: usize,
    weights: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
) -> Result<(), KernelError> {
    check_args(geom, input, batch, weights, bias, output)?;
    if batch == 0 {
        return Ok(());
    }
    let positions = geom.col_cols();
    let out_c = geom.out_c;
    let k = geom.col_rows();
    let per_block = (BLOCK_BYTES / out_c.saturating_mul(4)).clamp(1, positions);
    let mut scratch = cnn_tensor::try_zeroed(per_block * out_c, "the locally connected block")?;
    for (image, out) in input
        .chunks_exact(geom.in_len())
        .zip(output.chunks_exact_mut(geom.out_len()))
    {
        let mut p0 = 0;
        while p0 < positions {
            let p1 = (p0 + per_block).min(positions);
            let block = &mut scratch[..(p1 - p0) * out_c];
            block
                .par_chunks_mut(out_c)
                .enumerate()
                .with_min_len(TASK_POSITIONS)
                .try_for_each_init(
                    || cnn_tensor::try_zeroed(k, "a locally connected patch"),
                    |patch, (j, dst)| -> Result<(), KernelError> {
                        let patch = patch.as_mut().map_err(|e| KernelError::Alloc(e.clone()))?;
                        let p = p0 + j;
                        gather_patch(geom, image, p / geom.out_w, p % geom.out_w, patch);
                        let w = &weights[p * out_c * k..(p + 1) * out_c * k];
                        for (d, row) in dst.iter_mut().zip(w.chunks_exact(k)) {
                            *d = dot(row, patch);
                        }
                        Ok(())
                    },
                )?;
            write_block(block, out, positions, p0, bias, act);
            p0 = p1;
        }
    }
    Ok(())
}

/// Writes the position-major `block[j, out_c]` (positions `p0..`) into the channel-major
/// `out[out_c, positions]`, adding the bias and applying the activation.
fn write_block(
    block: &[f32],
    out: &mut [f32],
    positions: usize,
    p0: usize,
    bias: Option<&[f32]>,
    act: Activation,
) {
    let out_c = out.len() / positions;
    let np = block.len() / out_c;
    for (m, plane) in out.chunks_exact_mut(positions).enumerate() {
        let dst = &mut plane[p0..p0 + np];
        for (d, v) in dst.iter_mut().zip(block[m..].iter().step_by(out_c)) {
            *d = *v;
        }
        if let Some(b) = bias {
            let b = &b[m * positions + p0..m * positions + p0 + np];
            dst.iter_mut().zip(b).for_each(|(d, b)| *d += b);
        }
        act.apply(dst);
    }
}

/// Gathers the receptive field of output `(oh, ow)` of `image[in_c, in_h, in_w]` into `patch`
/// (`in_c*k_h*k_w` values, ordered `(c, kh, kw)`), with 0 for padded cells.
fn gather_patch(geom: &Conv2dGeometry, image: &[f32], oh: usize, ow: usize, patch: &mut [f32]) {
    let plane = geom.in_h * geom.in_w;
    let iw0 = ow * geom.stride_w;
    for (c, patch_c) in patch.chunks_exact_mut(geom.k_h * geom.k_w).enumerate() {
        let src = &image[c * plane..(c + 1) * plane];
        for (kh, dst) in patch_c.chunks_exact_mut(geom.k_w).enumerate() {
            let ih = (oh * geom.stride_h + kh * geom.dil_h)
                .checked_sub(geom.pad_top)
                .filter(|&ih| ih < geom.in_h);
            let Some(ih) = ih else {
                dst.fill(0.0);
                continue;
            };
            let row = &src[ih * geom.in_w..(ih + 1) * geom.in_w];
            for (kw, d) in dst.iter_mut().enumerate() {
                let iw = (iw0 + kw * geom.dil_w).checked_sub(geom.pad_left);
                *d = iw.and_then(|iw| row.get(iw)).copied().unwrap_or(0.0);
            }
        }
    }
}

/// Dot product with eight independent accumulators (so the compiler can vectorise it).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Reference for [`locally_connected2d`].
pub fn locally_connected2d_direct(
    geom: &Conv2dGeometry,
    input: &[f32],
    batch: usize,
    weights: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
) -> Result<(), KernelError> {
    check_args(geom, input, batch, weights, bias, output)?;
    let g = geom;
    let k = g.col_rows();
    for n in 0..batch {
        for m in 0..g.out_c {
            for oh in 0..g.out_h {
                for ow in 0..g.out_w {
                    let p = oh * g.out_w + ow;
                    let mut acc = bias.map_or(0.0, |b| f64::from(b[m * g.col_cols() + p]));
                    for c in 0..g.in_c {
                        for kh in 0..g.k_h {
                            for kw in 0..g.k_w {
                                let x = input_at(g, input, n, c, oh, ow, kh, kw);
                                let r = (c * g.k_h + kh) * g.k_w + kw;
                                let w = weights[(p * g.out_c + m) * k + r];
                                acc += f64::from(w) * f64::from(x);
                            }
                        }
                    }
                    output[((n * g.out_c + m) * g.out_h + oh) * g.out_w + ow] = acc as f32;
                }
            }
        }
    }
    act.apply(output);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Conv2dSpec, Padding};

    fn geom(groups: usize) -> Conv2dGeometry {
        let spec = Conv2dSpec {
            filters: 2,
            kernel: [2, 2],
            stride: [1, 1],
            dilation: [1, 1],
            padding: Padding::Valid,
            groups,
        };
        Conv2dGeometry::resolve(2, 3, 3, &spec).unwrap()
    }

    #[test]
    fn each_position_has_its_own_weights() {
        // 1 channel 2x2 input, 1x1 window, weights = position index + 1 per position.
        let spec = Conv2dSpec {
            filters: 1,
            kernel: [1, 1],
            stride: [1, 1],
            dilation: [1, 1],
            padding: Padding::Valid,
            groups: 1,
        };
        let g = Conv2dGeometry::resolve(1, 2, 2, &spec).unwrap();
        let input = [1.0, 2.0, 3.0, 4.0];
        let w = [1.0, 2.0, 3.0, 4.0];
        let b = [0.5, 0.5, 0.5, -100.0];
        let mut out = [0.0; 4];
        locally_connected2d(&g, &input, 1, &w, Some(&b), Activation::Relu, &mut out).unwrap();
        assert_eq!(out, [1.5, 4.5, 9.5, 0.0]);
    }

    #[test]
    fn errors() {
        let g = geom(1);
        let input = [0.0; 18];
        let w = vec![0.0; 4 * 2 * 8];
        let mut out = [0.0; 8];
        let act = Activation::Linear;
        assert!(locally_connected2d(&g, &input, 1, &w, None, act, &mut out).is_ok());
        assert!(matches!(
            locally_connected2d(&g, &input, 1, &w[1..], None, act, &mut out),
            Err(KernelError::Length { .. })
        ));
        assert!(matches!(
            locally_connected2d(&g, &input, 1, &w, Some(&[0.0; 2]), act, &mut out),
            Err(KernelError::Length { .. })
        ));
        let g2 = geom(2);
        assert!(matches!(
            locally_connected2d_direct(&g2, &input, 1, &w[..32], None, act, &mut out),
            Err(KernelError::Invalid { .. })
        ));
    }
}
