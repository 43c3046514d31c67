//! The ONNX lowering's arms for the ops without a window: Gemm (the engine's dense kernel
//! when B is a constant in the `[n, k]` layout, else the general Gemm), MatMul, broadcast
//! Add/Mul, the activations, Softmax, Reshape, BatchNormalization, Concat and Pad.

use super::{macs_of, normalize_axis, product, Lowered, Planner};
use crate::error::OnnxError;
use crate::load::Node;
use crate::ops::Op as OnnxOp;
use cnn_graph::shape::broadcast_shapes;
use cnn_graph::{BinaryOp, Epilogue, Expr, Op, Scalar, Shape, UnaryOp};

impl<'a> Planner<'a> {
    pub(super) fn gemm(
        &mut self,
        node: &'a Node,
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
    ) -> Result<Lowered, OnnxError> {
        let a = self.data_shape(node, 0)?;
        let b = self.data_shape(node, 1)?;
        if a.len() != 2 || b.len() != 2 {
            return Err(node.error(format!("A {a:?} and B {b:?} must both be matrices")));
        }
        let (m, k) = if trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
        let (k2, n) = if trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
        if k != k2 {
            return Err(node.error(format!(
                "A {a:?}{} and B {b:?}{} do not multiply: {k} != {k2}",
                if trans_a { " (transposed)" } else { "" },
                if trans_b { " (transposed)" } else { "" }
            )));
        }
        let c_shape = match node.input(2) {
            None => None,
            Some(name) => {
                let cs = self.data_shape(node, 2)?;
                let ok =
                    cs.len() <= 2 && cs.iter().rev().zip([n, m]).all(|(&d, t)| d == t || d == 1);
                if !ok {
                    return Err(node.error(format!(
                        "C '{name}' of shape {cs:?} does not broadcast to [{m}, {n}]"
                    )));
                }
                Some(cs)
            }
        };
        let b_const = self.float_const(node, 1).is_some();
        let c_is_bias = match &c_shape {
            None => true,
            Some(s) => beta == 1.0 && product(s) == n && s.last() == Some(&n),
        };
        let dense = b_const && trans_b && !trans_a && alpha == 1.0 && c_is_bias;
        let params = self.claim(node, &[0, 1, 2], &[]);
        let mut terms = Vec::new();
        for p in &params {
            if Some(p.name.as_str()) == node.input(1) {
                terms.push(Expr::product(vec![Expr::n(k), Expr::n(n)]));
            } else {
                terms.push(Expr::product(p.shape.iter().map(|&d| Expr::n(d)).collect()));
            }
        }
        let op = if dense {
            Op::Dense {
                m,
                k,
                n,
                epilogue: Epilogue::default(),
            }
        } else {
            Op::Gemm {
                m,
                k,
                n,
                alpha,
                beta,
                trans_a,
                trans_b,
                c_shape,
            }
        };
        let mut l = Lowered::new(vec![m, n], op);
        l.formula = (!terms.is_empty()).then(|| Expr::sum(terms));
        l.macs = macs_of(node, &[m as u64, k as u64, n as u64])?;
        l.params = params;
        Ok(l)
    }

    pub(super) fn matmul(&mut self, node: &'a Node) -> Result<Lowered, OnnxError> {
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
            return Err(node.error(format!("{a:?} x {b:?}: inner sizes {k} and {k2} differ")));
        }
        let batch_shape = broadcast_shapes(&a2[..a2.len() - 2], &b2[..b2.len() - 2])
            .ok_or_else(|| node.error(format!("batch dims of {a:?} and {b:?} do not broadcast")))?;
        let mut out = batch_shape.clone();
        if a.len() > 1 {
            out.push(m);
        }
        if b.len() > 1 {
            out.push(n);
        }
        let params = self.claim(node, &[0, 1], &[]);
        let macs = macs_of(
            node,
            &[product(&batch_shape) as u64, m as u64, k as u64, n as u64],
        )?;
        let mut l = Lowered::new(
            out,
            Op::MatMul {
                a_shape: a2,
                b_shape: b2,
                batch_shape,
                m,
                k,
                n,
            },
        );
        l.params = params;
        l.macs = macs;
        Ok(l)
    }

    pub(super) fn binary(&mut self, node: &'a Node) -> Result<Lowered, OnnxError> {
        let a = self.data_shape(node, 0)?;
        let b = self.data_shape(node, 1)?;
        let out = broadcast_shapes(&a, &b)
            .ok_or_else(|| node.error(format!("shapes {a:?} and {b:?} do not broadcast")))?;
        let op = match node.op {
            OnnxOp::Add => BinaryOp::Add,
            OnnxOp::Mul => BinaryOp::Mul,
            OnnxOp::Sub => BinaryOp::Sub,
            OnnxOp::Div => BinaryOp::Div,
            OnnxOp::Pow => BinaryOp::Pow,
            OnnxOp::Equal => BinaryOp::Equal,
            OnnxOp::Less => BinaryOp::Less,
            OnnxOp::Greater => BinaryOp::Greater,
            _ => BinaryOp::PRelu,
        };
        if op == BinaryOp::PRelu && out != a {
            return Err(node.error(format!(
                "the slope {b:?} must broadcast to the input {a:?} (unidirectionally)"
            )));
        }
        let mut l = Lowered::new(out, Op::Binary(op));
        l.params = self.claim(node, &[0, 1], &[]);
        Ok(l)
    }

    /// Where: the condition (a boolean as 1.0 / 0.0) and the two values broadcast together.
    pub(super) fn select(&mut self, node: &'a Node) -> Result<Lowered, OnnxError> {
        let c = self.data_shape(node, 0)?;
        let x = self.data_shape(node, 1)?;
        let y = self.data_shape(node, 2)?;
        let out = broadcast_shapes(&c, &x)
            .and_then(|s| broadcast_shapes(&s, &y))
            .ok_or_else(|| {
                node.error(format!(
                    "the condition {c:?} and the values {x:?}, {y:?} do not broadcast"
                ))
            })?;
        let mut l = Lowered::new(out, Op::Where);
        l.params = self.claim(node, &[0, 1, 2], &[]);
        Ok(l)
    }

    pub(super) fn unary(&mut self, node: &'a Node) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        let u = match node.op {
            OnnxOp::Sigmoid => UnaryOp::Sigmoid,
            OnnxOp::Tanh => UnaryOp::Tanh,
            OnnxOp::LeakyRelu { alpha } => UnaryOp::LeakyRelu(alpha),
            OnnxOp::Elementwise(u) => u,
            _ => UnaryOp::Relu,
        };
        Ok(Lowered::new(x, Op::Unary(u)))
    }

    pub(super) fn clip(
        &mut self,
        node: &'a Node,
        min: Option<f32>,
        max: Option<f32>,
    ) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        let (lo, hi) = if min.is_some() || max.is_some() || node.inputs.len() <= 1 {
            (
                min.map_or(Scalar::Absent, Scalar::Const),
                max.map_or(Scalar::Absent, Scalar::Const),
            )
        } else {
            (self.scalar(node, 1, "min")?, self.scalar(node, 2, "max")?)
        };
        let mut l = Lowered::new(x, Op::Clip { min: lo, max: hi });
        l.params = self.claim(node, &[1, 2], &[]);
        Ok(l)
    }

    pub(super) fn softmax(
        &mut self,
        node: &'a Node,
        axis: i64,
        legacy: bool,
    ) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        if x.is_empty() {
            return Err(node.error("softmax needs rank >= 1"));
        }
        let a = normalize_axis(axis, x.len(), node, false)?;
        let (outer, axis_len, inner) = if legacy {
            (product(&x[..a]), product(&x[a..]), 1)
        } else {
            (product(&x[..a]), x[a], product(&x[a + 1..]))
        };
        Ok(Lowered::new(
            x,
            Op::Softmax {
                outer,
                axis_len,
                inner,
            },
        ))
    }

    pub(super) fn reshape(
        &mut self,
        node: &'a Node,
        allowzero: bool,
        shape_attr: Option<&[i64]>,
    ) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        let target = match shape_attr {
            Some(s) => s.to_vec(),
            None => self
                .ints(node, 1, "the shape")?
                .ok_or_else(|| node.error("input 1 (the shape) is required"))?,
        };
        Ok(Lowered::new(
            reshape_target(node, &x, &target, allowzero)?,
            Op::Alias,
        ))
    }

    /// Inputs `which` (position, name for messages) must each hold one value per channel.
    pub(super) fn per_channel(
        &self,
        node: &Node,
        which: &[(usize, &str)],
        c: usize,
    ) -> Result<(), OnnxError> {
        for &(i, what) in which {
            let s = self.data_shape(node, i)?;
            if s != [c] {
                return Err(node.error(format!(
                    "{what} ('{}') has shape {s:?}; the input's {c} channels need [{c}]",
                    node.input(i).unwrap_or("")
                )));
            }
        }
        Ok(())
    }

    pub(super) fn batchnorm(&mut self, node: &'a Node, epsilon: f32) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        if x.len() < 2 {
            return Err(node.error(format!("input {x:?} must be [N, C, …]")));
        }
        let c = x[1];
        self.per_channel(node, &[(1, "scale"), (2, "B"), (3, "mean"), (4, "var")], c)?;
        let params = self.claim(node, &[1, 2, 3, 4], &[3, 4]);
        let formula = match params.len() {
            0 => None,
            4 => Some(Expr::product(vec![Expr::n(4), Expr::n(c)])),
            _ => Some(Expr::sum(params.iter().map(|_| Expr::n(c)).collect())),
        };
        let inner = product(&x[2..]);
        let mut l = Lowered::new(
            x,
            Op::BatchNorm {
                channels: c,
                inner,
                epsilon,
            },
        );
        l.params = params;
        l.formula = formula;
        Ok(l)
    }

    pub(super) fn concat(&mut self, node: &'a Node, axis: i64) -> Result<Lowered, OnnxError> {
        let first = self.data_shape(node, 0)?;
        let a = normalize_axis(axis, first.len(), node, false)?;
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
        let mut l = Lowered::new(out, Op::Concat { axis: a });
        l.params = self.claim(node, &all, &[]);
        Ok(l)
    }

    pub(super) fn pad(
        &mut self,
        node: &'a Node,
        pads_attr: Option<&[i64]>,
        value_attr: f32,
    ) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        let rank = x.len();
        let (pads, value) = match pads_attr {
            Some(p) => (p.to_vec(), Scalar::Const(value_attr)),
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
            let overflow = || node.error(format!("pads {pads:?} overflow axis {d} of {x:?}"));
            let size = i64::try_from(x[d])
                .ok()
                .and_then(|v| v.checked_add(begin[d]))
                .and_then(|v| v.checked_add(end[d]))
                .ok_or_else(overflow)?;
            if size < 0 {
                return Err(node.error(format!("pads {pads:?} crop axis {d} of {x:?} below zero")));
            }
            out.push(usize::try_from(size).map_err(|_| overflow())?);
        }
        let mut l = Lowered::new(out, Op::Pad { begin, end, value });
        l.params = self.claim(node, &[2], &[]);
        Ok(l)
    }
}

/// Reshape's target: `0` copies the input dimension (unless `allowzero`), `-1` is inferred.
pub(super) fn reshape_target(
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
        let known = super::checked_product(&out).ok_or_else(too_many)?;
        if known == 0 || !total.is_multiple_of(known) {
            return Err(node.error(format!(
                "cannot reshape {x:?} ({total} values) to {target:?}"
            )));
        }
        out[i] = total / known;
    }
    let size = super::checked_product(&out).ok_or_else(too_many)?;
    if size != total {
        return Err(node.error(format!(
            "cannot reshape {x:?} ({total} values) to {target:?} ({size} values)"
        )));
    }
    Ok(out)
}
