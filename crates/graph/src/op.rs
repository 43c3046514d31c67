//! The operations of the graph IR, resolved against concrete shapes: a convolution carries its
//! [`Conv2dGeometry`], a pooling its window, a softmax its `[outer, axis, inner]` split. Every
//! count an op needs at run time is here, so the executor never re-derives a shape.
//!
//! Input positions per op (the front ends lower into exactly these):
//! - `Conv`, `Local`, `Dense`: `[x, weight, bias?]`; `Separable`: `[x, depthwise_weight,
//!   pointwise_weight, bias?]`;
//! - `Gemm`: `[A, B, C?]`; `MatMul`: `[A, B]`; `Binary`: two or more operands;
//! - `BatchNorm`: `[x, gamma, beta, mean, variance]`; `Clip`: `[x, min?, max?]`; `Pad`:
//!   `[x, pads?, value?]` (scalars are read from their position, [`Scalar::Input`]);
//! - every other op: `[x]` (`Concat`: all inputs).

use crate::ir::Shape;
use cnn_conv::{Activation, Conv2dGeometry};

/// Where a scalar operand (Clip's bounds, Pad's value) comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    /// Absent: the op's default.
    Absent,
    Const(f32),
    /// The node's input at this position, read when the node runs.
    Input(usize),
}

/// An element-wise binary operation with numpy broadcasting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Mul,
    Sub,
    Div,
    /// `x ^ y`.
    Pow,
    /// `x` where `x >= 0`, else `slope * x` (ONNX PRelu: the slope broadcasts to `x`).
    PRelu,
    /// Comparisons: 1.0 where true, 0.0 where false (the graph's booleans are such floats).
    Equal,
    Less,
    Greater,
}

impl BinaryOp {
    /// `a op b`.
    #[inline]
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Mul => a * b,
            BinaryOp::Sub => a - b,
            BinaryOp::Div => a / b,
            BinaryOp::Pow => a.powf(b),
            BinaryOp::PRelu => {
                if a < 0.0 {
                    a * b
                } else {
                    a
                }
            }
            BinaryOp::Equal => truth(a == b),
            BinaryOp::Less => truth(a < b),
            BinaryOp::Greater => truth(a > b),
        }
    }

    /// True when the operands may be swapped (`a op b == b op a`).
    pub fn commutes(self) -> bool {
        matches!(self, BinaryOp::Add | BinaryOp::Mul | BinaryOp::Equal)
    }
}

/// A boolean as the graph holds it: 1.0 or 0.0.
#[inline]
pub fn truth(b: bool) -> f32 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// A reduction over some axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Mean,
    Sum,
    Max,
    Min,
    /// `sqrt(sum(x^2))`.
    L2,
}

/// An element-wise unary operation (the ONNX activations and math functions).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    Relu,
    Sigmoid,
    Tanh,
    LeakyRelu(f32),
    Sqrt,
    Exp,
    Log,
    Neg,
    Abs,
    Reciprocal,
    Erf,
    /// `ln(1 + e^x)`.
    Softplus,
    /// `x` for `x > 0`, else `alpha * (e^x - 1)`.
    Elu(f32),
    /// `gamma * (x > 0 ? x : alpha * (e^x - 1))`.
    Selu {
        alpha: f32,
        gamma: f32,
    },
    /// `max(0, min(1, alpha * x + beta))`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `x * max(0, min(1, x / 6 + 1/2))`.
    HardSwish,
    /// `x * tanh(softplus(x))`.
    Mish,
    /// `x * Phi(x)`: exact (`erf`), or the `tanh` approximation.
    Gelu {
        tanh: bool,
    },
    /// `x * sigmoid(x)`: what the compile pass makes of `Mul(x, Sigmoid(x))` (SiLU, Swish).
    Silu,
    /// Logical not of a boolean held as 1.0 / 0.0 (any non-zero is true).
    Not,
    /// Every element set to the value, whatever the input (Dropout's mask at inference:
    /// every element kept, 1.0).
    Fill(f32),
}

impl UnaryOp {
    /// The activation a kernel computes for this op (vectorised, and fusable into a layer's
    /// stores), if there is one.
    pub fn activation(self) -> Option<Activation> {
        Some(match self {
            UnaryOp::Relu => Activation::Relu,
            UnaryOp::Sigmoid => Activation::Sigmoid,
            UnaryOp::Tanh => Activation::Tanh,
            UnaryOp::LeakyRelu(a) => Activation::LeakyRelu(a),
            UnaryOp::Silu => Activation::Silu,
            UnaryOp::HardSigmoid { alpha, beta } => Activation::HardSigmoid { alpha, beta },
            UnaryOp::HardSwish => Activation::HardSwish,
            UnaryOp::Gelu { tanh } => Activation::Gelu { tanh },
            _ => return None,
        })
    }

    /// The vectorised function for an op that is no activation (`exp`, `erf`), if any.
    pub fn elementwise(self) -> Option<cnn_conv::vmath::Elementwise> {
        use cnn_conv::vmath::Elementwise;
        Some(match self {
            UnaryOp::Exp => Elementwise::Exp,
            UnaryOp::Erf => Elementwise::Erf,
            _ => return None,
        })
    }
}

/// `ln(1 + e^x)` without overflow for large `x`.
fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

impl UnaryOp {
    /// The function at `x` (the ops a kernel fuses — Relu, Sigmoid, Tanh — run as
    /// `cnn_conv::Activation` instead, bit for bit as fused).
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            UnaryOp::Relu => x.max(0.0),
            UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::LeakyRelu(alpha) => {
                if x < 0.0 {
                    x * alpha
                } else {
                    x
                }
            }
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Neg => -x,
            UnaryOp::Abs => x.abs(),
            UnaryOp::Reciprocal => 1.0 / x,
            UnaryOp::Erf => libm::erff(x),
            UnaryOp::Softplus => softplus(x),
            UnaryOp::Elu(alpha) => {
                if x > 0.0 {
                    x
                } else {
                    alpha * x.exp_m1()
                }
            }
            UnaryOp::Selu { alpha, gamma } => gamma * if x > 0.0 { x } else { alpha * x.exp_m1() },
            UnaryOp::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            UnaryOp::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            UnaryOp::Mish => x * softplus(x).tanh(),
            UnaryOp::Gelu { tanh: false } => {
                0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
            }
            UnaryOp::Gelu { tanh: true } => {
                let c = (2.0 / std::f32::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
            }
            UnaryOp::Silu => x / (1.0 + (-x).exp()),
            UnaryOp::Not => truth(x == 0.0),
            UnaryOp::Fill(v) => v,
        }
    }
}

/// A pooling window resolved against a `[N, C, H, W]` input (1-D pooling runs with `H = 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeometry {
    pub max: bool,
    pub count_include_pad: bool,
    /// `N * C` planes.
    pub planes: usize,
    pub in_hw: [usize; 2],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// The declared padding, before and after, per axis.
    pub pad_begin: [usize; 2],
    pub pad_end: [usize; 2],
    pub out_hw: [usize; 2],
}

/// What a weighted layer does after its products: an element-wise activation the kernel
/// fuses into its stores, then optionally softmax over the channel axis.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Epilogue {
    pub act: Activation,
    pub softmax: bool,
}

impl Epilogue {
    /// Neither an activation nor softmax: a later activation may be fused in.
    pub fn is_linear(&self) -> bool {
        self.act == Activation::Linear && !self.softmax
    }
}

/// How a node is computed.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `cnn_conv::conv2d` (im2col + GEMM, 1x1 and depthwise paths) on `batch` images.
    Conv {
        geom: Conv2dGeometry,
        batch: usize,
        epilogue: Epilogue,
    },
    /// A transposed convolution (`cnn_conv::conv_transpose2d`: GEMM, then col2im) on `batch`
    /// images; inputs `[x, weight, bias?]`.
    ConvTranspose {
        geom: cnn_conv::ConvTranspose2dGeometry,
        batch: usize,
    },
    /// A depthwise convolution, then a pointwise one (one report row, two kernels).
    Separable {
        depthwise: Conv2dGeometry,
        pointwise: Conv2dGeometry,
        batch: usize,
        epilogue: Epilogue,
    },
    /// Unshared weights: one small matrix-vector product per output position.
    Local {
        geom: Conv2dGeometry,
        batch: usize,
        epilogue: Epilogue,
    },
    /// `y[m x n] = x[m x k] * W[n x k]^T + b`: the engine's dense kernel (a model file's
    /// `dense`, an ONNX Gemm whose B is a constant in that layout).
    Dense {
        m: usize,
        k: usize,
        n: usize,
        epilogue: Epilogue,
    },
    /// The general ONNX Gemm.
    Gemm {
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
        /// C's shape (rank 0 to 2), broadcast to `[m, n]`.
        c_shape: Option<Shape>,
    },
    MatMul {
        /// Operands promoted to rank >= 2 and broadcast batch dims.
        a_shape: Shape,
        b_shape: Shape,
        batch_shape: Shape,
        m: usize,
        k: usize,
        n: usize,
    },
    /// Two operands with numpy broadcasting, or more of one shape (folded left to right).
    Binary(BinaryOp),
    Unary(UnaryOp),
    Clip {
        min: Scalar,
        max: Scalar,
    },
    /// Softmax over `[outer, axis_len, inner]`.
    Softmax {
        outer: usize,
        axis_len: usize,
        inner: usize,
    },
    /// The values pass unchanged; only the shape may change (flatten, dropout, reshape,
    /// identity, a linear activation).
    Alias,
    /// `condition ? x : y` element by element, the three inputs broadcast (numpy) to the
    /// output; the condition is a boolean held as 1.0 / 0.0 (any non-zero is true).
    Where,
    Pool(PoolGeometry),
    GlobalPool {
        max: bool,
        planes: usize,
        spatial: usize,
    },
    BatchNorm {
        channels: usize,
        /// Values per channel and image.
        inner: usize,
        epsilon: f32,
    },
    Concat {
        axis: usize,
    },
    Pad {
        begin: Vec<i64>,
        end: Vec<i64>,
        value: Scalar,
    },
    /// A reduction of the input (`in_shape`) over `axes` (sorted, distinct); the output holds
    /// the remaining dimensions in order (kept as 1 or dropped: the same values).
    Reduce {
        op: ReduceOp,
        in_shape: Shape,
        axes: Vec<usize>,
    },
    /// A strided window of the input (`in_shape`): along each axis, `starts[d]` then every
    /// `steps[d]`-th element (negative: backwards); the output's shape is the node's.
    Slice {
        in_shape: Shape,
        starts: Vec<i64>,
        steps: Vec<i64>,
    },
    /// Layer normalisation of each row of the trailing `inner` values:
    /// `(x - mean) / sqrt(var + epsilon) * scale + bias` (inputs `[x, scale, bias?]`, scale
    /// and bias of `inner` values).
    LayerNorm {
        inner: usize,
        epsilon: f32,
    },
    /// Resampled along each axis in turn: output element `j` of axis `d` is
    /// `(1 - w) * x[i0] + w * x[i1]` for `taps[d][j] = (i0, i1, w)` (nearest: `w = 0`); an axis
    /// with no taps is left as it is.
    Resize {
        in_shape: Shape,
        taps: Vec<Vec<(usize, usize, f32)>>,
    },
    /// The input (`in_shape`) broadcast to the node's output shape (ONNX Expand).
    Expand {
        in_shape: Shape,
    },
    /// The input (`in_shape`) repeated along each axis to the node's output shape (ONNX Tile).
    Tile {
        in_shape: Shape,
    },
    /// Each `[inner]` plane of channel `c` (of `channels`) normalised on its own, then
    /// `* scale[c] + bias[c]` (inputs `[x, scale, bias]`).
    InstanceNorm {
        channels: usize,
        inner: usize,
        epsilon: f32,
    },
    /// Local response normalisation across channels of `[N, channels, inner]`:
    /// `x / (bias + alpha / size * sum of x^2 over the size channels around)^beta`.
    Lrn {
        channels: usize,
        inner: usize,
        size: usize,
        alpha: f32,
        beta: f32,
        bias: f32,
    },
    /// Group normalisation of `[N, channels, inner]`: each of `groups` runs of channels
    /// normalised on its own, then `* scale + bias`, per channel (`[x, scale, bias]` of
    /// `channels` values) or, `per_group`, per group (opset 18's form).
    GroupNorm {
        groups: usize,
        channels: usize,
        inner: usize,
        epsilon: f32,
        per_group: bool,
    },
    /// Entries `indices` (within the axis) of the input (`in_shape`) along `axis`.
    Gather {
        in_shape: Shape,
        axis: usize,
        indices: Vec<usize>,
    },
    /// Dimensions permuted: output dimension `i` is input dimension `perm[i]`.
    Transpose {
        in_shape: Shape,
        perm: Vec<usize>,
    },
    /// Sums the channels of each image: `[N, C, S]` -> `[N, 1, S]`.
    ChannelSum {
        batch: usize,
        channels: usize,
        spatial: usize,
    },
}

/// BatchNorm per channel as `y = x * scale + shift`: `scale = gamma / sqrt(var + epsilon)`,
/// `shift = beta - mean * scale`, in f32 as Keras and onnxruntime compute it (front ends refuse
/// an epsilon that is not a normal f32). `None` when a statistic holds fewer than `channels`
/// values.
pub fn batchnorm_scale_shift(
    channels: usize,
    [gamma, beta, mean, var]: [&[f32]; 4],
    epsilon: f32,
) -> Option<(Vec<f32>, Vec<f32>)> {
    if [gamma, beta, mean, var].iter().any(|s| s.len() < channels) {
        return None;
    }
    Some(
        (0..channels)
            .map(|c| {
                let s = gamma[c] / (var[c] + epsilon).sqrt();
                (s, beta[c] - mean[c] * s)
            })
            .unzip(),
    )
}

impl Op {
    /// The epilogue of a weighted op (conv, separable, local, dense).
    pub fn epilogue(&self) -> Option<Epilogue> {
        match self {
            Op::Conv { epilogue, .. }
            | Op::Separable { epilogue, .. }
            | Op::Local { epilogue, .. }
            | Op::Dense { epilogue, .. } => Some(*epilogue),
            _ => None,
        }
    }
}
