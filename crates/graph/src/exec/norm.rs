//! The normalisations that run on their own (not folded into a convolution): layer, instance
//! and group normalisation, and local response normalisation — statistics accumulated in f64,
//! in place where the result has the input's shape.

/// Instance normalisation in place: each plane of `inner` values (channel `p % channels`)
/// normalised on its own (statistics in f64), then scaled and shifted by its channel's
/// `scale` and `bias`.
pub fn instance_norm(
    x: &mut [f32],
    channels: usize,
    inner: usize,
    scale: &[f32],
    bias: &[f32],
    epsilon: f32,
) {
    for (p, plane) in x.chunks_exact_mut(inner.max(1)).enumerate() {
        let c = p % channels.max(1);
        let n = plane.len() as f64;
        let mean = plane.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = plane
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let inv = 1.0 / (var + epsilon as f64).sqrt();
        for v in plane.iter_mut() {
            *v = ((*v as f64 - mean) * inv) as f32 * scale[c] + bias[c];
        }
    }
}

/// Local response normalisation across the channels of `[N, channels, inner]`.
pub fn lrn(
    x: &[f32],
    channels: usize,
    inner: usize,
    size: usize,
    [alpha, beta, bias]: [f32; 3],
) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    let (before, after) = ((size - 1) / 2, size - 1 - (size - 1) / 2);
    let image = channels * inner;
    for (img, o) in x
        .chunks_exact(image.max(1))
        .zip(out.chunks_exact_mut(image.max(1)))
    {
        for c in 0..channels {
            let lo = c.saturating_sub(before);
            let hi = (c + after).min(channels - 1);
            for p in 0..inner {
                let sq: f64 = (lo..=hi).map(|k| (img[k * inner + p] as f64).powi(2)).sum();
                let d = (bias as f64 + alpha as f64 / size as f64 * sq).powf(beta as f64);
                o[c * inner + p] = (img[c * inner + p] as f64 / d) as f32;
            }
        }
    }
    out
}

/// Group normalisation in place (statistics in f64): see `Op::GroupNorm`.
pub fn group_norm(
    x: &mut [f32],
    [groups, channels, inner]: [usize; 3],
    scale: &[f32],
    bias: &[f32],
    epsilon: f32,
    per_group: bool,
) {
    let per = channels / groups.max(1) * inner;
    for (k, run) in x.chunks_exact_mut(per.max(1)).enumerate() {
        let g = k % groups.max(1);
        let n = run.len() as f64;
        let mean = run.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = run.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let inv = 1.0 / (var + epsilon as f64).sqrt();
        for (j, v) in run.iter_mut().enumerate() {
            let c = if per_group {
                g
            } else {
                g * (channels / groups) + j / inner.max(1)
            };
            *v = ((*v as f64 - mean) * inv) as f32 * scale[c] + bias[c];
        }
    }
}

/// Layer normalisation of each row of `inner` values in place, statistics in f64.
pub fn layer_norm(x: &mut [f32], inner: usize, scale: &[f32], bias: Option<&[f32]>, epsilon: f32) {
    use rayon::prelude::*;
    // Rows are independent: blocks of them on rayon tasks.
    let inner = inner.max(1);
    let per = (super::ops::PAR_MIN / inner).max(1);
    x.par_chunks_mut(per * inner)
        .for_each(|block| layer_norm_rows(block, inner, scale, bias, epsilon));
}

/// [`layer_norm`] over whole rows of `block`.
fn layer_norm_rows(
    block: &mut [f32],
    inner: usize,
    scale: &[f32],
    bias: Option<&[f32]>,
    epsilon: f32,
) {
    for row in block.chunks_exact_mut(inner) {
        let n = row.len() as f64;
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let inv = 1.0 / (var + epsilon as f64).sqrt();
        for (k, v) in row.iter_mut().enumerate() {
            let y = ((*v as f64 - mean) * inv) as f32 * scale[k];
            *v = y + bias.map_or(0.0, |b| b[k]);
        }
    }
}
