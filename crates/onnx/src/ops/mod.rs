//! The supported ONNX operators with their attributes resolved (defaults applied, unknown or
//! unsupported attributes refused), in the inference semantics of the ONNX operator
//! specification. One [`Op`] per node; shapes come later (`plan`).

mod attrs;

use crate::constant::Constant;
use crate::proto::NodeProto;
use attrs::{constant_value, Attrs};
use cnn_graph::{ReduceOp, UnaryOp};

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

/// Resolves `node` (of operator-set version `opset`) into an [`Op`], or says why it cannot be.
pub fn parse_op(node: &NodeProto, opset: i64) -> Result<Op, String> {
    let a = Attrs {
        list: &node.attribute,
    };
    if !node.domain.is_empty() && node.domain != "ai.onnx" {
        return Err(format!(
            "operator domain '{}' is not supported (only the default ONNX domain)",
            node.domain
        ));
    }
    let op = match node.op_type.as_str() {
        "Conv" => {
            a.check_known(&[
                "auto_pad",
                "dilations",
                "group",
                "kernel_shape",
                "pads",
                "strides",
            ])?;
            let group = a.int("group", 1)?;
            Op::Conv {
                window: a.window()?,
                group: usize::try_from(group)
                    .ok()
                    .filter(|&g| g >= 1)
                    .ok_or_else(|| format!("group = {group} must be at least 1"))?,
            }
        }
        "ConvTranspose" => {
            a.check_known(&[
                "auto_pad",
                "dilations",
                "group",
                "kernel_shape",
                "output_padding",
                "output_shape",
                "pads",
                "strides",
            ])?;
            let group = a.int("group", 1)?;
            Op::ConvTranspose {
                window: a.window()?,
                group: usize::try_from(group)
                    .ok()
                    .filter(|&g| g >= 1)
                    .ok_or_else(|| format!("group = {group} must be at least 1"))?,
                output_padding: a.sizes("output_padding", 0)?,
                output_shape: match a.ints("output_shape")? {
                    Some(_) => Some(a.sizes("output_shape", 1)?),
                    None => None,
                },
            }
        }
        "Gemm" => {
            a.check_known(&["alpha", "beta", "transA", "transB", "broadcast"])?;
            Op::Gemm {
                alpha: a.float("alpha", 1.0)?,
                beta: a.float("beta", 1.0)?,
                trans_a: a.flag("transA")?,
                trans_b: a.flag("transB")?,
            }
        }
        "MatMul" => {
            a.check_known(&[])?;
            Op::MatMul
        }
        "Add" | "Mul" | "Sub" | "Div" | "Pow" | "PRelu" => {
            // `broadcast`/`axis` belong to opset < 7, whose broadcasting differs from numpy's.
            a.check_known(&[])?;
            match node.op_type.as_str() {
                "Add" => Op::Add,
                "Mul" => Op::Mul,
                "Sub" => Op::Sub,
                "Div" => Op::Div,
                "Pow" => Op::Pow,
                _ => Op::PRelu,
            }
        }
        "Sqrt" | "Exp" | "Log" | "Neg" | "Abs" | "Reciprocal" | "Erf" | "Softplus"
        | "HardSwish" | "Mish" => {
            a.check_known(&[])?;
            Op::Elementwise(match node.op_type.as_str() {
                "Sqrt" => UnaryOp::Sqrt,
                "Exp" => UnaryOp::Exp,
                "Log" => UnaryOp::Log,
                "Neg" => UnaryOp::Neg,
                "Abs" => UnaryOp::Abs,
                "Reciprocal" => UnaryOp::Reciprocal,
                "Erf" => UnaryOp::Erf,
                "Softplus" => UnaryOp::Softplus,
                "HardSwish" => UnaryOp::HardSwish,
                _ => UnaryOp::Mish,
            })
        }
        "Elu" => {
            a.check_known(&["alpha"])?;
            Op::Elementwise(UnaryOp::Elu(a.float("alpha", 1.0)?))
        }
        "Selu" => {
            a.check_known(&["alpha", "gamma"])?;
            Op::Elementwise(UnaryOp::Selu {
                alpha: a.float("alpha", 1.673_263_2)?,
                gamma: a.float("gamma", 1.050_701)?,
            })
        }
        "HardSigmoid" => {
            a.check_known(&["alpha", "beta"])?;
            Op::Elementwise(UnaryOp::HardSigmoid {
                alpha: a.float("alpha", 0.2)?,
                beta: a.float("beta", 0.5)?,
            })
        }
        "Gelu" => {
            a.check_known(&["approximate"])?;
            let tanh = match a.string("approximate", "none")?.as_str() {
                "none" => false,
                "tanh" => true,
                other => {
                    return Err(format!(
                        "approximate = '{other}' is not one of 'none' and 'tanh'"
                    ))
                }
            };
            Op::Elementwise(UnaryOp::Gelu { tanh })
        }
        "Relu" | "Sigmoid" | "Tanh" | "Identity" => {
            a.check_known(&[])?;
            match node.op_type.as_str() {
                "Relu" => Op::Relu,
                "Sigmoid" => Op::Sigmoid,
                "Tanh" => Op::Tanh,
                _ => Op::Identity,
            }
        }
        "LeakyRelu" => {
            a.check_known(&["alpha"])?;
            Op::LeakyRelu {
                alpha: a.float("alpha", 0.01)?,
            }
        }
        "Clip" => {
            a.check_known(&["min", "max"])?;
            if opset >= 11 && (a.get("min").is_some() || a.get("max").is_some()) {
                return Err(
                    "from opset 11 on, Clip takes min and max as inputs, not attributes".into(),
                );
            }
            Op::Clip {
                min: a.get("min").map(|x| x.f),
                max: a.get("max").map(|x| x.f),
            }
        }
        "Softmax" => {
            a.check_known(&["axis"])?;
            let legacy = opset < 13;
            Op::Softmax {
                axis: a.int("axis", if legacy { 1 } else { -1 })?,
                legacy,
            }
        }
        "Flatten" => {
            a.check_known(&["axis"])?;
            Op::Flatten {
                axis: a.int("axis", 1)?,
            }
        }
        "Reshape" => {
            a.check_known(&["allowzero", "shape"])?;
            Op::Reshape {
                allowzero: a.flag("allowzero")?,
                shape_attr: a.ints("shape")?,
            }
        }
        "MaxPool" => {
            a.check_known(&[
                "auto_pad",
                "ceil_mode",
                "dilations",
                "kernel_shape",
                "pads",
                "storage_order",
                "strides",
            ])?;
            Op::MaxPool {
                window: a.window()?,
                ceil_mode: a.flag("ceil_mode")?,
            }
        }
        "AveragePool" => {
            a.check_known(&[
                "auto_pad",
                "ceil_mode",
                "count_include_pad",
                "dilations",
                "kernel_shape",
                "pads",
                "strides",
            ])?;
            Op::AveragePool {
                window: a.window()?,
                ceil_mode: a.flag("ceil_mode")?,
                count_include_pad: a.flag("count_include_pad")?,
            }
        }
        "GlobalAveragePool" | "GlobalMaxPool" => {
            a.check_known(&[])?;
            if node.op_type == "GlobalAveragePool" {
                Op::GlobalAveragePool
            } else {
                Op::GlobalMaxPool
            }
        }
        "BatchNormalization" => {
            a.check_known(&[
                "epsilon",
                "momentum",
                "training_mode",
                "spatial",
                "is_test",
                "consumed_inputs",
            ])?;
            if a.flag("training_mode")? {
                return Err("training_mode = 1 (batch statistics) is not supported: the engine runs inference".into());
            }
            if a.int("spatial", 1)? != 1 {
                return Err("spatial = 0 (per-activation statistics) is not supported".into());
            }
            if node.output.iter().skip(1).any(|o| !o.is_empty()) {
                return Err("the running-statistics outputs exist only in training mode".into());
            }
            Op::BatchNormalization {
                epsilon: a.float("epsilon", 1e-5)?,
            }
        }
        "Concat" => {
            a.check_known(&["axis"])?;
            Op::Concat {
                axis: a.int("axis", if opset < 4 { 1 } else { i64::MIN })?,
            }
        }
        "Dropout" => {
            a.check_known(&["ratio", "seed", "is_test"])?;
            if node.output.iter().skip(1).any(|o| !o.is_empty()) {
                return Err(
                    "the mask output is not supported (inference runs without a mask)".into(),
                );
            }
            Op::Identity
        }
        "Pad" => {
            a.check_known(&["mode", "pads", "paddings", "value"])?;
            let mode = a.string("mode", "constant")?;
            if mode != "constant" {
                return Err(format!("mode '{mode}' is not supported (only 'constant')"));
            }
            Op::Pad {
                pads_attr: match a.ints("pads")? {
                    Some(p) => Some(p),
                    None => a.ints("paddings")?,
                },
                value_attr: a.float("value", 0.0)?,
            }
        }
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceL2" => {
            a.check_known(&["axes", "keepdims", "noop_with_empty_axes"])?;
            let (op, input_from) = match node.op_type.as_str() {
                "ReduceMean" => (ReduceOp::Mean, 18),
                "ReduceSum" => (ReduceOp::Sum, 13),
                "ReduceMax" => (ReduceOp::Max, 18),
                "ReduceMin" => (ReduceOp::Min, 18),
                _ => (ReduceOp::L2, 18),
            };
            let axes_attr = a.ints("axes")?;
            if opset >= input_from && axes_attr.is_some() {
                return Err(format!(
                    "from opset {input_from} on, {} takes its axes as input 1, not an attribute",
                    node.op_type
                ));
            }
            Op::Reduce {
                op,
                axes_attr,
                keepdims: a.int("keepdims", 1)? != 0,
                noop_with_empty_axes: a.flag("noop_with_empty_axes")?,
            }
        }
        "Split" => {
            a.check_known(&["axis", "split", "num_outputs"])?;
            let split_attr = a.ints("split")?;
            if opset >= 13 && split_attr.is_some() {
                return Err("from opset 13 on, Split takes its sizes as input 1".into());
            }
            Op::Split {
                axis: a.int("axis", 0)?,
                split_attr,
                num_outputs: a.get("num_outputs").map(|x| x.i),
            }
        }
        "Resize" | "Upsample" => Op::Resize(resize_spec(&a, node, opset)?),
        "Slice" => {
            a.check_known(&["starts", "ends", "axes"])?;
            let attrs = match (a.ints("starts")?, a.ints("ends")?) {
                (Some(starts), Some(ends)) if opset < 10 => Some(SliceAttrs {
                    starts,
                    ends,
                    axes: a.ints("axes")?,
                }),
                (None, None) if opset >= 10 && a.get("axes").is_none() => None,
                _ if opset >= 10 => {
                    return Err(
                        "from opset 10 on, Slice takes starts, ends, axes and steps as inputs"
                            .into(),
                    )
                }
                _ => return Err("attributes 'starts' and 'ends' are required".into()),
            };
            Op::Slice { attrs }
        }
        "LayerNormalization" => {
            a.check_known(&["axis", "epsilon", "stash_type"])?;
            if node.output.iter().skip(1).any(|o| !o.is_empty()) {
                return Err(
                    "the Mean and InvStdDev outputs are for training; inference has only Y".into(),
                );
            }
            Op::LayerNormalization {
                axis: a.int("axis", -1)?,
                epsilon: a.float("epsilon", 1e-5)?,
            }
        }
        "Shape" => {
            a.check_known(&["start", "end"])?;
            Op::Shape {
                start: a.int("start", 0)?,
                end: a.get("end").map(|x| x.i),
            }
        }
        "Gather" => {
            a.check_known(&["axis"])?;
            Op::Gather {
                axis: a.int("axis", 0)?,
            }
        }
        "Cast" => {
            a.check_known(&["to", "saturate", "round_mode"])?;
            let to = a.int("to", -1)?;
            Op::Cast {
                to: i32::try_from(to)
                    .ok()
                    .filter(|&t| t > 0)
                    .ok_or("attribute 'to' (the element type) is required")?,
            }
        }
        "Range" | "Equal" | "Less" | "Greater" | "Not" | "Where" | "Expand" | "Tile" => {
            a.check_known(&[])?;
            match node.op_type.as_str() {
                "Range" => Op::Range,
                "Equal" => Op::Equal,
                "Less" => Op::Less,
                "Greater" => Op::Greater,
                "Not" => Op::Not,
                "Expand" => Op::Expand,
                "Tile" => Op::Tile,
                _ => Op::Where,
            }
        }
        "GroupNormalization" => {
            a.check_known(&["epsilon", "num_groups", "stash_type"])?;
            let g = a.int("num_groups", 0)?;
            Op::GroupNormalization {
                epsilon: a.float("epsilon", 1e-5)?,
                groups: usize::try_from(g)
                    .ok()
                    .filter(|&g| g >= 1)
                    .ok_or_else(|| format!("num_groups = {g} must be at least 1"))?,
                per_group: opset < 21,
            }
        }
        "LRN" => {
            a.check_known(&["size", "alpha", "beta", "bias"])?;
            let size = a.int("size", 0)?;
            Op::Lrn {
                size: usize::try_from(size)
                    .ok()
                    .filter(|&s| s >= 1)
                    .ok_or_else(|| format!("size = {size} must be at least 1"))?,
                alpha: a.float("alpha", 1e-4)?,
                beta: a.float("beta", 0.75)?,
                bias: a.float("bias", 1.0)?,
            }
        }
        "InstanceNormalization" => {
            a.check_known(&["epsilon"])?;
            Op::InstanceNormalization {
                epsilon: a.float("epsilon", 1e-5)?,
            }
        }
        "DepthToSpace" | "SpaceToDepth" => {
            a.check_known(&["blocksize", "mode"])?;
            let b = a.int("blocksize", 0)?;
            let blocksize = usize::try_from(b)
                .ok()
                .filter(|&b| b >= 1)
                .ok_or_else(|| format!("blocksize = {b} must be at least 1"))?;
            let dcr = match a.string("mode", "DCR")?.as_str() {
                "DCR" => true,
                "CRD" => false,
                other => return Err(format!("mode '{other}' is not one of DCR and CRD")),
            };
            if node.op_type == "SpaceToDepth" {
                Op::SpaceToDepth { blocksize, dcr }
            } else {
                Op::DepthToSpace { blocksize, dcr }
            }
        }
        "ConstantOfShape" => {
            a.check_known(&["value"])?;
            Op::ConstantOfShape {
                value: match a.get("value") {
                    Some(v) => Some(
                        crate::constant::decode_tensor(
                            "value",
                            v.t.as_ref().ok_or("attribute 'value' holds no tensor")?,
                        )
                        .map_err(|e| e.to_string())?,
                    ),
                    None => None,
                },
            }
        }
        "Transpose" => {
            a.check_known(&["perm"])?;
            Op::Transpose {
                perm: a.ints("perm")?,
            }
        }
        "Squeeze" | "Unsqueeze" => {
            a.check_known(&["axes"])?;
            let axes_attr = a.ints("axes")?;
            if opset >= 13 && axes_attr.is_some() {
                return Err(format!(
                    "from opset 13 on, {} takes its axes as input 1, not an attribute",
                    node.op_type
                ));
            }
            if node.op_type == "Squeeze" {
                Op::Squeeze { axes_attr }
            } else {
                Op::Unsqueeze { axes_attr }
            }
        }
        "Constant" => Op::Constant(constant_value(&a, &node.op_type)?),
        other => {
            return Err(format!(
                "operator '{other}' is not supported (supported: {SUPPORTED})"
            ))
        }
    };
    if let Op::Concat { axis: i64::MIN } = op {
        return Err("attribute 'axis' is required".into());
    }
    Ok(op)
}

/// Resize's and Upsample's attributes in the opset's semantics: nearest or linear, the
/// coordinate modes PyTorch and TensorFlow exports use; cubic, antialiasing,
/// `tf_crop_and_resize` and the aspect-ratio policies are refused.
fn resize_spec(a: &Attrs<'_>, node: &NodeProto, opset: i64) -> Result<ResizeSpec, String> {
    let upsample = node.op_type == "Upsample";
    a.check_known(&[
        "mode",
        "coordinate_transformation_mode",
        "nearest_mode",
        "cubic_coeff_a",
        "exclude_outside",
        "extrapolation_value",
        "antialias",
        "axes",
        "keep_aspect_ratio_policy",
        "scales",
    ])?;
    let linear = match a.string("mode", "nearest")?.as_str() {
        "nearest" => false,
        "linear" | "bilinear" => true,
        other => return Err(format!("mode '{other}' is not supported (nearest, linear)")),
    };
    // Before Resize 11 (and for Upsample) coordinates are asymmetric and nearest floors.
    let modern = !upsample && opset >= 11;
    let coord = match a
        .string(
            "coordinate_transformation_mode",
            if modern { "half_pixel" } else { "asymmetric" },
        )?
        .as_str()
    {
        "half_pixel" => CoordMode::HalfPixel,
        "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
        "align_corners" => CoordMode::AlignCorners,
        "asymmetric" => CoordMode::Asymmetric,
        other => {
            return Err(format!(
                "coordinate_transformation_mode '{other}' is not supported (half_pixel, \
                 pytorch_half_pixel, align_corners, asymmetric)"
            ))
        }
    };
    let nearest = match a
        .string(
            "nearest_mode",
            if modern {
                "round_prefer_floor"
            } else {
                "floor"
            },
        )?
        .as_str()
    {
        "round_prefer_floor" => NearestMode::RoundPreferFloor,
        "round_prefer_ceil" => NearestMode::RoundPreferCeil,
        "floor" => NearestMode::Floor,
        "ceil" => NearestMode::Ceil,
        other => return Err(format!("nearest_mode '{other}' is not supported")),
    };
    if a.flag("antialias")? {
        return Err("antialias = 1 is not supported".into());
    }
    if a.string("keep_aspect_ratio_policy", "stretch")? != "stretch" {
        return Err("keep_aspect_ratio_policy other than 'stretch' is not supported".into());
    }
    let scales_attr = match a.get("scales") {
        Some(s) if upsample && opset < 9 => Some(s.floats.clone()),
        Some(_) => return Err("attribute 'scales' exists only in Upsample before opset 9".into()),
        None => None,
    };
    Ok(ResizeSpec {
        linear,
        coord,
        nearest,
        axes: a.ints("axes")?,
        scales_attr,
        scales_input: if upsample || opset < 11 { 1 } else { 2 },
    })
}
