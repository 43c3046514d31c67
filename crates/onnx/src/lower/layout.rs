//! The ONNX lowering's arms for ops that move, cut or reduce dimensions: ReduceMean/Sum/Max/
//! Min/L2 (axes from the attribute or, from the opset that moved them, input 1; `keepdims`,
//! `noop_with_empty_axes`), Transpose, Slice (the specification's clamping, negative steps),
//! Squeeze and Unsqueeze (values unchanged: an alias with a new shape), and
//! LayerNormalization.

use super::{normalize_axis, product, Expr, Known, Lowered, Planner};
use crate::error::OnnxError;
use crate::load::Node;
use crate::ops::SliceAttrs;
use cnn_graph::{Op, ReduceOp, Shape};

impl<'a> Planner<'a> {
    /// Axes from the attribute, else from input 1 (an INT64 constant), normalised against
    /// `rank` and checked distinct; `None` when neither gives any.
    fn axes(
        &self,
        node: &Node,
        attr: Option<&[i64]>,
        rank: usize,
    ) -> Result<Option<Vec<usize>>, OnnxError> {
        let raw = match attr {
            Some(a) => Some(a.to_vec()),
            None => self.ints(node, 1, "axes")?,
        };
        let Some(raw) = raw else { return Ok(None) };
        let mut axes = raw
            .iter()
            .map(|&a| normalize_axis(a, rank, node, false))
            .collect::<Result<Vec<_>, _>>()?;
        axes.sort_unstable();
        if axes.windows(2).any(|w| w[0] == w[1]) {
            return Err(node.error(format!("axes {raw:?} name an axis twice")));
        }
        Ok(Some(axes))
    }

    pub(super) fn reduce(
        &mut self,
        node: &'a Node,
        op: ReduceOp,
        axes_attr: Option<&[i64]>,
        keepdims: bool,
        noop_with_empty_axes: bool,
    ) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        let axes = match self.axes(node, axes_attr, x.len())? {
            Some(a) if !a.is_empty() => a,
            _ if noop_with_empty_axes => return Ok(Lowered::new(x, Op::Alias)),
            _ => (0..x.len()).collect(),
        };
        // An empty reduced axis gives the reduction's identity (0 for sums, -inf for a max,
        // +inf for a min, NaN for a mean), as the specification's reference does.
        let out: Shape = (0..x.len())
            .filter_map(|d| match (axes.contains(&d), keepdims) {
                (false, _) => Some(x[d]),
                (true, true) => Some(1),
                (true, false) => None,
            })
            .collect();
        Ok(Lowered::new(
            out,
            Op::Reduce {
                op,
                in_shape: x,
                axes,
            },
        ))
    }

    pub(super) fn transpose(
        &mut self,
        node: &'a Node,
        perm: Option<&[i64]>,
    ) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        let perm = permutation(node, &x, perm)?;
        let out: Shape = perm.iter().map(|&d| x[d]).collect();
        if perm.iter().enumerate().all(|(i, &d)| i == d) {
            return Ok(Lowered::new(out, Op::Alias));
        }
        Ok(Lowered::new(out, Op::Transpose { in_shape: x, perm }))
    }

    pub(super) fn squeeze(
        &mut self,
        node: &'a Node,
        axes_attr: Option<&[i64]>,
    ) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        Ok(Lowered::new(self.squeezed(node, &x, axes_attr)?, Op::Alias))
    }

    /// Squeeze's output shape for an input of shape `x`.
    pub(super) fn squeezed(
        &self,
        node: &Node,
        x: &[usize],
        axes_attr: Option<&[i64]>,
    ) -> Result<Shape, OnnxError> {
        Ok(match self.axes(node, axes_attr, x.len())? {
            None => x.iter().copied().filter(|&d| d != 1).collect(),
            Some(axes) => {
                if let Some(&a) = axes.iter().find(|&&a| x[a] != 1) {
                    return Err(node.error(format!(
                        "axis {a} of {x:?} has size {}, not 1: it cannot be squeezed",
                        x[a]
                    )));
                }
                (0..x.len())
                    .filter(|d| !axes.contains(d))
                    .map(|d| x[d])
                    .collect()
            }
        })
    }

    pub(super) fn unsqueeze(
        &mut self,
        node: &'a Node,
        axes_attr: Option<&[i64]>,
    ) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        Ok(Lowered::new(
            self.unsqueezed(node, &x, axes_attr)?,
            Op::Alias,
        ))
    }

    /// Unsqueeze's output shape for an input of shape `x`.
    pub(super) fn unsqueezed(
        &self,
        node: &Node,
        x: &[usize],
        axes_attr: Option<&[i64]>,
    ) -> Result<Shape, OnnxError> {
        let rank = x.len();
        // Axes index the output, whose rank is the input's plus their number.
        let count = match axes_attr {
            Some(a) => a.len(),
            None => self.ints(node, 1, "axes")?.map_or(0, |a| a.len()),
        };
        let axes = self
            .axes(node, axes_attr, rank + count)?
            .filter(|a| !a.is_empty())
            .ok_or_else(|| node.error("axes are required"))?;
        let mut rest = x.iter();
        Ok((0..rank + count)
            .map(|d| {
                if axes.contains(&d) {
                    1
                } else {
                    rest.next().copied().unwrap_or(1)
                }
            })
            .collect())
    }

    pub(super) fn slice(
        &mut self,
        node: &'a Node,
        attrs: Option<&SliceAttrs>,
    ) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        let (out, starts, steps) = self.slice_window(node, &x, attrs)?;
        Ok(Lowered::new(
            out,
            Op::Slice {
                in_shape: x,
                starts,
                steps,
            },
        ))
    }

    /// Slice's output shape, first element and step per axis for an input of shape `x`.
    pub(super) fn slice_window(
        &self,
        node: &Node,
        x: &[usize],
        attrs: Option<&SliceAttrs>,
    ) -> Result<(Shape, Vec<i64>, Vec<i64>), OnnxError> {
        let rank = x.len();
        let required = |v: Option<Vec<i64>>, what: &str| {
            v.ok_or_else(|| node.error(format!("{what} are required")))
        };
        let (starts, ends, axes, steps) = match attrs {
            Some(a) => (a.starts.clone(), a.ends.clone(), a.axes.clone(), None),
            None => (
                required(self.ints(node, 1, "starts")?, "starts")?,
                required(self.ints(node, 2, "ends")?, "ends")?,
                self.ints(node, 3, "axes")?,
                self.ints(node, 4, "steps")?,
            ),
        };
        let n = starts.len();
        let axes: Vec<usize> = match axes {
            None => (0..n).collect(),
            Some(a) => a
                .iter()
                .map(|&v| normalize_axis(v, rank, node, false))
                .collect::<Result<_, _>>()?,
        };
        let steps = steps.unwrap_or_else(|| vec![1; n]);
        if ends.len() != n || axes.len() != n || steps.len() != n {
            return Err(node.error(format!(
                "starts, ends, axes and steps must have one value per sliced axis: {n}, {}, {}, {}",
                ends.len(),
                axes.len(),
                steps.len()
            )));
        }
        let mut begin = vec![0i64; rank];
        let mut step = vec![1i64; rank];
        let mut out: Shape = x.to_vec();
        let mut seen = vec![false; rank];
        for k in 0..n {
            let (a, s) = (axes[k], steps[k]);
            if std::mem::replace(&mut seen[a], true) {
                return Err(node.error(format!("axis {a} is sliced twice")));
            }
            if s == 0 {
                return Err(node.error(format!("step 0 on axis {a}")));
            }
            let dim = x[a] as i64;
            let norm = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
            // The specification's clamping: forwards into [0, dim]; backwards the start into
            // [0, dim - 1] and the end into [-1, dim - 1].
            let (start, end) = match (dim, s > 0) {
                (0, _) => (0, 0),
                (_, true) => (norm(starts[k]).clamp(0, dim), norm(ends[k]).clamp(0, dim)),
                (_, false) => (
                    norm(starts[k]).clamp(0, dim - 1),
                    norm(ends[k]).clamp(-1, dim - 1),
                ),
            };
            let span = if s > 0 { end - start } else { start - end };
            let size = if span <= 0 {
                0
            } else {
                (span - 1) / s.saturating_abs() + 1
            };
            begin[a] = start;
            // A step only matters between two elements, which the clamping keeps inside the
            // axis: a lone element takes step 1 (no overflow in the kernel's offsets).
            step[a] = if size <= 1 { 1 } else { s };
            out[a] = size as usize;
        }
        Ok((out, begin, step))
    }

    /// Gather of FLOAT data at constant indices (integers known now are folded instead).
    pub(super) fn gather(&mut self, node: &'a Node, axis: i64) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        let a = normalize_axis(axis, x.len(), node, false)?;
        let (idx_shape, indices) = self.indices(node, x[a])?;
        let out: Shape = x[..a]
            .iter()
            .chain(&idx_shape)
            .chain(&x[a + 1..])
            .copied()
            .collect();
        Ok(Lowered::new(
            out,
            Op::Gather {
                in_shape: x,
                axis: a,
                indices,
            },
        ))
    }

    /// Gather's indices (input 1, integers known now), each within `len` (negative: from the
    /// end), with their shape.
    pub(super) fn indices(
        &self,
        node: &Node,
        len: usize,
    ) -> Result<(Shape, Vec<usize>), OnnxError> {
        let Some(Known::Ints(ix)) = node.input(1).and_then(|n| self.values.get(n)) else {
            return Err(node.error(
                "the indices (input 1) must be integers known when planning (a constant or \
                 shape arithmetic)",
            ));
        };
        let indices = ix
            .data
            .iter()
            .map(|&i| {
                let j = if i < 0 { i + len as i64 } else { i };
                usize::try_from(j).ok().filter(|&j| j < len).ok_or_else(|| {
                    node.error(format!("index {i} is out of range for an axis of {len}"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok((ix.shape.clone(), indices))
    }

    pub(super) fn layer_norm(
        &mut self,
        node: &'a Node,
        axis: i64,
        epsilon: f32,
    ) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        let a = normalize_axis(axis, x.len(), node, false)?;
        let normalised = &x[a..];
        for (i, what) in [(1, "scale"), (2, "B")] {
            if node.input(i).is_none() {
                if i == 1 {
                    return Err(node.error("input 1 (the scale) is required"));
                }
                continue;
            }
            // numpy broadcasting to the normalised axes; the engine holds one value per
            // normalised element, so a scale that repeats along an axis is refused by name.
            let s = self.data_shape(node, i)?;
            let name = node.input(i).unwrap_or("");
            let broadcasts =
                cnn_graph::shape::broadcast_shapes(&s, normalised).is_some_and(|b| b == normalised);
            if !broadcasts {
                return Err(node.error(format!(
                    "{what} ('{name}') has shape {s:?}, which does not broadcast to the \
                     normalised axes {normalised:?} of {x:?}"
                )));
            }
            if product(&s) != product(normalised) {
                return Err(node.error(format!(
                    "{what} ('{name}') has shape {s:?}: a {what} repeated along the normalised \
                     axes {normalised:?} is not supported (give one value per element)"
                )));
            }
        }
        let params = self.claim(node, &[1, 2], &[]);
        let inner = product(normalised);
        let formula = (!params.is_empty())
            .then(|| Expr::sum(params.iter().map(|_| Expr::n(inner)).collect()));
        let mut l = Lowered::new(x.clone(), Op::LayerNorm { inner, epsilon });
        l.params = params;
        l.formula = formula;
        Ok(l)
    }

    /// A Split as one Slice node per output (named `node:k`, type Split).
    pub(super) fn split(
        &mut self,
        node: &'a Node,
        axis: i64,
        split_attr: Option<&[i64]>,
        num_outputs: Option<i64>,
    ) -> Result<Vec<(&'a str, cnn_graph::Node)>, OnnxError> {
        let x = self.data_shape(node, 0)?;
        let a = normalize_axis(axis, x.len(), node, false)?;
        let outputs: Vec<Option<&'a str>> = node.outputs.iter().map(|o| o.as_deref()).collect();
        let count = outputs.len();
        let sizes: Vec<usize> = match (split_attr.map(<[i64]>::to_vec), self.ints(node, 1, "split"))
        {
            (Some(s), _) | (None, Ok(Some(s))) => s
                .iter()
                .map(|&v| usize::try_from(v).map_err(|_| node.error(format!("split size {v}"))))
                .collect::<Result<_, _>>()?,
            (None, Ok(None)) => {
                if num_outputs.is_some_and(|n| n != count as i64) {
                    return Err(node.error(format!(
                        "num_outputs = {} but the node has {count} outputs",
                        num_outputs.unwrap_or(0)
                    )));
                }
                // Parts of ceil(len / count), the last one smaller; a part left empty is an
                // error, as in the reference implementation.
                let parts = count.max(1);
                let each = x[a].div_ceil(parts);
                let sizes: Vec<usize> = (0..parts)
                    .map(|k| each.min(x[a].saturating_sub(k * each)))
                    .collect();
                if num_outputs.is_some() && sizes.contains(&0) {
                    return Err(node.error(format!(
                        "axis {a} of {x:?} cannot be split into {count} parts of \
                         ceil({}/{count}) = {each}: the last would be empty",
                        x[a]
                    )));
                }
                sizes
            }
            (None, Err(e)) => return Err(e),
        };
        let total = sizes.iter().try_fold(0usize, |t, &s| t.checked_add(s));
        if sizes.len() != count || total != Some(x[a]) {
            return Err(node.error(format!(
                "sizes {sizes:?} do not split axis {a} of {x:?} into {count} outputs"
            )));
        }
        let mut offset = 0i64;
        let mut nodes = Vec::new();
        for (k, (out, &size)) in outputs.iter().zip(&sizes).enumerate() {
            let mut starts = vec![0i64; x.len()];
            starts[a] = offset;
            offset += size as i64;
            let Some(out) = out else { continue };
            let mut shape = x.clone();
            shape[a] = size;
            let mut g = cnn_graph::Node::new(
                format!("{}:{k}", node.name),
                node.op_type.clone(),
                Op::Slice {
                    in_shape: x.clone(),
                    starts,
                    steps: vec![1; x.len()],
                },
            );
            g.inputs = vec![node.input(0).and_then(|n| self.value_id(n))];
            g.input_shapes = vec![x.clone()];
            g.output_shape = shape;
            nodes.push((*out, g));
        }
        Ok(nodes)
    }
}

/// `perm` (absent: the axes reversed) checked as a permutation of the axes of `x`.
pub(super) fn permutation(
    node: &Node,
    x: &[usize],
    perm: Option<&[i64]>,
) -> Result<Vec<usize>, OnnxError> {
    let rank = x.len();
    Ok(match perm {
        None => (0..rank).rev().collect(),
        Some(p) => {
            let mut seen = vec![false; rank];
            let mut out = Vec::with_capacity(p.len());
            for &v in p {
                let d = usize::try_from(v).ok().filter(|&d| d < rank && !seen[d]);
                let Some(d) = d else {
                    return Err(node.error(format!(
                        "perm {p:?} is not a permutation of the {rank} axes of {x:?}"
                    )));
                };
                seen[d] = true;
                out.push(d);
            }
            if out.len() != rank {
                return Err(node.error(format!(
                    "perm {p:?} is not a permutation of the {rank} axes of {x:?}"
                )));
            }
            out
        }
    })
}
