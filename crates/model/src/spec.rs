//! The parsed, validated description of a model: what the user wrote in the model file, with
//! defaults filled in and names resolved, but no shapes yet (see `plan`). Types here are
//! immutable descriptions (`…Spec`), the counterpart of the resolved `…Geometry` of `cnn-conv`.

use cnn_conv::{Activation, Padding};
use std::fmt;

/// The model's input, one image: channels x height x width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputSpec {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl InputSpec {
    /// `[channels, height, width]`.
    pub fn shape(&self) -> Vec<usize> {
        vec![self.channels, self.height, self.width]
    }
}

/// How a picture becomes the network's input (model file `[input]` keys; applied to images
/// only — `.npy` arrays are taken as network inputs already): pixel values 0..255, optionally
/// inverted (`255 - p`), multiplied by `scale`, then `(x - mean[c]) / std[c]` per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    pub invert: bool,
    pub scale: f32,
    /// One value per input channel, or a single value for all channels.
    pub mean: Vec<f32>,
    /// One positive value per input channel, or a single value for all channels.
    pub std: Vec<f32>,
}

impl Preprocess {
    /// The default: `x = pixel / 255`, no inversion, mean 0, std 1.
    pub fn new() -> Self {
        Self {
            invert: false,
            scale: 1.0 / 255.0,
            mean: vec![0.0],
            std: vec![1.0],
        }
    }

    fn per_channel(values: &[f32], c: usize) -> f32 {
        values
            .get(if values.len() == 1 { 0 } else { c })
            .copied()
            .unwrap_or(0.0)
    }

    /// The network value of an 8-bit pixel of channel `c`.
    pub fn apply(&self, pixel: f32, c: usize) -> f32 {
        let p = if self.invert { 255.0 - pixel } else { pixel };
        (p * self.scale - Self::per_channel(&self.mean, c)) / Self::per_channel(&self.std, c)
    }
}

impl Default for Preprocess {
    fn default() -> Self {
        Self::new()
    }
}

/// An activation as written in a model file: the element-wise ones plus softmax (over channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActivationKind {
    #[default]
    Linear,
    Relu,
    Sigmoid,
    Tanh,
    Softmax,
}

impl ActivationKind {
    /// Parses the model-file spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "linear" | "none" => Self::Linear,
            "relu" => Self::Relu,
            "sigmoid" => Self::Sigmoid,
            "tanh" => Self::Tanh,
            "softmax" => Self::Softmax,
            _ => return None,
        })
    }

    /// The model-file spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Relu => "relu",
            Self::Sigmoid => "sigmoid",
            Self::Tanh => "tanh",
            Self::Softmax => "softmax",
        }
    }

    /// The element-wise part a kernel can fuse (softmax is applied afterwards, over channels).
    pub fn fused(self) -> Activation {
        match self {
            Self::Linear | Self::Softmax => Activation::Linear,
            Self::Relu => Activation::Relu,
            Self::Sigmoid => Activation::Sigmoid,
            Self::Tanh => Activation::Tanh,
        }
    }
}

/// The keys shared by every convolution-like layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: Padding,
    pub dilation: [usize; 2],
}

/// What a layer does, with its keys (defaults applied).
#[derive(Debug, Clone, PartialEq)]
pub enum LayerKind {
    Conv2d {
        filters: usize,
        window: WindowSpec,
        groups: usize,
        use_bias: bool,
        activation: ActivationKind,
    },
    DepthwiseConv2d {
        depth_multiplier: usize,
        window: WindowSpec,
        use_bias: bool,
        activation: ActivationKind,
    },
    SeparableConv2d {
        filters: usize,
        depth_multiplier: usize,
        window: WindowSpec,
        use_bias: bool,
        activation: ActivationKind,
    },
    LocallyConnected2d {
        filters: usize,
        window: WindowSpec,
        use_bias: bool,
        activation: ActivationKind,
    },
    Dense {
        units: usize,
        use_bias: bool,
        activation: ActivationKind,
    },
    Flatten,
    MaxPool2d {
        pool: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
    },
    AvgPool2d {
        pool: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
    },
    GlobalAvgPool2d,
    GlobalMaxPool2d,
    ChannelSum,
    Dropout {
        rate: f64,
    },
    Activation {
        activation: ActivationKind,
    },
    BatchNorm {
        epsilon: f64,
    },
    Add,
    Concat,
}

impl LayerKind {
    /// The model-file `type` of this layer (also the stem of its default name).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Conv2d { .. } => "conv2d",
            Self::DepthwiseConv2d { .. } => "depthwise_conv2d",
            Self::SeparableConv2d { .. } => "separable_conv2d",
            Self::LocallyConnected2d { .. } => "locally_connected2d",
            Self::Dense { .. } => "dense",
            Self::Flatten => "flatten",
            Self::MaxPool2d { .. } => "maxpool2d",
            Self::AvgPool2d { .. } => "avgpool2d",
            Self::GlobalAvgPool2d => "global_avgpool2d",
            Self::GlobalMaxPool2d => "global_maxpool2d",
            Self::ChannelSum => "channel_sum",
            Self::Dropout { .. } => "dropout",
            Self::Activation { .. } => "activation",
            Self::BatchNorm { .. } => "batchnorm",
            Self::Add => "add",
            Self::Concat => "concat",
        }
    }

    /// True for layers that merge several inputs.
    pub fn is_merge(&self) -> bool {
        matches!(self, Self::Add | Self::Concat)
    }
}

/// Where a layer's input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The model's input.
    Input,
    /// The output of the layer at this index.
    Layer(usize),
}

/// One layer of a model file.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSpec {
    pub name: String,
    pub kind: LayerKind,
    /// Resolved inputs (the previous layer when the file gives none).
    pub inputs: Vec<Source>,
    /// 1-based line of the layer's `[[layers]]` header in the model file (0 when built in code).
    pub line: usize,
}

/// A whole model: a directed acyclic graph whose layers are listed in execution order; the last
/// layer is the output.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub name: String,
    pub description: Option<String>,
    /// The file it came from, for error messages (`<memory>` when parsed from a string).
    pub path: String,
    pub input: InputSpec,
    /// Preprocessing applied to pictures.
    pub preprocess: Preprocess,
    /// Class names of the output vector, if the file gives them.
    pub labels: Option<Vec<String>>,
    pub layers: Vec<LayerSpec>,
}

impl ModelSpec {
    /// The label of output class `class` (its index when the file gives no labels).
    pub fn label(&self, class: usize) -> String {
        class_label(self.labels.as_deref(), class)
    }
}

/// The name of output class `class`: `labels[class]`, or the index as text.
pub fn class_label(labels: Option<&[String]>, class: usize) -> String {
    labels
        .and_then(|l| l.get(class).cloned())
        .unwrap_or_else(|| class.to_string())
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Input => write!(f, "input"),
            Source::Layer(i) => write!(f, "layer #{}", i + 1),
        }
    }
}
