//! Lowering an [`OnnxModel`] into the engine's graph at concrete input shapes: shape inference
//! and parameter accounting in the ONNX style.
//!
//! For every node: the shapes it reads and writes, the graph op that will run it (convolutions
//! resolve to the same [`cnn_conv::Conv2dGeometry`] model files use), the initializers it owns
//! (each counted once, at its first use), the parameter formula evaluated from the geometry —
//! a Conv's `Cout*(Cin/group)*kh*kw + Cout` uses the *input's* channel count and the
//! attributes, and the weight tensor's shape is then checked against it — and its MACs (one
//! multiply-accumulate per weight per output position, bias additions not counted; Gemm and
//! MatMul `M*K*N`; other ops 0). One ONNX node is one graph node; the op arms are in
//! [`window`] (Conv, pooling), [`layout`] (reductions, transposes, squeezes) and [`tensor`]
//! (everything else).
//!
//! BatchNormalization's mean and variance are non-trainable; every other float initializer
//! counts as trainable (ONNX does not record which tensors a framework trained). Integer
//! initializers are shape operands (Reshape's shape, Pad's pads), consumed here: they are not
//! parameters and do not reach the graph. Planning never compiles: folding, fusion and packing
//! are [`cnn_graph::compile`]'s, when the graph runs.

mod fold;
mod layout;
mod resize;
mod space;
mod tensor;
mod window;

use crate::constant::Constant;
use crate::error::OnnxError;
use crate::load::{Dim, Node, OnnxModel};
use crate::ops::Op as OnnxOp;
use cnn_graph::{Expr, Graph, Node as GraphNode, Op, Param, Scalar, Shape, UnaryOp, ValueId};
use std::collections::{HashMap, HashSet};

/// A graph planned at concrete input shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxPlan {
    pub graph: Graph,
    /// For each graph node, the index of the ONNX node it comes from (shape arithmetic leaves
    /// no graph node; a Split leaves one per output).
    pub origin: Vec<usize>,
    /// Float initializers no node reads (reported, counted as loaded but in no formula).
    pub unused_initializers: Vec<(String, u64)>,
}

impl OnnxPlan {
    /// The graph inputs with their planned shapes.
    pub fn inputs(&self) -> Vec<(String, Shape)> {
        self.graph
            .inputs
            .iter()
            .map(|&v| {
                let value = &self.graph.values[v];
                (value.name.clone(), value.shape.clone())
            })
            .collect()
    }
}

/// The declared input shapes with symbolic dimensions resolved: the first dimension (the
/// batch) becomes `batch`; any other symbolic dimension is an error naming it.
pub fn declared_input_shapes(model: &OnnxModel, batch: usize) -> Result<Vec<Shape>, OnnxError> {
    model
        .inputs
        .iter()
        .map(|input| {
            let dims = input.dims.as_ref().ok_or_else(|| {
                OnnxError::input(
                    &input.name,
                    "the file declares no shape; give the input as an .npy array",
                )
            })?;
            dims.iter()
                .enumerate()
                .map(|(i, d)| match d {
                    Dim::Fixed(v) => Ok(*v),
                    Dim::Symbolic(_) if i == 0 => Ok(batch),
                    Dim::Symbolic(name) => Err(OnnxError::input(
                        &input.name,
                        format!(
                            "dimension {i} is symbolic ('{name}'); only the first (batch) \
                             dimension may be: give the input as an .npy array"
                        ),
                    )),
                })
                .collect()
        })
        .collect()
}

/// An integer tensor known when planning: a shape operand from the file, or the result of
/// folded shape arithmetic (Shape, Gather, Concat, …).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ints {
    shape: Shape,
    data: Vec<i64>,
}

/// What a value is while planning.
#[derive(Debug, Clone)]
enum Known {
    /// Computed at run time (or a float constant), with this shape.
    Data(Shape),
    /// Integers known now.
    Ints(Ints),
}

/// What one op arm decides: the output shape and op, and the accounting.
struct Lowered {
    shape: Shape,
    op: Op,
    params: Vec<Param>,
    formula: Option<Expr>,
    macs: u64,
}

impl Lowered {
    fn new(shape: Shape, op: Op) -> Self {
        Lowered {
            shape,
            op,
            params: Vec::new(),
            formula: None,
            macs: 0,
        }
    }
}

struct Planner<'a> {
    model: &'a OnnxModel,
    values: HashMap<&'a str, Known>,
    counted: HashSet<&'a str>,
    initializer_names: HashSet<&'a str>,
    graph: Graph,
    /// Value name -> graph value (inputs, node outputs, float constants once referenced).
    ids: HashMap<&'a str, ValueId>,
}

fn product(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The element count of `shape`, `None` when it does not fit in `usize`.
fn checked_product(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// A multiply-accumulate count, or an error when it overflows.
fn macs_of(node: &Node, factors: &[u64]) -> Result<u64, OnnxError> {
    factors
        .iter()
        .try_fold(1u64, |acc, &f| acc.checked_mul(f))
        .ok_or_else(|| node.error("the multiply-accumulate count overflows"))
}

fn normalize_axis(
    axis: i64,
    rank: usize,
    node: &Node,
    inclusive: bool,
) -> Result<usize, OnnxError> {
    let r = rank as i64;
    let limit = if inclusive { r } else { r - 1 };
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a > limit {
        return Err(node.error(format!(
            "axis {axis} is out of range for a rank-{rank} input"
        )));
    }
    Ok(a as usize)
}

impl<'a> Planner<'a> {
    fn data_shape(&self, node: &Node, i: usize) -> Result<Shape, OnnxError> {
        let name = node
            .input(i)
            .ok_or_else(|| node.error(format!("input {i} is required")))?;
        match self.values.get(name) {
            Some(Known::Data(s)) => Ok(s.clone()),
            Some(Known::Ints(_)) => Err(node.error(format!(
                "input '{name}' is an integer or boolean value known when planning, used here \
                 as data; the engine computes data in FLOAT (integers and booleans only as \
                 shape operands, or all operands of shape arithmetic)"
            ))),
            None => Err(node.error(format!("input '{name}' has no known shape"))),
        }
    }

    fn ints(&self, node: &Node, i: usize, what: &str) -> Result<Option<Vec<i64>>, OnnxError> {
        let Some(name) = node.input(i) else {
            return Ok(None);
        };
        match self.values.get(name) {
            Some(Known::Ints(c)) => Ok(Some(c.data.clone())),
            _ => Err(node.error(format!(
                "{what} ('{name}') must be an INT64 constant (an initializer or a Constant node)"
            ))),
        }
    }

    /// A float constant's values, if input `i` is one.
    fn float_const(&self, node: &Node, i: usize) -> Option<&'a Constant> {
        let name = node.input(i)?;
        self.model.constant(name).filter(|c| c.as_f32().is_some())
    }

    fn scalar(&self, node: &Node, i: usize, what: &str) -> Result<Scalar, OnnxError> {
        let Some(name) = node.input(i) else {
            return Ok(Scalar::Absent);
        };
        if let Some(c) = self.float_const(node, i) {
            let v = c.as_f32().unwrap_or(&[]);
            return match v {
                [x] => Ok(Scalar::Const(*x)),
                _ => Err(node.error(format!(
                    "{what} ('{name}') must hold one value, not {}",
                    v.len()
                ))),
            };
        }
        let shape = self.data_shape(node, i)?;
        if product(&shape) != 1 {
            return Err(node.error(format!(
                "{what} ('{name}') must hold one value; its shape is {shape:?}"
            )));
        }
        Ok(Scalar::Input(i))
    }

    /// The graph value of a float value `name` (a float constant is added on first reference;
    /// `None` for integer constants, which lowering consumes).
    fn value_id(&mut self, name: &'a str) -> Option<ValueId> {
        if let Some(&id) = self.ids.get(name) {
            return Some(id);
        }
        let c = self.model.constant(name).filter(|c| c.as_f32().is_some())?;
        let id = self.graph.add_constant(name, c.shape.clone());
        self.ids.insert(name, id);
        Some(id)
    }

    /// The initializers node inputs `which` own (first use only).
    fn claim(&mut self, node: &'a Node, which: &[usize], non_trainable: &[usize]) -> Vec<Param> {
        let mut params = Vec::new();
        for &i in which {
            let Some(name) = node.input(i) else { continue };
            if !self.initializer_names.contains(name) || self.counted.contains(name) {
                continue;
            }
            let Some(c) = self.model.constant(name).filter(|c| c.as_f32().is_some()) else {
                continue;
            };
            self.counted.insert(name);
            let Some(value) = self.value_id(name) else {
                continue;
            };
            params.push(Param {
                name: name.to_string(),
                value,
                shape: c.shape.clone(),
                trainable: !non_trainable.contains(&i),
                fan_in: 0,
                fan_out: 0,
            });
        }
        params
    }

    fn lower_op(&mut self, node: &'a Node) -> Result<Lowered, OnnxError> {
        match &node.op {
            OnnxOp::Conv { window, group } => self.conv(node, window, *group),
            OnnxOp::ConvTranspose {
                window,
                group,
                output_padding,
                output_shape,
            } => self.conv_transpose(
                node,
                window,
                *group,
                output_padding,
                output_shape.as_deref(),
            ),
            OnnxOp::MaxPool { window, ceil_mode } => {
                self.pool(node, window, *ceil_mode, true, false)
            }
            OnnxOp::AveragePool {
                window,
                ceil_mode,
                count_include_pad,
            } => self.pool(node, window, *ceil_mode, false, *count_include_pad),
            OnnxOp::GlobalAveragePool => self.global_pool(node, false),
            OnnxOp::GlobalMaxPool => self.global_pool(node, true),
            OnnxOp::Gemm {
                alpha,
                beta,
                trans_a,
                trans_b,
            } => self.gemm(node, *alpha, *beta, *trans_a, *trans_b),
            OnnxOp::MatMul => self.matmul(node),
            OnnxOp::Add | OnnxOp::Mul | OnnxOp::Sub | OnnxOp::Div | OnnxOp::Pow | OnnxOp::PRelu => {
                self.binary(node)
            }
            OnnxOp::Relu
            | OnnxOp::Sigmoid
            | OnnxOp::Tanh
            | OnnxOp::LeakyRelu { .. }
            | OnnxOp::Elementwise(_) => self.unary(node),
            OnnxOp::Clip { min, max } => self.clip(node, *min, *max),
            OnnxOp::Softmax { axis, legacy } => self.softmax(node, *axis, *legacy),
            OnnxOp::Flatten { axis } => {
                let x = self.data_shape(node, 0)?;
                let a = normalize_axis(*axis, x.len(), node, true)?;
                Ok(Lowered::new(
                    vec![product(&x[..a]), product(&x[a..])],
                    Op::Alias,
                ))
            }
            OnnxOp::Identity => Ok(Lowered::new(self.data_shape(node, 0)?, Op::Alias)),
            OnnxOp::Reshape {
                allowzero,
                shape_attr,
            } => self.reshape(node, *allowzero, shape_attr.as_deref()),
            OnnxOp::BatchNormalization { epsilon } => self.batchnorm(node, *epsilon),
            OnnxOp::Concat { axis } => self.concat(node, *axis),
            OnnxOp::Pad {
                pads_attr,
                value_attr,
            } => self.pad(node, pads_attr.as_deref(), *value_attr),
            OnnxOp::Reduce {
                op,
                axes_attr,
                keepdims,
                noop_with_empty_axes,
            } => self.reduce(
                node,
                *op,
                axes_attr.as_deref(),
                *keepdims,
                *noop_with_empty_axes,
            ),
            OnnxOp::Transpose { perm } => self.transpose(node, perm.as_deref()),
            OnnxOp::Slice { attrs } => self.slice(node, attrs.as_ref()),
            OnnxOp::LayerNormalization { axis, epsilon } => self.layer_norm(node, *axis, *epsilon),
            OnnxOp::Squeeze { axes_attr } => self.squeeze(node, axes_attr.as_deref()),
            OnnxOp::Unsqueeze { axes_attr } => self.unsqueeze(node, axes_attr.as_deref()),
            OnnxOp::Gather { axis } => self.gather(node, *axis),
            OnnxOp::Cast { to } => {
                let x = self.data_shape(node, 0)?;
                if *to != crate::proto::data_type::FLOAT {
                    return Err(node.error(format!(
                        "a Cast of FLOAT data to {} is not supported (the engine computes in \
                         FLOAT)",
                        crate::proto::data_type::name(*to)
                    )));
                }
                Ok(Lowered::new(x, Op::Alias))
            }
            OnnxOp::Resize(spec) => self.resize(node, spec),
            OnnxOp::Expand => self.expand(node),
            OnnxOp::Tile => self.tile(node),
            OnnxOp::InstanceNormalization { epsilon } => self.instance_norm(node, *epsilon),
            OnnxOp::GroupNormalization {
                epsilon,
                groups,
                per_group,
            } => self.group_norm(node, *epsilon, *groups, *per_group),
            OnnxOp::Lrn {
                size,
                alpha,
                beta,
                bias,
            } => self.lrn(node, *size, [*alpha, *beta, *bias]),
            OnnxOp::DepthToSpace { blocksize, dcr } => self.depth_to_space(node, *blocksize, *dcr),
            OnnxOp::SpaceToDepth { blocksize, dcr } => self.space_to_depth(node, *blocksize, *dcr),
            OnnxOp::Equal | OnnxOp::Less | OnnxOp::Greater => self.binary(node),
            OnnxOp::Not => Ok(Lowered::new(
                self.data_shape(node, 0)?,
                Op::Unary(UnaryOp::Not),
            )),
            OnnxOp::Where => self.select(node),
            OnnxOp::Shape { .. } | OnnxOp::Range | OnnxOp::ConstantOfShape { .. } => {
                Err(node.error("shape arithmetic that could not be evaluated"))
            }
            OnnxOp::Split { .. } => Err(node.error("a Split is planned output by output")),
            OnnxOp::Constant(_) => Err(node.error("constants are folded at import")),
        }
    }

    /// True when a Dropout's `training_mode` input is a known non-zero.
    fn training_mode(&self, node: &Node) -> bool {
        self.known_ints(node, 2)
            .is_some_and(|t| t.data.iter().any(|&v| v != 0))
    }

    fn plan_node(&mut self, node: &'a Node) -> Result<GraphNode, OnnxError> {
        let mut input_shapes = Vec::new();
        for name in node.inputs.iter().flatten() {
            let constant = self.model.constant(name).is_some();
            if let (Some(Known::Data(s)), false) = (self.values.get(name.as_str()), constant) {
                input_shapes.push(s.clone());
            }
        }
        let Lowered {
            shape: output_shape,
            op,
            mut params,
            mut formula,
            macs,
        } = self.lower_op(node)?;
        if formula.is_none() {
            // An op without a formula of its own owns the float initializers it reads first
            // (a Reshape of a bias, say): their sizes are its formula.
            let all: Vec<usize> = (0..node.inputs.len()).collect();
            params.extend(self.claim(node, &all, &[]));
        }
        if formula.is_none() && !params.is_empty() {
            formula = Some(Expr::sum(
                params
                    .iter()
                    .map(|p| Expr::product(p.shape.iter().map(|&d| Expr::n(d)).collect()))
                    .collect(),
            ));
        }
        if checked_product(&output_shape).is_none() {
            return Err(node.error(format!(
                "the output shape {output_shape:?} has more elements than fit in memory"
            )));
        }
        let param_count = match &formula {
            None => 0,
            Some(f) => f
                .eval()
                .ok_or_else(|| node.error("the parameter count overflows"))?,
        };
        let held: u64 = params.iter().map(|p| product(&p.shape) as u64).sum();
        if held != param_count {
            return Err(node.error(format!(
                "its initializers hold {held} values, but the formula {} gives {param_count}",
                formula.as_ref().map(|f| f.to_string()).unwrap_or_default()
            )));
        }
        let non_trainable: u64 = params
            .iter()
            .filter(|p| !p.trainable)
            .map(|p| product(&p.shape) as u64)
            .sum();
        let mut inputs = Vec::with_capacity(node.inputs.len());
        for name in &node.inputs {
            inputs.push(name.as_deref().and_then(|n| self.value_id(n)));
        }
        let mut g = GraphNode::new(node.name.clone(), node.op_type.clone(), op);
        g.inputs = inputs;
        g.input_shapes = input_shapes;
        g.output_shape = output_shape;
        g.params = params;
        g.formula = formula;
        g.param_count = param_count;
        g.trainable = param_count - non_trainable;
        g.non_trainable = non_trainable;
        g.macs = macs;
        Ok(g)
    }
}

/// Plans `model` for inputs of the given shapes (one per graph input, in order).
pub fn plan(model: &OnnxModel, input_shapes: &[Shape]) -> Result<OnnxPlan, OnnxError> {
    if input_shapes.len() != model.inputs.len() {
        return Err(OnnxError::graph(format!(
            "the model has {} input(s), {} given",
            model.inputs.len(),
            input_shapes.len()
        )));
    }
    let mut p = Planner {
        model,
        values: HashMap::new(),
        counted: HashSet::new(),
        initializer_names: model.initializers.iter().map(|(n, _)| n.as_str()).collect(),
        graph: Graph::new(model.name.clone()),
        ids: HashMap::new(),
    };
    for (name, c) in model
        .initializers
        .iter()
        .map(|(n, c)| (n, c))
        .chain(model.constants.iter())
    {
        let known = match c.as_i64() {
            None => Known::Data(c.shape.clone()),
            Some(v) => Known::Ints(Ints {
                shape: c.shape.clone(),
                data: v.to_vec(),
            }),
        };
        p.values.insert(name.as_str(), known);
    }
    for (input, shape) in model.inputs.iter().zip(input_shapes) {
        check_input(input, shape)?;
        p.values
            .insert(input.name.as_str(), Known::Data(shape.clone()));
        let id = p.graph.add_input(input.name.clone(), shape.clone());
        p.ids.insert(input.name.as_str(), id);
    }
    let mut origin = Vec::with_capacity(model.nodes.len());
    for (index, node) in model.nodes.iter().enumerate() {
        // Shape arithmetic is evaluated now: it leaves no node in the graph that runs.
        if let Some(v) = p.fold(node)? {
            p.values.insert(node.output(), Known::Ints(v));
            continue;
        }
        if let OnnxOp::Split {
            axis,
            split_attr,
            num_outputs,
        } = &node.op
        {
            for (out, planned) in p.split(node, *axis, split_attr.as_deref(), *num_outputs)? {
                p.values
                    .insert(out, Known::Data(planned.output_shape.clone()));
                let id = p.graph.add_node(planned, out);
                p.ids.insert(out, id);
                origin.push(index);
            }
            continue;
        }
        if node.op_type == "Dropout" && p.training_mode(node) {
            return Err(node.error(
                "training mode (training_mode = true) is not supported: inference keeps every \
                 element",
            ));
        }
        let planned = p.plan_node(node)?;
        let shape = planned.output_shape.clone();
        p.values.insert(node.output(), Known::Data(shape.clone()));
        let id = p.graph.add_node(planned, node.output());
        p.ids.insert(node.output(), id);
        origin.push(index);
        if let (true, Some(Some(mask))) = (node.op_type == "Dropout", node.outputs.get(1)) {
            // Inference keeps every element: the mask is all true (1.0).
            let mut g = GraphNode::new(
                format!("{} (mask)", node.name),
                node.op_type.clone(),
                Op::Unary(UnaryOp::Fill(1.0)),
            );
            g.inputs = vec![Some(id)];
            g.input_shapes = vec![shape.clone()];
            g.output_shape = shape.clone();
            p.values.insert(mask.as_str(), Known::Data(shape));
            let mask_id = p.graph.add_node(g, mask);
            p.ids.insert(mask.as_str(), mask_id);
            origin.push(index);
        }
    }
    for name in &model.outputs {
        let id = match p.values.get(name.as_str()) {
            Some(Known::Data(_)) => p.value_id(name.as_str()),
            _ => None,
        };
        match id {
            Some(id) => p.graph.outputs.push(id),
            None => {
                return Err(OnnxError::graph(format!(
                    "graph output '{name}' is not a FLOAT value"
                )))
            }
        }
    }
    let unused_initializers = model
        .initializers
        .iter()
        .filter(|(n, c)| c.as_f32().is_some() && !p.counted.contains(n.as_str()))
        .map(|(n, c)| (n.clone(), c.len() as u64))
        .collect();
    Ok(OnnxPlan {
        graph: p.graph,
        origin,
        unused_initializers,
    })
}

/// A graph input's element type and the shape given for it.
fn check_input(input: &crate::load::GraphInput, shape: &[usize]) -> Result<(), OnnxError> {
    if input.elem_type == crate::proto::data_type::INT64 {
        return Err(OnnxError::input(
            &input.name,
            "an INT64 graph input (a shape operand) must be a constant: store it in the \
             file as an initializer; the engine's inputs are FLOAT",
        ));
    }
    // A BOOL input is given as floats 0.0 / 1.0, the graph's booleans.
    let accepted = [
        crate::proto::data_type::FLOAT,
        crate::proto::data_type::BOOL,
    ];
    if !accepted.contains(&input.elem_type) {
        return Err(OnnxError::input(
            &input.name,
            format!(
                "element type {} is not supported: the engine's inputs are FLOAT",
                crate::proto::data_type::name(input.elem_type)
            ),
        ));
    }
    if checked_product(shape).is_none() {
        return Err(OnnxError::input(
            &input.name,
            format!("shape {shape:?} has more elements than fit in memory"),
        ));
    }
    if let Some(dims) = &input.dims {
        let fits = dims.len() == shape.len()
            && dims.iter().zip(shape).all(|(d, &s)| match d {
                Dim::Fixed(v) => *v == s,
                Dim::Symbolic(_) => true,
            });
        if !fits {
            return Err(OnnxError::input(
                &input.name,
                format!(
                    "shape {shape:?} does not fit the declared {}",
                    crate::format_dims(dims)
                ),
            ));
        }
    }
    Ok(())
}
