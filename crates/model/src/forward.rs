//! The forward pass: runs a planned model with its weights on a batch `[N, C, H, W]`.
//!
//! Layers execute in file order (which `parse` guarantees is a topological order of the
//! graph); each intermediate output is dropped as soon as its last reader has run, so a
//! straight chain holds at most two activations at a time. Convolution-like layers call the
//! `cnn-conv` kernels (im2col + GEMM and its fast paths); the cheap element-wise layers
//! (channel sum, batchnorm, add, concat) are written out here. Softmax is applied over the
//! channel axis after the kernel, other activations are fused into it.

use crate::error::ModelError;
use crate::format::shape_text;
use crate::plan::{LayerPlan, ModelPlan, Op};
use crate::spec::{ActivationKind, Source};
use crate::weights::{LayerWeights, Weights};
use cnn_conv::{Activation, KernelError, PackedWeights};
use cnn_tensor::Tensor;

/// Runs `plan` with `weights` on `input` (`[N, C, H, W]`, N >= 1); returns the last layer's
/// output `[N, …]`.
pub fn forward(plan: &ModelPlan, weights: &Weights, input: &Tensor) -> Result<Tensor, ModelError> {
    forward_inner(plan, weights, None, input, None)
}

/// Like [`forward`], and adds each layer's wall time to `layer_times` (one slot per layer).
pub fn forward_profiled(
    plan: &ModelPlan,
    weights: &Weights,
    input: &Tensor,
    layer_times: &mut [std::time::Duration],
) -> Result<Tensor, ModelError> {
    forward_inner(plan, weights, None, input, Some(layer_times))
}

/// The convolution weights of a model packed into the GEMM's panel layout
/// ([`cnn_conv::PackedWeights`]), per layer in the order its convolutions run (a separable
/// layer has two), so that forward passes do not repack them. Built by [`pack_convolutions`]
/// from the weights they were packed from; [`crate::Model`] keeps one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PackedConvs {
    layers: Vec<Vec<PackedWeights>>,
}

impl PackedConvs {
    /// Bytes held by the packed copies.
    pub fn bytes(&self) -> usize {
        self.layers.iter().flatten().map(PackedWeights::bytes).sum()
    }
}

/// Packs every convolution's weights of `plan` (the weights must be `plan`'s, as checked by
/// [`crate::verify`]).
pub fn pack_convolutions(plan: &ModelPlan, weights: &Weights) -> Result<PackedConvs, ModelError> {
    let mut layers = Vec::with_capacity(plan.layers.len());
    for (i, layer) in plan.layers.iter().enumerate() {
        let lw = layer_weights(layer, weights, i)?;
        let k = |source: KernelError| ModelError::Kernel {
            layer: layer.name.clone(),
            source,
        };
        let packed = match &layer.op {
            Op::Conv { geom, .. } => {
                vec![PackedWeights::new(geom, param(layer, lw, "weight")?).map_err(k)?]
            }
            Op::Separable {
                depthwise,
                pointwise,
                ..
            } => vec![
                PackedWeights::new(depthwise, param(layer, lw, "depthwise_weight")?).map_err(k)?,
                PackedWeights::new(pointwise, param(layer, lw, "pointwise_weight")?).map_err(k)?,
            ],
            _ => Vec::new(),
        };
        layers.push(packed);
    }
    Ok(PackedConvs { layers })
}

/// The buffers of layer `i`, or a count mismatch when the weights have no entry for it.
fn layer_weights<'w>(
    layer: &LayerPlan,
    weights: &'w Weights,
    i: usize,
) -> Result<&'w LayerWeights, ModelError> {
    weights
        .layers
        .get(i)
        .ok_or_else(|| ModelError::CountMismatch {
            layer: layer.name.clone(),
            formula: layer.formula_text(),
            symbolic: layer.param_count,
            allocated: 0,
        })
}

/// [`forward`] / [`forward_profiled`] with the convolutions' weights packed beforehand.
pub(crate) fn forward_packed(
    plan: &ModelPlan,
    weights: &Weights,
    packed: &PackedConvs,
    input: &Tensor,
    layer_times: Option<&mut [std::time::Duration]>,
) -> Result<Tensor, ModelError> {
    forward_inner(plan, weights, Some(packed), input, layer_times)
}

fn forward_inner(
    plan: &ModelPlan,
    weights: &Weights,
    packed: Option<&PackedConvs>,
    input: &Tensor,
    mut layer_times: Option<&mut [std::time::Duration]>,
) -> Result<Tensor, ModelError> {
    check_input(plan, input)?;
    let n = input.batch();
    let count = plan.layers.len();
    // The index of the last layer reading each layer's output.
    let mut last_use: Vec<usize> = (0..count).collect();
    for (i, layer) in plan.layers.iter().enumerate() {
        for s in &layer.inputs {
            if let Source::Layer(j) = s {
                last_use[*j] = last_use[*j].max(i);
            }
        }
    }
    let mut outputs: Vec<Option<Tensor>> = vec![None; count];
    for (i, layer) in plan.layers.iter().enumerate() {
        let lw = layer_weights(layer, weights, i)?;
        let out = {
            let mut ins: Vec<&Tensor> = Vec::with_capacity(layer.inputs.len());
            for s in &layer.inputs {
                match s {
                    Source::Input => ins.push(input),
                    Source::Layer(j) => match outputs[*j].as_ref() {
                        Some(t) => ins.push(t),
                        None => return Err(kernel_bug(layer, "an input was released too early")),
                    },
                }
            }
            let start = std::time::Instant::now();
            let layer_packed = packed.and_then(|p| p.layers.get(i)).map(Vec::as_slice);
            let out = run_layer(layer, lw, layer_packed, &ins, n)?;
            if let Some(slot) = layer_times.as_deref_mut().and_then(|t| t.get_mut(i)) {
                *slot += start.elapsed();
            }
            out
        };
        outputs[i] = Some(out);
        for s in &layer.inputs {
            if let Source::Layer(j) = s {
                if last_use[*j] == i && *j + 1 != count {
                    outputs[*j] = None;
                }
            }
        }
    }
    outputs
        .pop()
        .flatten()
        .ok_or_else(|| ModelError::NoWeights {
            model: plan.name().to_string(),
        })
}

fn check_input(plan: &ModelPlan, input: &Tensor) -> Result<(), ModelError> {
    let expected = plan.input_shape();
    let s = input.shape();
    if s.len() != 4 || s[0] == 0 || s[1..] != expected[..] {
        return Err(ModelError::Input {
            model: plan.name().to_string(),
            expected: format!("Nx{}", shape_text(&expected)),
            found: shape_text(s),
        });
    }
    Ok(())
}

fn kernel_bug(layer: &LayerPlan, what: &'static str) -> ModelError {
    ModelError::Kernel {
        layer: layer.name.clone(),
        source: KernelError::Length {
            what,
            expected: 0,
            found: 0,
        },
    }
}

fn param<'w>(layer: &LayerPlan, lw: &'w LayerWeights, name: &str) -> Result<&'w [f32], ModelError> {
    lw.get(name).ok_or_else(|| ModelError::CountMismatch {
        layer: layer.name.clone(),
        formula: layer.formula_text(),
        symbolic: layer.param_count,
        allocated: lw.held(),
    })
}

fn optional_bias<'w>(
    layer: &LayerPlan,
    lw: &'w LayerWeights,
    bias: bool,
) -> Result<Option<&'w [f32]>, ModelError> {
    if bias {
        param(layer, lw, "bias").map(Some)
    } else {
        Ok(None)
    }
}

fn alloc_output(layer: &LayerPlan, n: usize) -> Result<Tensor, ModelError> {
    let mut shape = Vec::with_capacity(layer.output_shape.len() + 1);
    shape.push(n);
    shape.extend_from_slice(&layer.output_shape);
    Tensor::zeros(&shape).map_err(|source| ModelError::Alloc {
        model: layer.name.clone(),
        source,
    })
}

/// Softmax over channels when the layer's activation is softmax (the other activations were
/// fused into the kernel).
fn finish_activation(layer: &LayerPlan, activation: ActivationKind, out: &mut Tensor) {
    if activation == ActivationKind::Softmax {
        let shape = &layer.output_shape;
        let channels = shape.first().copied().unwrap_or(1);
        let inner: usize = shape.iter().skip(1).product();
        let n = out.batch();
        cnn_conv::softmax_channels(out.as_mut_slice(), n, channels, inner);
    }
}

/// One convolution: with its packed weights when there are some, else packing them now.
#[allow(clippy::too_many_arguments)]
fn convolve(
    geom: &cnn_conv::Conv2dGeometry,
    x: &[f32],
    n: usize,
    weights: &[f32],
    packed: Option<&PackedWeights>,
    bias: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
) -> Result<(), KernelError> {
    match packed {
        Some(p) => cnn_conv::conv2d_packed(geom, x, n, p, bias, act, out),
        None => cnn_conv::conv2d(geom, x, n, weights, bias, act, out),
    }
}

fn run_layer(
    layer: &LayerPlan,
    lw: &LayerWeights,
    packed: Option<&[PackedWeights]>,
    ins: &[&Tensor],
    n: usize,
) -> Result<Tensor, ModelError> {
    let packed = |i: usize| packed.and_then(|p| p.get(i));
    let k = |source: KernelError| ModelError::Kernel {
        layer: layer.name.clone(),
        source,
    };
    let x = ins[0].as_slice();
    let mut out = alloc_output(layer, n)?;
    match &layer.op {
        Op::Conv {
            geom,
            bias,
            activation,
        } => {
            let w = param(layer, lw, "weight")?;
            let b = optional_bias(layer, lw, *bias)?;
            let p = packed(0);
            convolve(geom, x, n, w, p, b, activation.fused(), out.as_mut_slice()).map_err(k)?;
            finish_activation(layer, *activation, &mut out);
        }
        Op::Separable {
            depthwise,
            pointwise,
            bias,
            activation,
        } => {
            let dw = param(layer, lw, "depthwise_weight")?;
            let pw = param(layer, lw, "pointwise_weight")?;
            let b = optional_bias(layer, lw, *bias)?;
            let mut mid = Tensor::zeros(&[n, depthwise.out_c, depthwise.out_h, depthwise.out_w])
                .map_err(|source| ModelError::Alloc {
                    model: layer.name.clone(),
                    source,
                })?;
            let linear = Activation::Linear;
            convolve(
                depthwise,
                x,
                n,
                dw,
                packed(0),
                None,
                linear,
                mid.as_mut_slice(),
            )
            .map_err(k)?;
            let (mid, act) = (mid.as_slice(), activation.fused());
            convolve(pointwise, mid, n, pw, packed(1), b, act, out.as_mut_slice()).map_err(k)?;
            finish_activation(layer, *activation, &mut out);
        }
        Op::Local {
            geom,
            bias,
            activation,
        } => {
            let w = param(layer, lw, "weight")?;
            let b = optional_bias(layer, lw, *bias)?;
            cnn_conv::locally_connected2d(geom, x, n, w, b, activation.fused(), out.as_mut_slice())
                .map_err(k)?;
            finish_activation(layer, *activation, &mut out);
        }
        Op::Dense {
            in_features,
            bias,
            activation,
            ..
        } => {
            let w = param(layer, lw, "weight")?;
            let b = optional_bias(layer, lw, *bias)?;
            cnn_conv::dense(
                x,
                n,
                *in_features,
                w,
                b,
                activation.fused(),
                out.as_mut_slice(),
            )
            .map_err(k)?;
            finish_activation(layer, *activation, &mut out);
        }
        Op::MaxPool(g) => cnn_conv::max_pool2d(g, x, n, out.as_mut_slice()).map_err(k)?,
        Op::AvgPool(g) => cnn_conv::avg_pool2d(g, x, n, out.as_mut_slice()).map_err(k)?,
        Op::GlobalAvgPool { channels, spatial } => {
            cnn_conv::global_avg_pool2d(x, n, *channels, *spatial, out.as_mut_slice()).map_err(k)?
        }
        Op::GlobalMaxPool { channels, spatial } => {
            cnn_conv::global_max_pool2d(x, n, *channels, *spatial, out.as_mut_slice()).map_err(k)?
        }
        Op::ChannelSum { channels, spatial } => {
            channel_sum(x, *channels, *spatial, out.as_mut_slice())
        }
        Op::Identity => out.as_mut_slice().copy_from_slice(x),
        Op::Activation(activation) => {
            out.as_mut_slice().copy_from_slice(x);
            activation.fused().apply(out.as_mut_slice());
            finish_activation(layer, *activation, &mut out);
        }
        Op::BatchNorm {
            channels,
            spatial,
            epsilon,
        } => {
            let stats = BatchNormParams {
                gamma: param(layer, lw, "gamma")?,
                beta: param(layer, lw, "beta")?,
                mean: param(layer, lw, "moving_mean")?,
                variance: param(layer, lw, "moving_variance")?,
                epsilon: *epsilon,
            };
            stats.apply(x, *channels, *spatial, out.as_mut_slice());
        }
        Op::Add => {
            let o = out.as_mut_slice();
            o.copy_from_slice(x);
            for other in &ins[1..] {
                for (a, b) in o.iter_mut().zip(other.as_slice()) {
                    *a += *b;
                }
            }
        }
        Op::Concat => concat(ins, n, out.as_mut_slice()),
    }
    Ok(out)
}

/// Sums the channels of each image: `[N, C, S]` -> `[N, 1, S]`.
fn channel_sum(x: &[f32], channels: usize, spatial: usize, out: &mut [f32]) {
    let per_image = channels * spatial;
    for (img, o) in x.chunks_exact(per_image).zip(out.chunks_exact_mut(spatial)) {
        o.fill(0.0);
        for plane in img.chunks_exact(spatial) {
            for (a, b) in o.iter_mut().zip(plane) {
                *a += *b;
            }
        }
    }
}

/// Inference-mode batch normalisation with moving statistics.
struct BatchNormParams<'a> {
    gamma: &'a [f32],
    beta: &'a [f32],
    mean: &'a [f32],
    variance: &'a [f32],
    epsilon: f64,
}

impl BatchNormParams<'_> {
    /// `y = gamma * (x - mean) / sqrt(variance + epsilon) + beta`, per channel.
    fn apply(&self, x: &[f32], channels: usize, spatial: usize, out: &mut [f32]) {
        let per_image = channels * spatial;
        for (img, o) in x
            .chunks_exact(per_image)
            .zip(out.chunks_exact_mut(per_image))
        {
            for c in 0..channels {
                let scale = self.gamma[c] as f64 / (self.variance[c] as f64 + self.epsilon).sqrt();
                let shift = self.beta[c] as f64 - self.mean[c] as f64 * scale;
                let (scale, shift) = (scale as f32, shift as f32);
                let range = c * spatial..(c + 1) * spatial;
                for (a, b) in o[range.clone()].iter_mut().zip(&img[range]) {
                    *a = *b * scale + shift;
                }
            }
        }
    }
}

/// Joins the inputs along the channel axis (the first axis after the batch).
fn concat(ins: &[&Tensor], n: usize, out: &mut [f32]) {
    let per_image: Vec<usize> = ins.iter().map(|t| t.len() / n).collect();
    let total: usize = per_image.iter().sum();
    for b in 0..n {
        let mut offset = b * total;
        for (t, &len) in ins.iter().zip(&per_image) {
            out[offset..offset + len].copy_from_slice(&t.as_slice()[b * len..(b + 1) * len]);
            offset += len;
        }
    }
}
