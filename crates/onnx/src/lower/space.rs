//! The ONNX lowering's arms for ops that copy data into a new arrangement: Expand (numpy
//! broadcasting to a shape), Tile (repeats), DepthToSpace and SpaceToDepth (a 6-D transpose of
//! the same values), and InstanceNormalization (per image and channel; scale and bias counted as
//! parameters).

use super::{product, Expr, Lowered, Planner};
use crate::error::OnnxError;
use crate::load::Node;
use cnn_graph::shape::broadcast_shapes;
use cnn_graph::{Op, Shape};

impl<'a> Planner<'a> {
    /// Input 1 as sizes: integers known now, each at least 0.
    fn sizes(&self, node: &Node, what: &str) -> Result<Vec<usize>, OnnxError> {
        let v = self
            .ints(node, 1, what)?
            .ok_or_else(|| node.error(format!("input 1 ({what}) is required")))?;
        v.iter()
            .map(|&d| {
                usize::try_from(d)
                    .map_err(|_| node.error(format!("{what} {v:?} has a negative value")))
            })
            .collect()
    }

    pub(super) fn expand(&mut self, node: &'a Node) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        let target = self.sizes(node, "the shape")?;
        let out = broadcast_shapes(&x, &target)
            .ok_or_else(|| node.error(format!("{x:?} does not broadcast to {target:?}")))?;
        if cnn_tensor::element_count(&out).is_err() {
            return Err(node.error(format!("the output {out:?} is too large")));
        }
        Ok(Lowered::new(out, Op::Expand { in_shape: x }))
    }

    pub(super) fn tile(&mut self, node: &'a Node) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        let repeats = self.sizes(node, "the repeats")?;
        if repeats.len() != x.len() {
            return Err(node.error(format!(
                "repeats {repeats:?} must have one value per axis of {x:?}"
            )));
        }
        let out: Option<Shape> = x
            .iter()
            .zip(&repeats)
            .map(|(&d, &r)| d.checked_mul(r))
            .collect();
        let out = out
            .filter(|o| cnn_tensor::element_count(o).is_ok())
            .ok_or_else(|| node.error(format!("{x:?} repeated {repeats:?} is too large")))?;
        Ok(Lowered::new(out, Op::Tile { in_shape: x }))
    }

    pub(super) fn instance_norm(
        &mut self,
        node: &'a Node,
        epsilon: f32,
    ) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        if x.len() < 3 {
            return Err(node.error(format!("input {x:?} must be [N, C, spatial…]")));
        }
        let c = x[1];
        self.per_channel(node, &[(1, "scale"), (2, "B")], c)?;
        let params = self.claim(node, &[1, 2], &[]);
        let formula =
            (!params.is_empty()).then(|| Expr::sum(params.iter().map(|_| Expr::n(c)).collect()));
        let inner = product(&x[2..]);
        let mut l = Lowered::new(
            x,
            Op::InstanceNorm {
                channels: c,
                inner,
                epsilon,
            },
        );
        l.params = params;
        l.formula = formula;
        Ok(l)
    }

    /// `[N, C, H, W]` with `C` divisible by `b * b`.
    fn nchw_blocks(&self, node: &Node, b: usize) -> Result<[usize; 4], OnnxError> {
        let x = self.data_shape(node, 0)?;
        let bb = b.checked_mul(b).filter(|&bb| bb > 0);
        match (x.as_slice(), bb) {
            (&[n, c, h, w], Some(bb)) if c % bb == 0 => {
                let fits = h.checked_mul(b).zip(w.checked_mul(b));
                if fits
                    .is_some_and(|(oh, ow)| cnn_tensor::element_count(&[n, c / bb, oh, ow]).is_ok())
                {
                    return Ok([n, c, h, w]);
                }
                Err(node.error(format!("input {x:?} with blocksize {b} is too large")))
            }
            _ => Err(node.error(format!(
                "input {x:?} must be [N, C, H, W] with C divisible by blocksize {b} squared"
            ))),
        }
    }

    pub(super) fn depth_to_space(
        &mut self,
        node: &'a Node,
        b: usize,
        dcr: bool,
    ) -> Result<Lowered, OnnxError> {
        let [n, c, h, w] = self.nchw_blocks(node, b)?;
        let d = c / (b * b);
        let (in_shape, perm) = if dcr {
            (vec![n, b, b, d, h, w], vec![0, 3, 4, 1, 5, 2])
        } else {
            (vec![n, d, b, b, h, w], vec![0, 1, 4, 2, 5, 3])
        };
        Ok(Lowered::new(
            vec![n, d, h * b, w * b],
            Op::Transpose { in_shape, perm },
        ))
    }

    pub(super) fn space_to_depth(
        &mut self,
        node: &'a Node,
        b: usize,
        dcr: bool,
    ) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        let [n, c, h, w] = match x.as_slice() {
            &[n, c, h, w]
                if h % b == 0
                    && w % b == 0
                    && c.checked_mul(b).and_then(|v| v.checked_mul(b)).is_some() =>
            {
                [n, c, h, w]
            }
            _ => {
                return Err(node.error(format!(
                    "input {x:?} must be [N, C, H, W] with H and W divisible by blocksize {b}"
                )))
            }
        };
        Ok(Lowered::new(
            vec![n, c * b * b, h / b, w / b],
            Op::Transpose {
                in_shape: vec![n, c, h / b, b, w / b, b],
                // DCR: channel (bh * b + bw) * C + c; CRD: c * b² + bh * b + bw.
                perm: if dcr {
                    vec![0, 3, 5, 1, 2, 4]
                } else {
                    vec![0, 1, 3, 5, 2, 4]
                },
            },
        ))
    }

    pub(super) fn group_norm(
        &mut self,
        node: &'a Node,
        epsilon: f32,
        groups: usize,
        per_group: bool,
    ) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        if x.len() < 2 || x[1] % groups != 0 {
            return Err(node.error(format!(
                "input {x:?} must be [N, C, …] with num_groups = {groups} dividing C"
            )));
        }
        let c = x[1];
        let want = if per_group { groups } else { c };
        self.per_channel(node, &[(1, "scale"), (2, "bias")], want)?;
        let params = self.claim(node, &[1, 2], &[]);
        let formula =
            (!params.is_empty()).then(|| Expr::sum(params.iter().map(|_| Expr::n(want)).collect()));
        let inner = product(&x[2..]);
        let mut l = Lowered::new(
            x,
            Op::GroupNorm {
                groups,
                channels: c,
                inner,
                epsilon,
                per_group,
            },
        );
        l.params = params;
        l.formula = formula;
        Ok(l)
    }

    pub(super) fn lrn(
        &mut self,
        node: &'a Node,
        size: usize,
        [alpha, beta, bias]: [f32; 3],
    ) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        if x.len() < 3 {
            return Err(node.error(format!("input {x:?} must be [N, C, spatial…]")));
        }
        let op = Op::Lrn {
            channels: x[1],
            inner: product(&x[2..]),
            size,
            alpha,
            beta,
            bias,
        };
        Ok(Lowered::new(x, op))
    }
}
