//! The supported ONNX operators with their attributes resolved (defaults applied, unknown or
//! unsupported attributes refused), in the inference semantics of the ONNX operator
//! specification. One [`Op`] per node; shapes come later (`plan`).

mod attrs;
mod parse;

use crate::constant::Constant;
pub use parse::parse_op;

/// How a window op derives its padding (`auto_pad`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoPad {
    /// Explicit `pads` (zeros when absent).
    NotSet,
    /// No padding.
    Valid,
    /// Output `ceil(in / stride)`; an odd padding remainder goes at the end.
    SameUpper,
    /// As `SameUpper`, with the odd remainder at the beginning.
    SameLower,
}

/// The window attributes shared by Conv, MaxPool and AveragePool. Empty vectors mean "the
/// default for every spatial axis" (strides and dilations 1, pads 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub kernel_shape: Option<Vec<usize>>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// `[x1_begin, x2_begin, …, x1_end, x2_end, …]`.
    pub pads: Vec<usize>,
    pub auto_pad: AutoPad,
}

/// How Resize maps an output coordinate to the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordMode {
    HalfPixel,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
}

/// How Resize's nearest mode rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// Resize / Upsample, resolved (nearest or linear; the rest refused when parsing).
#[derive(Debug, Clone, PartialEq)]
pub struct ResizeSpec {
    pub linear: bool,
    pub coord: CoordMode,
    pub nearest: NearestMode,
    /// Opset 18's `axes`: the axes `scales`/`sizes` apply to.
    pub axes: Option<Vec<i64>>,
    /// Where the scales are: an attribute (Upsample 7), or the input at this position (Resize
    /// 10 and Upsample 9: 1; Resize 11 on: 2, and sizes at 3).
    pub scales_attr: Option<Vec<f32>>,
    pub scales_input: usize,
}

/// Slice's attributes before opset 10.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceAttrs {
    pub starts: Vec<i64>,
    pub ends: Vec<i64>,
    pub axes: Option<Vec<i64>>,
}

/// A supported operator.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Conv {
        window: Window,
        group: usize,
    },
    /// 1-D and 2-D transposed convolution.
    ConvTranspose {
        window: Window,
        group: usize,
        output_padding: Vec<usize>,
        output_shape: Option<Vec<usize>>,
    },
    Gemm {
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
    },
    MatMul,
    Add,
    Mul,
    Sub,
    Div,
    Pow,
    /// `x`, or `slope * x` where `x < 0`; the slope broadcasts to `x` (unidirectionally).
    PRelu,
    /// The element-wise math and activation functions without a kernel of their own
    /// (Sqrt, Exp, Log, Neg, Abs, Reciprocal, Erf, Softplus, Elu, Selu, HardSigmoid,
    /// HardSwish, Mish, Gelu).
    Elementwise(cnn_graph::UnaryOp),
    Relu,
    Sigmoid,
    Tanh,
    LeakyRelu {
        alpha: f32,
    },
    /// Bounds from attributes (opset < 11); from the optional inputs 1 and 2 otherwise.
    Clip {
        min: Option<f32>,
        max: Option<f32>,
    },
    /// `legacy`: opset < 13, where softmax runs over the input flattened to 2-D at `axis`.
    Softmax {
        axis: i64,
        legacy: bool,
    },
    Flatten {
        axis: i64,
    },
    /// The shape comes from input 1, which must be a constant (or, opset < 5, the attribute).
    Reshape {
        allowzero: bool,
        shape_attr: Option<Vec<i64>>,
    },
    MaxPool {
        window: Window,
        ceil_mode: bool,
    },
    AveragePool {
        window: Window,
        ceil_mode: bool,
        count_include_pad: bool,
    },
    GlobalAveragePool,
    GlobalMaxPool,
    BatchNormalization {
        epsilon: f32,
    },
    Concat {
        axis: i64,
    },
    /// Identity, and Dropout in inference mode.
    Identity,
    /// ReduceMean/Sum/Max/Min/L2: axes from the attribute (before the opset that made them an
    /// input: 13 for ReduceSum, 18 for the others) or from input 1.
    Reduce {
        op: cnn_graph::ReduceOp,
        axes_attr: Option<Vec<i64>>,
        keepdims: bool,
        /// With no axes: the identity instead of a reduction over every axis.
        noop_with_empty_axes: bool,
    },
    /// Into parts along `axis`: sizes from the attribute (opset < 13) or input 1, else
    /// `num_outputs` (opset 18) or one per output, as equal as they can be.
    Split {
        axis: i64,
        split_attr: Option<Vec<i64>>,
        num_outputs: Option<i64>,
    },
    /// Resize and Upsample (nearest, linear).
    Resize(ResizeSpec),
    /// Starts, ends and axes from attributes (opset < 10) or inputs 1 to 4 (with steps).
    Slice {
        attrs: Option<SliceAttrs>,
    },
    /// Normalisation over the axes from `axis` on (opset 17).
    LayerNormalization {
        axis: i64,
        epsilon: f32,
    },
    /// The input's shape (dimensions `start..end`, opset 15), evaluated when planning.
    Shape {
        start: i64,
        end: Option<i64>,
    },
    /// Entries of input 0 along `axis` at the constant indices of input 1.
    Gather {
        axis: i64,
    },
    /// To the `to` element type: FLOAT data stays as it is; integers (shape values) stay
    /// integers.
    Cast {
        to: i32,
    },
    /// `start, start + delta, …` below `limit` (integers known when planning).
    Range,
    /// A tensor of the shape input 0 gives, filled with an integer `value` (0 by default).
    ConstantOfShape {
        value: Option<Constant>,
    },
    /// Element-wise `a == b`, `a < b`, `a > b`, `!a` and `cond ? a : b` on integers known
    /// when planning.
    Equal,
    Less,
    Greater,
    Not,
    Where,
    /// Broadcast to the shape input 1 gives.
    Expand,
    /// Repeated along each axis as input 1 says.
    Tile,
    InstanceNormalization {
        epsilon: f32,
    },
    /// Scale and bias per group before opset 21, per channel from 21.
    GroupNormalization {
        epsilon: f32,
        groups: usize,
        per_group: bool,
    },
    Lrn {
        size: usize,
        alpha: f32,
        beta: f32,
        bias: f32,
    },
    /// Depth moved into blocks of space (`dcr`: depth-column-row order, else CRD), and back.
    DepthToSpace {
        blocksize: usize,
        dcr: bool,
    },
    SpaceToDepth {
        blocksize: usize,
        dcr: bool,
    },
    /// `perm` absent: the dimensions reversed.
    Transpose {
        perm: Option<Vec<i64>>,
    },
    /// Axes from the attribute (opset < 13) or input 1; none: every dimension of size 1.
    Squeeze {
        axes_attr: Option<Vec<i64>>,
    },
    /// Axes from the attribute (opset < 13) or input 1 (required).
    Unsqueeze {
        axes_attr: Option<Vec<i64>>,
    },
    /// Constant mode only. Pads and value from attributes (opset < 11) or inputs.
    Pad {
        pads_attr: Option<Vec<i64>>,
        value_attr: f32,
    },
    /// A `Constant` node: folded at import.
    Constant(Constant),
}

/// The operators this importer reads (for messages).
pub const SUPPORTED: &str = "Conv, ConvTranspose, Gemm, MatMul, Add, Sub, Mul, Div, Pow, Relu, LeakyRelu, \
    PRelu, Clip, Sigmoid, Tanh, Sqrt, Exp, Log, Neg, Abs, Reciprocal, Erf, Softplus, Elu, Selu, \
    HardSigmoid, HardSwish, Mish, Gelu, Softmax, Flatten, Reshape, Transpose, Squeeze, \
    Unsqueeze, Slice, Split, Resize, Upsample, LayerNormalization, Shape, Gather, Cast, Range, \
    ConstantOfShape, Equal, Less, Greater, Not, Where, Expand, Tile, InstanceNormalization, \
    GroupNormalization, LRN, \
    DepthToSpace, SpaceToDepth, ReduceMean, ReduceSum, ReduceMax, ReduceMin, ReduceL2, MaxPool, AveragePool, \
    GlobalAveragePool, GlobalMaxPool, BatchNormalization, Concat, Dropout, Identity, Constant, \
    Pad";
