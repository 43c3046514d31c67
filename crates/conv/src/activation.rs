//! Element-wise activations that the kernels fuse into their output (applied to each block
//! right after it is computed), and softmax over the channel axis. The clamps (ReLU, Clip) are
//! compare-and-select loops the compiler vectorises; the others run on [`crate::vmath`]'s
//! vectorised polynomials.
//!
//! Softmax is not an element-wise activation (it needs the whole channel vector), so it is a
//! separate function the model runs on a finished tensor. Nothing here allocates.

use crate::vmath::Elementwise;

/// An element-wise activation a kernel can apply to its output in place.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Activation {
    /// Identity.
    #[default]
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + e^-x)`; saturates to exactly 0 or 1 for large `|x|`, never NaN.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `min(max(x, min), max)` (ONNX Clip; ReLU6 is `Clip { min: 0, max: 6 }`).
    Clip { min: f32, max: f32 },
    /// `x` for `x >= 0`, else `alpha * x`.
    LeakyRelu(f32),
    /// `x * sigmoid(x)` (SiLU, Swish).
    Silu,
    /// `max(0, min(1, alpha * x + beta))`.
    HardSigmoid { alpha: f32, beta: f32 },
    /// `x * max(0, min(1, x / 6 + 1/2))`.
    HardSwish,
    /// `x * Phi(x)`: exact (`erf`), or the `tanh` approximation.
    Gelu { tanh: bool },
}

impl Activation {
    /// The vectorised function of an activation that is not a clamp.
    fn elementwise(self) -> Option<Elementwise> {
        Some(match self {
            Activation::Sigmoid => Elementwise::Sigmoid,
            Activation::Tanh => Elementwise::Tanh,
            Activation::LeakyRelu(a) => Elementwise::LeakyRelu(a),
            Activation::Silu => Elementwise::Silu,
            Activation::HardSigmoid { alpha, beta } => Elementwise::HardSigmoid { alpha, beta },
            Activation::HardSwish => Elementwise::HardSwish,
            Activation::Gelu { tanh } => Elementwise::Gelu { tanh },
            Activation::Linear | Activation::Relu | Activation::Clip { .. } => return None,
        })
    }

    /// Applies the activation to every element of `data` in place.
    pub fn apply(self, data: &mut [f32]) {
        match self {
            Activation::Linear => {}
            Activation::Relu => data.iter_mut().for_each(|v| *v = at_least(*v, 0.0)),
            Activation::Clip { min, max } => {
                let (min, max) = clip_bounds(min, max);
                data.iter_mut()
                    .for_each(|v| *v = at_most(at_least(*v, min), max))
            }
            other => {
                if let Some(f) = other.elementwise() {
                    f.apply(data, None);
                }
            }
        }
    }

    /// The activation as the clamp a kernel applies while storing (`at_most(at_least(x, lo),
    /// hi)`): `Some(None)` for none, `Some(Some((lo, hi)))` for ReLU and Clip, `None` for
    /// those that are not a clamp (sigmoid, tanh).
    pub(crate) fn as_clamp(self) -> Option<Option<(f32, f32)>> {
        match self {
            Activation::Linear => Some(None),
            Activation::Relu => Some(Some((0.0, f32::INFINITY))),
            Activation::Clip { min, max } => Some(Some(clip_bounds(min, max))),
            _ => None,
        }
    }

    /// Adds `bias` to every element of `data` and applies the activation, in one pass.
    pub(crate) fn apply_with_bias(self, data: &mut [f32], bias: f32) {
        match self {
            Activation::Linear => data.iter_mut().for_each(|v| *v += bias),
            Activation::Relu => data.iter_mut().for_each(|v| *v = at_least(*v + bias, 0.0)),
            Activation::Clip { min, max } => {
                let (min, max) = clip_bounds(min, max);
                data.iter_mut()
                    .for_each(|v| *v = at_most(at_least(*v + bias, min), max))
            }
            other => {
                if let Some(f) = other.elementwise() {
                    f.apply(data, Some(bias));
                }
            }
        }
    }
}

/// Clip's bounds with a NaN bound made infinite: `f32::max(x, NaN)` is `x`, and so is
/// `at_least(x, -inf)`.
pub(crate) fn clip_bounds(min: f32, max: f32) -> (f32, f32) {
    let min = if min.is_nan() { f32::NEG_INFINITY } else { min };
    let max = if max.is_nan() { f32::INFINITY } else { max };
    (min, max)
}

/// `max(x, lo)`, with NaN giving `lo` (as `f32::max` does). Written as a comparison and a
/// select, which compiles to one `maxps` per vector; `f32::max` adds a NaN fix-up sequence
/// that made the bias + activation pass three times longer.
#[inline(always)]
pub(crate) fn at_least(x: f32, lo: f32) -> f32 {
    if x > lo {
        x
    } else {
        lo
    }
}

/// `min(x, hi)` for a non-NaN `x` (the result of [`at_least`]): one `minps` per vector.
#[inline(always)]
pub(crate) fn at_most(x: f32, hi: f32) -> f32 {
    if x < hi {
        x
    } else {
        hi
    }
}

/// Softmax over the channel axis of `data` laid out `[batch, channels, inner]` (inner = h*w, or 1
/// for vectors), numerically stable (max subtracted). Lengths are the caller's to check: only
/// the complete `[channels, inner]` blocks among the first `batch` are touched, so a short
/// buffer is left partly untouched rather than causing a panic.
pub fn softmax_channels(data: &mut [f32], batch: usize, channels: usize, inner: usize) {
    let Some(block) = channels.checked_mul(inner) else {
        return;
    };
    if block == 0 {
        return;
    }
    for item in data.chunks_exact_mut(block).take(batch) {
        for i in 0..inner {
            softmax_strided(&mut item[i..], inner);
        }
    }
}

/// Softmax over the elements `data[0], data[stride], data[2*stride], …`.
fn softmax_strided(data: &mut [f32], stride: usize) {
    let max = data
        .iter()
        .step_by(stride)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0f32;
    for v in data.iter_mut().step_by(stride) {
        *v = (*v - max).exp();
        sum += *v;
    }
    // sum >= 1 (the maximum contributes e^0), unless the inputs were NaN or all -inf.
    let inv = 1.0 / sum;
    for v in data.iter_mut().step_by(stride) {
        *v *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations() {
        let mut v = [-2.0f32, 0.0, 3.0];
        Activation::Relu.apply(&mut v);
        assert_eq!(v, [0.0, 0.0, 3.0]);
        let mut v = [0.0f32, -200.0, 200.0];
        Activation::Sigmoid.apply(&mut v);
        assert_eq!(v, [0.5, 0.0, 1.0]);
        let mut v = [0.5f32];
        Activation::Tanh.apply(&mut v);
        assert!((v[0] - 0.5f32.tanh()).abs() < 3e-7);
        let mut v = [1.5f32, -1.0];
        Activation::Linear.apply(&mut v);
        assert_eq!(v, [1.5, -1.0]);
    }

    /// The compare-and-select forms give what `f32::max`/`f32::min` give: NaN becomes the lower
    /// bound, min > max gives max, a NaN bound is no bound (for non-NaN inputs).
    #[test]
    fn relu_and_clip_match_max_min() {
        let inputs = [
            -7.0f32,
            -0.0,
            0.0,
            0.5,
            3.0,
            6.0,
            9.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        let nan_in = [f32::NAN];
        let bounds = [
            (0.0f32, 6.0f32),
            (-1.0, 1.0),
            (2.0, -2.0),
            (f32::NAN, 4.0),
            (1.0, f32::NAN),
        ];
        for bias in [None, Some(0.0f32), Some(-1.5)] {
            let run = |act: Activation, xs: &[f32]| {
                let mut v = xs.to_vec();
                match bias {
                    Some(b) => act.apply_with_bias(&mut v, b),
                    None => act.apply(&mut v),
                }
                v
            };
            let plus = |x: f32| x + bias.unwrap_or(0.0);
            for (min, max) in bounds {
                let with_nan: &[f32] = if min.is_nan() || max.is_nan() {
                    &[]
                } else {
                    &nan_in
                };
                let xs: Vec<f32> = inputs.iter().chain(with_nan).copied().collect();
                let want: Vec<f32> = xs.iter().map(|&x| plus(x).max(min).min(max)).collect();
                assert_eq!(
                    run(Activation::Clip { min, max }, &xs),
                    want,
                    "clip {min} {max}"
                );
            }
            let xs: Vec<f32> = inputs.iter().chain(&nan_in).copied().collect();
            let want: Vec<f32> = xs.iter().map(|&x| plus(x).max(0.0)).collect();
            assert_eq!(run(Activation::Relu, &xs), want, "relu");
        }
    }

    #[test]
    fn softmax_rows_sum_to_one() {
        // batch 2, channels 3, inner 2: the channel axis is strided by 2.
        let mut d = vec![
            1.0f32, 0.0, 2.0, 0.0, 3.0, 0.0, -1.0, 5.0, -1.0, 5.0, -1.0, 5.0,
        ];
        softmax_channels(&mut d, 2, 3, 2);
        for b in 0..2 {
            for i in 0..2 {
                let s: f32 = (0..3).map(|c| d[b * 6 + c * 2 + i]).sum();
                assert!((s - 1.0).abs() < 1e-6, "{s}");
            }
        }
        // Equal logits -> uniform.
        assert!((d[1] - 1.0 / 3.0).abs() < 1e-6);
        assert!((d[6] - 1.0 / 3.0).abs() < 1e-6);
        // softmax(1,2,3)
        let e = [1.0f32.exp(), 2.0f32.exp(), 3.0f32.exp()];
        let t: f32 = e.iter().sum();
        assert!((d[4] - e[2] / t).abs() < 1e-6);
    }

    #[test]
    fn softmax_is_stable_for_large_inputs() {
        let mut d = vec![1000.0f32, 1000.0, 999.0, -1000.0];
        softmax_channels(&mut d, 1, 4, 1);
        assert!(d.iter().all(|v| v.is_finite()));
        let s: f32 = d.iter().sum();
        assert!((s - 1.0).abs() < 1e-6);
        assert!((d[0] - d[1]).abs() < 1e-7);
        assert!(d[0] > d[2] && d[3] == 0.0);
    }

    #[test]
    fn softmax_short_buffer_does_not_panic() {
        let mut d = vec![1.0f32; 5];
        softmax_channels(&mut d, 3, 2, 2);
        softmax_channels(&mut d, 1, 0, 2);
        softmax_channels(&mut d, 1, usize::MAX, 2);
        assert!((d[0] - 0.5).abs() < 1e-7);
    }
}
