//! Helpers of the convolution's unit tests: a spec builder, deterministic data and the error
//! measure. Test-only; no kernel code.

use crate::{Conv2dSpec, Padding};

/// `filters` square `k x k` kernels, stride `s`, no dilation.
pub(super) fn spec(filters: usize, k: usize, s: usize, p: Padding, groups: usize) -> Conv2dSpec {
    Conv2dSpec {
        filters,
        kernel: [k, k],
        stride: [s, s],
        dilation: [1, 1],
        padding: p,
        groups,
    }
}

/// A small deterministic pseudo-random sequence in [-1, 1].
pub(super) fn data(len: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The largest element-wise difference of `a` and `b`.
pub(super) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
