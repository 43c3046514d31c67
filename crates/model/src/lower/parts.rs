//! Building blocks of the model-file lowering: the layer context that words shape errors
//! (`file:line: layer `x` (kind) on input 3x32x32: …`), the Keras-style formula builders
//! (`(3*3*32+1)*64`), the count's accounting, and the ops of the simple layers.

use super::{Owned, Shape};
use crate::error::{ModelError, ShapeError};
use crate::format::shape_text;
use crate::spec::{ActivationKind, LayerSpec, ModelSpec, WindowSpec};
use cnn_conv::{Conv2dGeometry, Conv2dSpec};
use cnn_graph::{trainable_split, Expr, Node, Op, UnaryOp};

/// The count from the formula, and the trainable split of the tensors held.
pub(super) fn accounting(ctx: &Ctx<'_>, node: &Node) -> Result<(u64, u64, u64), ModelError> {
    let param_count = match &node.formula {
        Some(f) => ctx.checked(f.eval(), "parameter count")?,
        None => 0,
    };
    let (trainable, frozen) = ctx.checked_pair(trainable_split(&node.params), "parameter count")?;
    Ok((param_count, trainable, frozen))
}

/// Builds a shape error for `layer`.
pub(super) struct Ctx<'a> {
    spec: &'a ModelSpec,
    layer: &'a LayerSpec,
    input: String,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(spec: &'a ModelSpec, layer: &'a LayerSpec, input_shapes: &[Shape]) -> Self {
        Ctx {
            spec,
            layer,
            input: input_shapes
                .iter()
                .map(|s| shape_text(s))
                .collect::<Vec<_>>()
                .join(" and "),
        }
    }

    pub(super) fn checked_pair(
        &self,
        v: Option<(u64, u64)>,
        what: &str,
    ) -> Result<(u64, u64), ModelError> {
        v.ok_or_else(|| self.err(format!("the {what} overflows 64 bits")))
    }

    pub(super) fn err(&self, message: impl Into<String>) -> ModelError {
        ModelError::Shape(Box::new(ShapeError {
            path: self.spec.path.clone(),
            line: self.layer.line,
            layer: self.layer.name.clone(),
            kind: self.layer.kind.type_name().to_string(),
            input: self.input.clone(),
            message: message.into(),
        }))
    }

    pub(super) fn map(&self, shape: &[usize]) -> Result<(usize, usize, usize), ModelError> {
        match shape {
            [c, h, w] => Ok((*c, *h, *w)),
            _ => Err(self.err(format!(
                "{} needs a feature map (channels x height x width), but its input is a vector \
                 of {}",
                self.layer.kind.type_name(),
                shape_text(shape)
            ))),
        }
    }

    pub(super) fn checked(&self, v: Option<u64>, what: &str) -> Result<u64, ModelError> {
        v.ok_or_else(|| self.err(format!("the {what} overflows 64 bits")))
    }

    pub(super) fn conv_geom(
        &self,
        c: usize,
        h: usize,
        w: usize,
        filters: usize,
        groups: usize,
        window: &WindowSpec,
    ) -> Result<Conv2dGeometry, ModelError> {
        let spec = Conv2dSpec {
            filters,
            kernel: window.kernel,
            stride: window.stride,
            dilation: window.dilation,
            padding: window.padding,
            groups,
        };
        Conv2dGeometry::resolve(c, h, w, &spec).map_err(|e| self.err(e.to_string()))
    }
}

pub(super) fn bias_tensor(len: usize) -> Owned {
    Owned {
        name: "bias",
        shape: vec![len],
        trainable: true,
        fan_in: 0,
        fan_out: 0,
    }
}

/// Appends the depth multiplier to `factors` unless it is 1 (Keras' default, left implicit).
pub(super) fn with_multiplier(mut factors: Vec<Expr>, depth_multiplier: usize) -> Vec<Expr> {
    if depth_multiplier != 1 {
        factors.push(Expr::n(depth_multiplier));
    }
    factors
}

/// `(a*b*…+1)*k` with a bias, `a*b*…*k` without.
pub(super) fn weights_plus_bias(per_output: Vec<Expr>, outputs: Vec<Expr>, bias: bool) -> Expr {
    let inner = if bias {
        Expr::sum(vec![Expr::product(per_output), Expr::n(1)])
    } else {
        Expr::product(per_output)
    };
    let mut factors = vec![inner];
    factors.extend(outputs);
    Expr::product(factors)
}

/// A model file's `activation` layer: linear passes values on, softmax runs over channels.
pub(super) fn activation_op(a: ActivationKind, batch: usize, shape: &[usize]) -> Op {
    match a {
        ActivationKind::Linear => Op::Alias,
        ActivationKind::Relu => Op::Unary(UnaryOp::Relu),
        ActivationKind::Sigmoid => Op::Unary(UnaryOp::Sigmoid),
        ActivationKind::Tanh => Op::Unary(UnaryOp::Tanh),
        ActivationKind::Softmax => Op::Softmax {
            outer: batch,
            axis_len: shape.first().copied().unwrap_or(1),
            inner: shape.iter().skip(1).product(),
        },
    }
}

pub(super) fn concat_shape(ctx: &Ctx<'_>, shapes: &[Shape]) -> Result<Shape, ModelError> {
    let first = &shapes[0];
    let mut total = 0usize;
    for s in shapes {
        let compatible = s.len() == first.len() && s[1..] == first[1..];
        if !compatible {
            return Err(ctx.err(format!(
                "concat joins channels, so the other dimensions must agree: {} vs {}",
                shape_text(first),
                shape_text(s)
            )));
        }
        total = total
            .checked_add(s[0])
            .ok_or_else(|| ctx.err("the concatenated channel count overflows"))?;
    }
    let mut out = first.clone();
    out[0] = total;
    Ok(out)
}
