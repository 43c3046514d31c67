//! Dense (fully connected) layers: `output[batch, units] = input[batch, in] x W^T + bias`, with
//! weights stored `[units, in_features]` (one row per unit, as Keras' kernel transposed).
//!
//! [`dense`] with a batch of 1 is a matrix-vector product, bound by reading the weights once:
//! each unit's row of weights is dotted with the input using 32 independent f32 lanes (so it
//! vectorises and hides the add latency), and blocks of units are spread over rayon tasks.
//! Larger batches are a single `matrixmultiply::sgemm` over the whole batch, reading the
//! weights through transposed strides (no copy), followed by bias and activation per output
//! row. [`dense_direct`] is the naive reference (f64 accumulation). Nothing here allocates.

use crate::error::{check_len, mul_len};
use crate::gemm::{gemm, MatMut, MatRef};
use crate::{Activation, KernelError};

/// Checks the arguments and returns the number of units (`weights.len() / in_features`).
fn check_args(
    input: &[f32],
    batch: usize,
    in_features: usize,
    weights: &[f32],
    bias: Option<&[f32]>,
    output: &[f32],
) -> Result<usize, KernelError> {
    if in_features == 0 || !weights.len().is_multiple_of(in_features) {
        return Err(KernelError::Invalid {
            what: "dense weights",
            reason: format!(
                "{} values are not a whole number of rows of {in_features} input features",
                weights.len()
            ),
        });
    }
    let units = weights.len() / in_features;
    check_len(
        "dense input",
        input.len(),
        mul_len("dense input", batch, in_features)?,
    )?;
    check_len(
        "dense output",
        output.len(),
        mul_len("dense output", batch, units)?,
    )?;
    if let Some(b) = bias {
        check_len("dense bias", b.len(), units)?;
    }
    Ok(units)
}

/// Dense layer: `output[batch, units] = input[batch, in_features] x weights[units, in_features]^T + bias`.
pub fn dense(
    input: &[f32],
    batch: usize,
    in_features: usize,
    weights: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
) -> Result<(), KernelError> {
    let units = check_args(input, batch, in_features, weights, bias, output)?;
    if batch == 1 {
        gemv(input, in_features, weights, bias, act, output);
        return Ok(());
    }
    gemm(
        MatRef::row_major(input, batch, in_features, in_features),
        // W^T[i, u] = weights[u * in_features + i]: row stride 1, column stride in_features.
        MatRef {
            data: weights,
            rows: in_features,
            cols: units,
            rs: 1,
            cs: in_features,
        },
        &mut MatMut::new(output, batch, units, units)?,
    )?;
    // The bias runs along the rows here (one value per unit), so it is added per row.
    for row in output.chunks_exact_mut(units.max(1)) {
        if let Some(b) = bias {
            row.iter_mut().zip(b).for_each(|(o, b)| *o += b);
        }
        act.apply(row);
    }
    Ok(())
}

/// Units per rayon task of [`gemv`]: at least 64 KiB of weights.
fn gemv_units_per_task(in_features: usize) -> usize {
    (1usize << 14).div_ceil(in_features.max(1))
}

/// `output[u] = act(weights[u, ..] . input + bias[u])` for one sample (lengths checked).
fn gemv(
    input: &[f32],
    in_features: usize,
    weights: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
) {
    use rayon::prelude::*;
    let per_task = gemv_units_per_task(in_features);
    output
        .par_chunks_mut(per_task)
        .zip(weights.par_chunks(per_task * in_features))
        .enumerate()
        .for_each(|(t, (out, w))| {
            for (u, (o, row)) in out.iter_mut().zip(w.chunks_exact(in_features)).enumerate() {
                let b = bias.map_or(0.0, |b| b[t * per_task + u]);
                *o = dot(row, input) + b;
            }
            act.apply(out);
        });
}

/// Dot product with 32 independent lanes (vectorisable without reassociation).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 32;
    let mut acc = [0.0f32; L];
    let (ac, bc) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        let x: &[f32; L] = x.try_into().expect("chunks of L");
        let y: &[f32; L] = y.try_into().expect("chunks of L");
        for i in 0..L {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Reference for [`dense`].
pub fn dense_direct(
    input: &[f32],
    batch: usize,
    in_features: usize,
    weights: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
) -> Result<(), KernelError> {
    let units = check_args(input, batch, in_features, weights, bias, output)?;
    for n in 0..batch {
        for u in 0..units {
            let mut acc = bias.map_or(0.0, |b| f64::from(b[u]));
            for i in 0..in_features {
                acc +=
                    f64::from(input[n * in_features + i]) * f64::from(weights[u * in_features + i]);
            }
            output[n * units + u] = acc as f32;
        }
    }
    act.apply(output);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_example() {
        // 2 samples, 3 features, 2 units.
        let x = [1.0, 2.0, 3.0, -1.0, 0.0, 1.0];
        let w = [1.0, 0.0, -1.0, 0.5, 0.5, 0.5];
        let b = [0.25, -1.0];
        let mut out = [0.0; 4];
        dense(&x, 2, 3, &w, Some(&b), Activation::Linear, &mut out).unwrap();
        assert_eq!(out, [-1.75, 2.0, -1.75, -1.0]);
        dense(&x, 2, 3, &w, Some(&b), Activation::Relu, &mut out).unwrap();
        assert_eq!(out, [0.0, 2.0, 0.0, 0.0]);
    }

    #[test]
    fn errors() {
        let x = [0.0; 6];
        let mut out = [0.0; 4];
        let act = Activation::Linear;
        assert!(matches!(
            dense(&x, 2, 3, &[0.0; 5], None, act, &mut out),
            Err(KernelError::Invalid { .. })
        ));
        assert!(dense(&x, 2, 0, &[], None, act, &mut out).is_err());
        assert!(matches!(
            dense(&x, 2, 3, &[0.0; 6], None, act, &mut out[..3]),
            Err(KernelError::Length { .. })
        ));
        assert!(matches!(
            dense_direct(&x, 2, 3, &[0.0; 6], Some(&[0.0]), act, &mut out),
            Err(KernelError::Length { .. })
        ));
    }
}
