//! Shape inference and parameter accounting for an [`OnnxModel`] at concrete input shapes.
//!
//! For every node: the shapes it reads and writes, the kernel that will run it (convolutions
//! resolve to the same [`Conv2dGeometry`] the model-file engine uses), the initializers it owns
//! (each counted once, at its first use), the parameter formula evaluated from the geometry —
//! a Conv's `Cout*(Cin/group)*kh*kw + Cout` uses the *input's* channel count and the
//! attributes, and the weight tensor's shape is then checked against it — and its MACs (one
//! multiply-accumulate per weight per output position, bias additions not counted; Gemm and
//! MatMul `M*K*N`; other ops 0).
//!
//! BatchNormalization's mean and variance are non-trainable; every other float initializer
//! counts as trainable (ONNX does not record which tensors a framework trained). Integer
//! initializers are shape operands (Reshape's shape, Pad's pads), not parameters.

use crate::constant::Constant;
use crate::error::OnnxError;
use crate::load::{Dim, Node, OnnxModel};
use crate::ops::{AutoPad, Op, Window};
use cnn_conv::{Activation, Conv2dGeometry, Conv2dSpec, Padding};
use cnn_model::formula::Expr;
use std::collections::{HashMap, HashSet};

/// A full tensor shape, batch included (ONNX shapes are never implicit).
pub type Shape = Vec<usize>;

/// An initializer a node owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamUse {
    pub name: String,
    pub shape: Shape,
    pub trainable: bool,
}

/// Where a scalar operand (Clip's bounds, Pad's value) comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    /// Absent: the op's default.
    Absent,
    Const(f32),
    /// The node's input at this index, read when the node runs.
    Input(usize),
}

/// An element-wise binary operation with numpy broadcasting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Mul,
}

/// An element-wise unary operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    Relu,
    Sigmoid,
    Tanh,
    LeakyRelu(f32),
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

/// A convolution's weights and bias with the BatchNormalization after it folded in:
/// `w' = w * s`, `b' = (b - mean) * s + beta`, with `s = gamma / sqrt(var + epsilon)` per
/// output channel.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedConv {
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

/// How a node is computed.
#[derive(Debug, Clone, PartialEq)]
pub enum Kernel {
    /// `cnn_conv::conv2d` (im2col + GEMM, 1x1 and depthwise paths) on `batch` images.
    Conv {
        geom: Conv2dGeometry,
        batch: usize,
        act: Activation,
        /// Weights and bias with a following BatchNormalization folded in (see `fuse`).
        folded: Option<std::sync::Arc<FoldedConv>>,
        /// The (folded) weights packed into the GEMM's panel layout, when they are constants
        /// (see `fuse`).
        packed: Option<std::sync::Arc<cnn_conv::PackedWeights>>,
    },
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
        /// B is a constant in the `[n, k]` layout, alpha = beta = 1, C absent or a vector of `n`:
        /// the engine's dense kernel runs it.
        dense: bool,
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
    /// The values pass unchanged; only the shape may change (Identity, Dropout, Flatten,
    /// Reshape, and an activation fused into the convolution before it).
    Alias,
    Pool(PoolGeometry),
    GlobalPool {
        max: bool,
        planes: usize,
        spatial: usize,
    },
    BatchNorm {
        channels: usize,
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
}

/// One node, planned.
#[derive(Debug, Clone, PartialEq)]
pub struct NodePlan {
    /// Index into [`OnnxModel::nodes`].
    pub node: usize,
    pub name: String,
    pub op_type: String,
    pub input_shapes: Vec<Shape>,
    pub output_shape: Shape,
    pub kernel: Kernel,
    pub params: Vec<ParamUse>,
    /// The formula whose value is the parameter count (`None` when the node owns nothing).
    pub formula: Option<Expr>,
    pub param_count: u64,
    pub trainable: u64,
    pub non_trainable: u64,
    pub macs: u64,
}

impl NodePlan {
    /// The formula as text, `-` when the node owns no parameter.
    pub fn formula_text(&self) -> String {
        self.formula
            .as_ref()
            .map(|f| f.to_string())
            .unwrap_or_else(|| "-".to_string())
    }
}

/// A graph planned at concrete input shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxPlan {
    pub inputs: Vec<(String, Shape)>,
    pub nodes: Vec<NodePlan>,
    pub outputs: Vec<(String, Shape)>,
    /// Float initializers no node reads (reported, counted as loaded but in no formula).
    pub unused_initializers: Vec<(String, u64)>,
}

impl OnnxPlan {
    /// Parameters counted by the formulas.
    pub fn total_params(&self) -> u64 {
        self.nodes.iter().map(|n| n.param_count).sum()
    }

    /// Trainable parameters.
    pub fn trainable_params(&self) -> u64 {
        self.nodes.iter().map(|n| n.trainable).sum()
    }

    /// Non-trainable parameters (BatchNormalization statistics).
    pub fn non_trainable_params(&self) -> u64 {
        self.nodes.iter().map(|n| n.non_trainable).sum()
    }

    /// Multiply-accumulates of one run at the planned shapes.
    pub fn total_macs(&self) -> u64 {
        self.nodes.iter().map(|n| n.macs).sum()
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

/// What a value is while planning.
#[derive(Debug, Clone)]
enum Known<'a> {
    /// Computed at run time (or a float constant), with this shape.
    Data(Shape),
    /// An integer constant (a shape operand).
    Ints(&'a Constant),
}

struct Planner<'a> {
    model: &'a OnnxModel,
    values: HashMap<&'a str, Known<'a>>,
    counted: HashSet<&'a str>,
    initializer_names: HashSet<&'a str>,
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

/// numpy broadcasting of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Shape> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

/// Window attributes resolved on one spatial axis.
struct Axis {
    kernel: usize,
    stride: usize,
    dilation: usize,
    begin: usize,
    end: usize,
}

fn resolve_axes(
    node: &Node,
    window: &Window,
    spatial: &[usize],
    kernel: &[usize],
) -> Result<Vec<Axis>, OnnxError> {
    let rank = spatial.len();
    let check = |what: &str, v: &[usize], want: usize| {
        if !v.is_empty() && v.len() != want {
            Err(node.error(format!(
                "attribute '{what}' has {} values; a {rank}-D window needs {want}",
                v.len()
            )))
        } else {
            Ok(())
        }
    };
    check("strides", &window.strides, rank)?;
    check("dilations", &window.dilations, rank)?;
    check("pads", &window.pads, 2 * rank)?;
    let mut axes = Vec::with_capacity(rank);
    for i in 0..rank {
        let stride = window.strides.get(i).copied().unwrap_or(1);
        let dilation = window.dilations.get(i).copied().unwrap_or(1);
        // Saturating: a zero kernel or a huge dilation is refused by the geometry, not here.
        let effective = dilation
            .saturating_mul(kernel[i].saturating_sub(1))
            .saturating_add(1);
        let (begin, end) = match window.auto_pad {
            AutoPad::NotSet => (
                window.pads.get(i).copied().unwrap_or(0),
                window.pads.get(i + rank).copied().unwrap_or(0),
            ),
            AutoPad::Valid => (0, 0),
            AutoPad::SameUpper | AutoPad::SameLower => {
                let out = spatial[i].div_ceil(stride);
                let total = ((out.max(1) - 1).saturating_mul(stride))
                    .saturating_add(effective)
                    .saturating_sub(spatial[i]);
                if window.auto_pad == AutoPad::SameUpper {
                    (total / 2, total - total / 2)
                } else {
                    (total - total / 2, total / 2)
                }
            }
        };
        axes.push(Axis {
            kernel: kernel[i],
            stride,
            dilation,
            begin,
            end,
        });
    }
    Ok(axes)
}

/// `[N, C, spatial…]` with 1 or 2 spatial axes, as `(N, C, [H, W])` (1-D: `H = 1`).
fn nc_hw(
    node: &Node,
    shape: &[usize],
    what: &str,
) -> Result<(usize, usize, [usize; 2]), OnnxError> {
    match shape.len() {
        3 => Ok((shape[0], shape[1], [1, shape[2]])),
        4 => Ok((shape[0], shape[1], [shape[2], shape[3]])),
        5 => Err(node.error(format!(
            "{what} {shape:?} is 3-D spatial; the engine's window kernels are 1-D and 2-D"
        ))),
        _ => Err(node.error(format!(
            "{what} {shape:?} must be [N, C, H, W] (or [N, C, L])"
        ))),
    }
}

/// Pads a per-spatial-axis list of `Axis` to two axes (1-D: a neutral H axis).
fn two_axes(mut axes: Vec<Axis>) -> [Axis; 2] {
    if axes.len() == 1 {
        axes.insert(
            0,
            Axis {
                kernel: 1,
                stride: 1,
                dilation: 1,
                begin: 0,
                end: 0,
            },
        );
    }
    let w = axes.pop().expect("two axes");
    let h = axes.pop().expect("two axes");
    [h, w]
}

impl<'a> Planner<'a> {
    fn data_shape(&self, node: &Node, i: usize) -> Result<Shape, OnnxError> {
        let name = node
            .input(i)
            .ok_or_else(|| node.error(format!("input {i} is required")))?;
        match self.values.get(name) {
            Some(Known::Data(s)) => Ok(s.clone()),
            Some(Known::Ints(c)) => Err(node.error(format!(
                "input '{name}' is an {} constant; the engine computes in FLOAT",
                c.type_name()
            ))),
            None => Err(node.error(format!("input '{name}' has no known shape"))),
        }
    }

    fn ints(&self, node: &Node, i: usize, what: &str) -> Result<Option<Vec<i64>>, OnnxError> {
        let Some(name) = node.input(i) else {
            return Ok(None);
        };
        match self.values.get(name) {
            Some(Known::Ints(c)) => Ok(Some(c.as_i64().unwrap_or(&[]).to_vec())),
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

    /// The initializers node inputs `which` own (first use only).
    fn claim(&mut self, node: &'a Node, which: &[usize], non_trainable: &[usize]) -> Vec<ParamUse> {
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
            params.push(ParamUse {
                name: name.to_string(),
                shape: c.shape.clone(),
                trainable: !non_trainable.contains(&i),
            });
        }
        params
    }

    fn plan_node(&mut self, index: usize, node: &'a Node) -> Result<NodePlan, OnnxError> {
        let mut input_shapes = Vec::new();
        for name in node.inputs.iter().flatten() {
            if let Some(Known::Data(s)) = self.values.get(name.as_str()) {
                input_shapes.push(s.clone());
            }
        }
        let mut formula = None;
        let mut macs = 0u64;
        let mut params = Vec::new();
        let (output_shape, kernel) = match &node.op {
            Op::Conv { window, group } => {
                let x = self.data_shape(node, 0)?;
                let w = self.data_shape(node, 1)?;
                let (n, c, hw) = nc_hw(node, &x, "input")?;
                let spatial = x.len() - 2;
                if w.len() != x.len() {
                    return Err(node.error(format!(
                        "weight shape {w:?} has rank {}, the input {x:?} rank {}",
                        w.len(),
                        x.len()
                    )));
                }
                let kernel: Vec<usize> = window
                    .kernel_shape
                    .clone()
                    .unwrap_or_else(|| w[2..].to_vec());
                if kernel.len() != spatial || kernel[..] != w[2..] {
                    return Err(node.error(format!(
                        "kernel_shape {kernel:?} does not match the weight shape {w:?}"
                    )));
                }
                let out_c = w[0];
                if c % group != 0 || out_c % group != 0 {
                    return Err(node.error(format!(
                        "group = {group} must divide the {c} input channels and the {out_c} filters"
                    )));
                }
                let expected_w: Shape = [out_c, c / group]
                    .into_iter()
                    .chain(kernel.iter().copied())
                    .collect();
                if w != expected_w {
                    return Err(node.error(format!(
                        "weight shape {w:?} does not fit the input: {c} channels in {group} \
                         group(s) need [{out_c}, {}, {}]",
                        c / group,
                        kernel
                            .iter()
                            .map(|k| k.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                if let Some(b) = node.input(2) {
                    let bs = self.data_shape(node, 2)?;
                    if bs != [out_c] {
                        return Err(node
                            .error(format!("bias '{b}' has shape {bs:?}; it must be [{out_c}]")));
                    }
                }
                let [ah, aw] = two_axes(resolve_axes(node, window, &x[2..], &kernel)?);
                let spec = Conv2dSpec {
                    filters: out_c,
                    kernel: [ah.kernel, aw.kernel],
                    stride: [ah.stride, aw.stride],
                    dilation: [ah.dilation, aw.dilation],
                    padding: Padding::Asymmetric {
                        top: ah.begin,
                        bottom: ah.end,
                        left: aw.begin,
                        right: aw.end,
                    },
                    groups: *group,
                };
                let geom = Conv2dGeometry::resolve(c, hw[0], hw[1], &spec)
                    .map_err(|e| node.error(format!("input {x:?}: {e}")))?;
                params = self.claim(node, &[1, 2], &[]);
                let mut terms = Vec::new();
                if params
                    .iter()
                    .any(|p| Some(p.name.as_str()) == node.input(1))
                {
                    let mut f = vec![Expr::n(out_c), Expr::n(c / group)];
                    f.extend(kernel.iter().map(|&k| Expr::n(k)));
                    terms.push(Expr::product(f));
                }
                if params
                    .iter()
                    .any(|p| Some(p.name.as_str()) == node.input(2))
                {
                    terms.push(Expr::n(out_c));
                }
                if !terms.is_empty() {
                    formula = Some(Expr::sum(terms));
                }
                macs = macs_of(node, &[geom.macs(), n as u64])?;
                let mut out = vec![n, out_c];
                if spatial == 2 {
                    out.push(geom.out_h);
                }
                out.push(geom.out_w);
                (
                    out,
                    Kernel::Conv {
                        geom,
                        batch: n,
                        act: Activation::Linear,
                        folded: None,
                        packed: None,
                    },
                )
            }
            Op::Gemm {
                alpha,
                beta,
                trans_a,
                trans_b,
            } => {
                let a = self.data_shape(node, 0)?;
                let b = self.data_shape(node, 1)?;
                if a.len() != 2 || b.len() != 2 {
                    return Err(node.error(format!("A {a:?} and B {b:?} must both be matrices")));
                }
                let (m, k) = if *trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
                let (k2, n) = if *trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
                if k != k2 {
                    return Err(node.error(format!(
                        "A {a:?}{} and B {b:?}{} do not multiply: {k} != {k2}",
                        if *trans_a { " (transposed)" } else { "" },
                        if *trans_b { " (transposed)" } else { "" }
                    )));
                }
                let c_shape = match node.input(2) {
                    None => None,
                    Some(name) => {
                        let cs = self.data_shape(node, 2)?;
                        let ok = cs.len() <= 2
                            && cs.iter().rev().zip([n, m]).all(|(&d, t)| d == t || d == 1);
                        if !ok {
                            return Err(node.error(format!(
                                "C '{name}' of shape {cs:?} does not broadcast to [{m}, {n}]"
                            )));
                        }
                        Some(cs)
                    }
                };
                let b_const = self.float_const(node, 1).is_some();
                let dense = b_const
                    && *trans_b
                    && !*trans_a
                    && *alpha == 1.0
                    && (c_shape.is_none()
                        || (*beta == 1.0
                            && c_shape
                                .as_ref()
                                .is_some_and(|s| product(s) == n && s.last() == Some(&n))));
                params = self.claim(node, &[0, 1, 2], &[]);
                let mut terms = Vec::new();
                for p in &params {
                    if Some(p.name.as_str()) == node.input(1) {
                        terms.push(Expr::product(vec![Expr::n(k), Expr::n(n)]));
                    } else {
                        terms.push(Expr::product(p.shape.iter().map(|&d| Expr::n(d)).collect()));
                    }
                }
                if !terms.is_empty() {
                    formula = Some(Expr::sum(terms));
                }
                macs = macs_of(node, &[m as u64, k as u64, n as u64])?;
                (
                    vec![m, n],
                    Kernel::Gemm {
                        m,
                        k,
                        n,
                        alpha: *alpha,
                        beta: *beta,
                        trans_a: *trans_a,
                        trans_b: *trans_b,
                        c_shape,
                        dense,
                    },
                )
            }
            Op::MatMul => {
                let a = self.data_shape(node, 0)?;
                let b = self.data_shape(node, 1)?;
                if a.is_empty() || b.is_empty() {
                    return Err(node.error("MatMul operands must have rank >= 1"));
                }
                let a2: Shape = if a.len() == 1 {
                    vec![1, a[0]]
                } else {
                    a.clone()
                };
                let b2: Shape = if b.len() == 1 {
                    vec![b[0], 1]
                } else {
                    b.clone()
                };
                let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
                let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
                if k != k2 {
                    return Err(
                        node.error(format!("{a:?} x {b:?}: inner sizes {k} and {k2} differ"))
                    );
                }
                let batch_shape = broadcast_shapes(&a2[..a2.len() - 2], &b2[..b2.len() - 2])
                    .ok_or_else(|| {
                        node.error(format!("batch dims of {a:?} and {b:?} do not broadcast"))
                    })?;
                let mut out = batch_shape.clone();
                if a.len() > 1 {
                    out.push(m);
                }
                if b.len() > 1 {
                    out.push(n);
                }
                params = self.claim(node, &[0, 1], &[]);
                macs = macs_of(
                    node,
                    &[product(&batch_shape) as u64, m as u64, k as u64, n as u64],
                )?;
                (
                    out,
                    Kernel::MatMul {
                        a_shape: a2,
                        b_shape: b2,
                        batch_shape,
                        m,
                        k,
                        n,
                    },
                )
            }
            Op::Add | Op::Mul => {
                let a = self.data_shape(node, 0)?;
                let b = self.data_shape(node, 1)?;
                let out = broadcast_shapes(&a, &b).ok_or_else(|| {
                    node.error(format!("shapes {a:?} and {b:?} do not broadcast"))
                })?;
                params = self.claim(node, &[0, 1], &[]);
                let op = if node.op == Op::Add {
                    BinaryOp::Add
                } else {
                    BinaryOp::Mul
                };
                (out, Kernel::Binary(op))
            }
            Op::Relu | Op::Sigmoid | Op::Tanh | Op::LeakyRelu { .. } => {
                let x = self.data_shape(node, 0)?;
                let u = match node.op {
                    Op::Relu => UnaryOp::Relu,
                    Op::Sigmoid => UnaryOp::Sigmoid,
                    Op::Tanh => UnaryOp::Tanh,
                    Op::LeakyRelu { alpha } => UnaryOp::LeakyRelu(alpha),
                    _ => unreachable!("matched above"),
                };
                (x, Kernel::Unary(u))
            }
            Op::Clip { min, max } => {
                let x = self.data_shape(node, 0)?;
                let (lo, hi) = if min.is_some() || max.is_some() || node.inputs.len() <= 1 {
                    (
                        min.map_or(Scalar::Absent, Scalar::Const),
                        max.map_or(Scalar::Absent, Scalar::Const),
                    )
                } else {
                    (self.scalar(node, 1, "min")?, self.scalar(node, 2, "max")?)
                };
                params = self.claim(node, &[1, 2], &[]);
                (x, Kernel::Clip { min: lo, max: hi })
            }
            Op::Softmax { axis, legacy } => {
                let x = self.data_shape(node, 0)?;
                if x.is_empty() {
                    return Err(node.error("softmax needs rank >= 1"));
                }
                let a = normalize_axis(*axis, x.len(), node, false)?;
                let (outer, axis_len, inner) = if *legacy {
                    (product(&x[..a]), product(&x[a..]), 1)
                } else {
                    (product(&x[..a]), x[a], product(&x[a + 1..]))
                };
                (
                    x,
                    Kernel::Softmax {
                        outer,
                        axis_len,
                        inner,
                    },
                )
            }
            Op::Flatten { axis } => {
                let x = self.data_shape(node, 0)?;
                let a = normalize_axis(*axis, x.len(), node, true)?;
                (vec![product(&x[..a]), product(&x[a..])], Kernel::Alias)
            }
            Op::Identity => (self.data_shape(node, 0)?, Kernel::Alias),
            Op::Reshape {
                allowzero,
                shape_attr,
            } => {
                let x = self.data_shape(node, 0)?;
                let target = match shape_attr {
                    Some(s) => s.clone(),
                    None => self
                        .ints(node, 1, "the shape")?
                        .ok_or_else(|| node.error("input 1 (the shape) is required"))?,
                };
                (
                    reshape_target(node, &x, &target, *allowzero)?,
                    Kernel::Alias,
                )
            }
            Op::MaxPool { window, ceil_mode }
            | Op::AveragePool {
                window, ceil_mode, ..
            } => {
                let x = self.data_shape(node, 0)?;
                let (n, c, hw) = nc_hw(node, &x, "input")?;
                if hw.contains(&0) {
                    return Err(node.error(format!(
                        "input {x:?} has an empty spatial axis: there is nothing to pool"
                    )));
                }
                let spatial = x.len() - 2;
                let kernel = window
                    .kernel_shape
                    .clone()
                    .ok_or_else(|| node.error("attribute 'kernel_shape' is required"))?;
                if kernel.len() != spatial {
                    return Err(node.error(format!(
                        "kernel_shape {kernel:?} does not match the {spatial}-D input {x:?}"
                    )));
                }
                let [ah, aw] = two_axes(resolve_axes(node, window, &x[2..], &kernel)?);
                let mut out_hw = [0; 2];
                for (i, a) in [&ah, &aw].into_iter().enumerate() {
                    let padded = hw[i].saturating_add(a.begin).saturating_add(a.end);
                    let eff = a.dilation.saturating_mul(a.kernel - 1).saturating_add(1);
                    if eff > padded {
                        return Err(node.error(format!(
                            "the window ({eff} cells with dilation) is larger than the padded \
                             input ({padded}) of {x:?}"
                        )));
                    }
                    let span = padded - eff;
                    let mut out = if *ceil_mode {
                        span.div_ceil(a.stride)
                    } else {
                        span / a.stride
                    } + 1;
                    // The last window must start inside the input or the leading padding.
                    if *ceil_mode && (out - 1) * a.stride >= hw[i].saturating_add(a.begin) {
                        out -= 1;
                    }
                    out_hw[i] = out;
                }
                let count_include_pad = matches!(
                    node.op,
                    Op::AveragePool {
                        count_include_pad: true,
                        ..
                    }
                );
                let geom = PoolGeometry {
                    max: matches!(node.op, Op::MaxPool { .. }),
                    count_include_pad,
                    planes: n * c,
                    in_hw: hw,
                    kernel: [ah.kernel, aw.kernel],
                    stride: [ah.stride, aw.stride],
                    dilation: [ah.dilation, aw.dilation],
                    pad_begin: [ah.begin, aw.begin],
                    pad_end: [ah.end, aw.end],
                    out_hw,
                };
                let mut out = vec![n, c];
                if spatial == 2 {
                    out.push(out_hw[0]);
                }
                out.push(out_hw[1]);
                (out, Kernel::Pool(geom))
            }
            Op::GlobalAveragePool | Op::GlobalMaxPool => {
                let x = self.data_shape(node, 0)?;
                if x.len() < 3 {
                    return Err(node.error(format!("input {x:?} must be [N, C, spatial…]")));
                }
                if x[2..].contains(&0) {
                    return Err(node.error(format!(
                        "input {x:?} has an empty spatial axis: there is nothing to pool"
                    )));
                }
                let mut out = x.clone();
                out[2..].iter_mut().for_each(|d| *d = 1);
                (
                    out,
                    Kernel::GlobalPool {
                        max: node.op == Op::GlobalMaxPool,
                        planes: x[0] * x[1],
                        spatial: product(&x[2..]),
                    },
                )
            }
            Op::BatchNormalization { epsilon } => {
                let x = self.data_shape(node, 0)?;
                if x.len() < 2 {
                    return Err(node.error(format!("input {x:?} must be [N, C, …]")));
                }
                let c = x[1];
                for (i, what) in [(1, "scale"), (2, "B"), (3, "mean"), (4, "var")] {
                    let s = self.data_shape(node, i)?;
                    if s != [c] {
                        return Err(node.error(format!(
                            "{what} ('{}') has shape {s:?}; the input's {c} channels need [{c}]",
                            node.input(i).unwrap_or("")
                        )));
                    }
                }
                params = self.claim(node, &[1, 2, 3, 4], &[3, 4]);
                if !params.is_empty() {
                    formula = Some(if params.len() == 4 {
                        Expr::product(vec![Expr::n(4), Expr::n(c)])
                    } else {
                        Expr::sum(params.iter().map(|_| Expr::n(c)).collect())
                    });
                }
                (
                    x.clone(),
                    Kernel::BatchNorm {
                        channels: c,
                        inner: product(&x[2..]),
                        epsilon: *epsilon,
                    },
                )
            }
            Op::Concat { axis } => {
                let first = self.data_shape(node, 0)?;
                let a = normalize_axis(*axis, first.len(), node, false)?;
                let mut out = first.clone();
                let mut total = 0;
                for i in 0..node.inputs.len() {
                    let s = self.data_shape(node, i)?;
                    let compatible = s.len() == first.len()
                        && s.iter()
                            .zip(&first)
                            .enumerate()
                            .all(|(d, (x, y))| d == a || x == y);
                    if !compatible {
                        return Err(node.error(format!(
                            "input {i} of shape {s:?} does not match {first:?} outside axis {a}"
                        )));
                    }
                    total += s[a];
                }
                out[a] = total;
                let all: Vec<usize> = (0..node.inputs.len()).collect();
                params = self.claim(node, &all, &[]);
                (out, Kernel::Concat { axis: a })
            }
            Op::Pad {
                pads_attr,
                value_attr,
            } => {
                let x = self.data_shape(node, 0)?;
                let rank = x.len();
                let (pads, value) = match pads_attr {
                    Some(p) => (p.clone(), Scalar::Const(*value_attr)),
                    None => (
                        self.ints(node, 1, "pads")?
                            .ok_or_else(|| node.error("input 1 (pads) is required"))?,
                        self.scalar(node, 2, "constant_value")?,
                    ),
                };
                let axes: Vec<usize> = match self.ints(node, 3, "axes")? {
                    None => (0..rank).collect(),
                    Some(ax) => ax
                        .iter()
                        .map(|&a| normalize_axis(a, rank, node, false))
                        .collect::<Result<_, _>>()?,
                };
                if pads.len() != 2 * axes.len() {
                    return Err(node.error(format!(
                        "pads has {} values; {} axes need {}",
                        pads.len(),
                        axes.len(),
                        2 * axes.len()
                    )));
                }
                let mut begin = vec![0i64; rank];
                let mut end = vec![0i64; rank];
                for (j, &a) in axes.iter().enumerate() {
                    begin[a] = pads[j];
                    end[a] = pads[j + axes.len()];
                }
                let mut out = Vec::with_capacity(rank);
                for d in 0..rank {
                    let size = i64::try_from(x[d])
                        .ok()
                        .and_then(|v| v.checked_add(begin[d]))
                        .and_then(|v| v.checked_add(end[d]))
                        .ok_or_else(|| {
                            node.error(format!("pads {pads:?} overflow axis {d} of {x:?}"))
                        })?;
                    if size < 0 {
                        return Err(
                            node.error(format!("pads {pads:?} crop axis {d} of {x:?} below zero"))
                        );
                    }
                    out.push(usize::try_from(size).map_err(|_| {
                        node.error(format!("pads {pads:?} overflow axis {d} of {x:?}"))
                    })?);
                }
                params = self.claim(node, &[2], &[]);
                (out, Kernel::Pad { begin, end, value })
            }
            Op::Constant(_) => unreachable!("constants are folded at import"),
        };
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
        Ok(NodePlan {
            node: index,
            name: node.name.clone(),
            op_type: node.op_type.clone(),
            input_shapes,
            output_shape,
            kernel,
            params,
            formula,
            param_count,
            trainable: param_count - non_trainable,
            non_trainable,
            macs,
        })
    }
}

/// Reshape's target: `0` copies the input dimension (unless `allowzero`), `-1` is inferred.
fn reshape_target(
    node: &Node,
    x: &[usize],
    target: &[i64],
    allowzero: bool,
) -> Result<Shape, OnnxError> {
    let total = product(x);
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*x.get(i).ok_or_else(|| {
                node.error(format!(
                    "shape {target:?}: 0 at position {i} copies a dimension {x:?} does not have"
                ))
            })?),
            t if t >= 0 => out.push(t as usize),
            _ => {
                return Err(node.error(format!(
                    "shape {target:?} is invalid (one -1 at most, no other negatives)"
                )))
            }
        }
    }
    let too_many = || {
        node.error(format!(
            "cannot reshape {x:?} ({total} values) to {target:?}: the target's size overflows"
        ))
    };
    if let Some(i) = infer {
        let known = checked_product(&out).ok_or_else(too_many)?;
        if known == 0 || total % known != 0 {
            return Err(node.error(format!(
                "cannot reshape {x:?} ({total} values) to {target:?}"
            )));
        }
        out[i] = total / known;
    }
    let size = checked_product(&out).ok_or_else(too_many)?;
    if size != total {
        return Err(node.error(format!(
            "cannot reshape {x:?} ({total} values) to {target:?} ({size} values)"
        )));
    }
    Ok(out)
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
    };
    for (name, c) in model
        .initializers
        .iter()
        .map(|(n, c)| (n, c))
        .chain(model.constants.iter())
    {
        let known = if c.as_f32().is_some() {
            Known::Data(c.shape.clone())
        } else {
            Known::Ints(c)
        };
        p.values.insert(name.as_str(), known);
    }
    let mut inputs = Vec::new();
    for (input, shape) in model.inputs.iter().zip(input_shapes) {
        if input.elem_type == crate::proto::data_type::INT64 {
            return Err(OnnxError::input(
                &input.name,
                "an INT64 graph input (a shape operand) must be a constant: store it in the \
                 file as an initializer; the engine's inputs are FLOAT",
            ));
        }
        if input.elem_type != crate::proto::data_type::FLOAT {
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
        p.values
            .insert(input.name.as_str(), Known::Data(shape.clone()));
        inputs.push((input.name.clone(), shape.clone()));
    }
    let mut nodes = Vec::with_capacity(model.nodes.len());
    for (index, node) in model.nodes.iter().enumerate() {
        let planned = p.plan_node(index, node)?;
        p.values
            .insert(node.output(), Known::Data(planned.output_shape.clone()));
        nodes.push(planned);
    }
    let mut outputs = Vec::new();
    for name in &model.outputs {
        match p.values.get(name.as_str()) {
            Some(Known::Data(s)) => outputs.push((name.clone(), s.clone())),
            _ => {
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
    crate::fuse::fuse(model, &mut nodes);
    Ok(OnnxPlan {
        inputs,
        nodes,
        outputs,
        unused_initializers,
    })
}
