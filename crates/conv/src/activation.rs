//! Element-wise activations that the kernels fuse into their output (applied to each block
//! right after it is computed), and softmax over the channel axis.
//!
//! Softmax is not an element-wise activation (it needs the whole channel vector), so it is a
//! separate function the model runs on a finished tensor. Nothing here allocates.

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
}

impl Activation {
    /// Applies the activation to every element of `data` in place.
    pub fn apply(self, data: &mut [f32]) {
        match self {
            Activation::Linear => {}
            Activation::Relu => data.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Sigmoid => data.iter_mut().for_each(|v| *v = sigmoid(*v)),
            Activation::Tanh => data.iter_mut().for_each(|v| *v = v.tanh()),
            Activation::Clip { min, max } => data.iter_mut().for_each(|v| *v = v.max(min).min(max)),
        }
    }

    /// Adds `bias` to every element of `data` and applies the activation, in one pass.
    pub(crate) fn apply_with_bias(self, data: &mut [f32], bias: f32) {
        match self {
            Activation::Linear => data.iter_mut().for_each(|v| *v += bias),
            Activation::Relu => data.iter_mut().for_each(|v| *v = (*v + bias).max(0.0)),
            Activation::Sigmoid => data.iter_mut().for_each(|v| *v = sigmoid(*v + bias)),
            Activation::Tanh => data.iter_mut().for_each(|v| *v = (*v + bias).tanh()),
            Activation::Clip { min, max } => data
                .iter_mut()
                .for_each(|v| *v = (*v + bias).max(min).min(max)),
        }
    }
}

/// The logistic function; `exp(-x)` overflowing to infinity gives exactly 0.
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
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
        assert!((v[0] - 0.5f32.tanh()).abs() < 1e-7);
        let mut v = [1.5f32, -1.0];
        Activation::Linear.apply(&mut v);
        assert_eq!(v, [1.5, -1.0]);
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
