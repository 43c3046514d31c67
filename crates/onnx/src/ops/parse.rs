//! Each supported operator's attributes read in its opset's semantics: defaults applied,
//! unknown or unsupported attributes refused, attributes that became inputs (Clip, the
//! reductions, Squeeze/Unsqueeze, Split, Slice) checked against the opset.

use super::attrs::{constant_value, Attrs};
use super::{CoordMode, NearestMode, Op, ResizeSpec, SliceAttrs, SUPPORTED};
use crate::proto::NodeProto;
use cnn_graph::{ReduceOp, UnaryOp};

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
            // The mask output, when asked for, is planned as all true (inference).
            a.check_known(&["ratio", "seed", "is_test"])?;
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
