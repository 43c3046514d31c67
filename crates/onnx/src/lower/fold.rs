//! Shape arithmetic evaluated when planning. Exporters compute shapes inside the graph —
//! `Shape → Gather → Unsqueeze → Concat → Reshape` for a flatten, `Shape → Slice → Div` for
//! `torch.chunk` — on integers that are all known once the input's shape is. Such nodes are
//! evaluated here, on `i64`, and leave no node in the graph that runs: the ops that read their
//! results (Reshape's shape, Slice's starts, Gather's indices) see constants. A node is folded
//! when every input it reads is such an integer value (or, for Shape, any value with a known
//! shape); ops that exist only for shape arithmetic (Shape, Range, ConstantOfShape, Equal,
//! Where) are errors otherwise.

use super::{normalize_axis, Ints, Known, Planner};
use crate::error::OnnxError;
use crate::load::Node;
use crate::ops::Op as OnnxOp;
use crate::proto::data_type;
use cnn_graph::exec::ops;
use cnn_graph::shape::broadcast_shapes;

impl Ints {
    fn vector(data: Vec<i64>) -> Self {
        Ints {
            shape: vec![data.len()],
            data,
        }
    }

    fn scalar(&self, node: &Node, what: &str) -> Result<i64, OnnxError> {
        match self.data.as_slice() {
            [v] => Ok(*v),
            d => Err(node.error(format!("{what} must be one value, not {}", d.len()))),
        }
    }
}

/// The most values a folded integer tensor may hold (shapes are short: this only stops a
/// hostile file from asking for a huge one).
const MAX_FOLDED: usize = 1 << 24;

/// The element count of a folded result of `shape`, or an error when it is over the cap.
fn folded_len(node: &Node, shape: &[usize]) -> Result<usize, OnnxError> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_FOLDED)
        .ok_or_else(|| {
            node.error(format!(
                "shape arithmetic of {shape:?} values is over the {MAX_FOLDED}-value limit"
            ))
        })
}

/// `f` element-wise over `a` and `b` with numpy broadcasting.
fn broadcast(
    node: &Node,
    a: &Ints,
    b: &Ints,
    f: impl Fn(i64, i64) -> Result<i64, String>,
) -> Result<Ints, OnnxError> {
    let shape = broadcast_shapes(&a.shape, &b.shape).ok_or_else(|| {
        node.error(format!(
            "shapes {:?} and {:?} do not broadcast",
            a.shape, b.shape
        ))
    })?;
    let at = |v: &Ints, idx: &[usize]| {
        let off = v.shape.len();
        let mut o = 0usize;
        for (k, &d) in v.shape.iter().enumerate() {
            let i = idx[idx.len() - off + k];
            o = o * d + if d == 1 { 0 } else { i };
        }
        v.data[o]
    };
    let len = folded_len(node, &shape)?;
    let mut data = Vec::with_capacity(len);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..len {
        data.push(f(at(a, &idx), at(b, &idx)).map_err(|e| node.error(e))?);
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(Ints { shape, data })
}

fn overflow() -> String {
    "integer overflow in shape arithmetic".to_string()
}

/// An element-wise step of shape arithmetic.
type IntOp = fn(i64, i64) -> Result<i64, String>;

fn arithmetic(op: &OnnxOp) -> Option<IntOp> {
    Some(match op {
        OnnxOp::Add => |a, b| a.checked_add(b).ok_or_else(overflow),
        OnnxOp::Sub => |a, b| a.checked_sub(b).ok_or_else(overflow),
        OnnxOp::Mul => |a, b| a.checked_mul(b).ok_or_else(overflow),
        // Integer division truncates, as onnxruntime's does.
        OnnxOp::Div => |a, b| {
            a.checked_div(b)
                .ok_or_else(|| "division by zero in shape arithmetic".to_string())
        },
        OnnxOp::Equal => |a, b| Ok(i64::from(a == b)),
        OnnxOp::Less => |a, b| Ok(i64::from(a < b)),
        OnnxOp::Greater => |a, b| Ok(i64::from(a > b)),
        _ => return None,
    })
}

impl<'a> Planner<'a> {
    /// The integers input `i` holds, if they are known now.
    pub(super) fn known_ints(&self, node: &Node, i: usize) -> Option<&Ints> {
        match node.input(i).and_then(|n| self.values.get(n)) {
            Some(Known::Ints(v)) => Some(v),
            _ => None,
        }
    }

    /// Node `node` evaluated now, when it is shape arithmetic; `None` when it runs.
    pub(super) fn fold(&self, node: &'a Node) -> Result<Option<Ints>, OnnxError> {
        if let OnnxOp::Shape { start, end } = node.op {
            let shape = match node.input(0).and_then(|n| self.values.get(n)) {
                Some(Known::Data(s)) => s.clone(),
                Some(Known::Ints(v)) => v.shape.clone(),
                None => return Err(node.error("input 0 has no known shape")),
            };
            let rank = shape.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
            let (s, e) = (clamp(start), clamp(end.unwrap_or(rank)));
            let dims = shape[s..e.max(s)].iter().map(|&d| d as i64).collect();
            return Ok(Some(Ints::vector(dims)));
        }
        let inputs: Vec<&str> = node.inputs.iter().flatten().map(|s| s.as_str()).collect();
        let all_known = !inputs.is_empty()
            && inputs
                .iter()
                .all(|n| matches!(self.values.get(n), Some(Known::Ints(_))));
        if !all_known {
            // Comparisons, Not and Where on data run (booleans as 1.0 / 0.0).
            return match node.op {
                OnnxOp::Range | OnnxOp::ConstantOfShape { .. } => Err(node.error(
                    "this op runs on shape values only: its inputs must be integers known \
                     when planning",
                )),
                _ => Ok(None),
            };
        }
        // Input 0 may be an omitted optional one: then this is not shape arithmetic.
        let Some(x) = self.known_ints(node, 0) else {
            return Ok(None);
        };
        let v = match &node.op {
            OnnxOp::Identity => x.clone(),
            OnnxOp::Not => Ints {
                shape: x.shape.clone(),
                data: x.data.iter().map(|&v| i64::from(v == 0)).collect(),
            },
            OnnxOp::Cast { to } => match *to {
                data_type::INT64 | data_type::INT32 => x.clone(),
                other => {
                    return Err(node.error(format!(
                        "a Cast of shape values to {} is not supported (they stay integers)",
                        data_type::name(other)
                    )))
                }
            },
            OnnxOp::Unsqueeze { axes_attr } => Ints {
                shape: self.unsqueezed(node, &x.shape, axes_attr.as_deref())?,
                data: x.data.clone(),
            },
            OnnxOp::Squeeze { axes_attr } => Ints {
                shape: self.squeezed(node, &x.shape, axes_attr.as_deref())?,
                data: x.data.clone(),
            },
            OnnxOp::Reshape {
                allowzero,
                shape_attr,
            } => {
                let target = match shape_attr {
                    Some(s) => s.clone(),
                    None => self
                        .known_ints(node, 1)
                        .map(|t| t.data.clone())
                        .unwrap_or_default(),
                };
                Ints {
                    shape: super::tensor::reshape_target(node, &x.shape, &target, *allowzero)?,
                    data: x.data.clone(),
                }
            }
            OnnxOp::Transpose { perm } => {
                let perm = super::layout::permutation(node, &x.shape, perm.as_deref())?;
                Ints {
                    shape: perm.iter().map(|&d| x.shape[d]).collect(),
                    data: ops::transpose(&x.shape, &perm, &x.data),
                }
            }
            OnnxOp::Gather { axis } => {
                let a = normalize_axis(*axis, x.shape.len(), node, false)?;
                let (idx_shape, indices) = self.indices(node, x.shape[a])?;
                let shape: Vec<usize> = x.shape[..a]
                    .iter()
                    .chain(&idx_shape)
                    .chain(&x.shape[a + 1..])
                    .copied()
                    .collect();
                folded_len(node, &shape)?;
                Ints {
                    shape,
                    data: ops::gather(&x.shape, &x.data, a, &indices),
                }
            }
            OnnxOp::Slice { attrs } => {
                let (shape, starts, steps) = self.slice_window(node, &x.shape, attrs.as_ref())?;
                Ints {
                    data: ops::slice(&x.shape, &starts, &steps, &shape, &x.data),
                    shape,
                }
            }
            OnnxOp::Concat { axis } => {
                let parts: Vec<&Ints> = (0..node.inputs.len())
                    .filter_map(|i| self.known_ints(node, i))
                    .collect();
                let a = normalize_axis(*axis, x.shape.len(), node, false)?;
                let mut shape = x.shape.clone();
                shape[a] = 0;
                for p in &parts {
                    let fits = p.shape.len() == x.shape.len()
                        && (0..x.shape.len()).all(|d| d == a || p.shape[d] == x.shape[d]);
                    if !fits {
                        return Err(node.error(format!(
                            "shape values {:?} and {:?} do not join on axis {a}",
                            x.shape, p.shape
                        )));
                    }
                    shape[a] = shape[a]
                        .checked_add(p.shape[a])
                        .ok_or_else(|| node.error("the joined shape values overflow"))?;
                }
                let views: Vec<(&[usize], &[i64])> = parts
                    .iter()
                    .map(|p| (p.shape.as_slice(), p.data.as_slice()))
                    .collect();
                let len = folded_len(node, &shape)?;
                Ints {
                    shape,
                    data: ops::concat(&views, a, len),
                }
            }
            OnnxOp::Range => {
                let s = x.scalar(node, "start")?;
                let limit = self
                    .known_ints(node, 1)
                    .map_or(Ok(s), |v| v.scalar(node, "limit"))?;
                let delta = self
                    .known_ints(node, 2)
                    .map_or(Ok(1), |v| v.scalar(node, "delta"))?;
                if delta == 0 {
                    return Err(node.error("delta 0 never reaches the limit"));
                }
                // ceil((limit - start) / delta) in i128: no overflow, no rounding.
                let (span, d) = (limit as i128 - s as i128, delta as i128);
                let count = (span.div_euclid(d) + i128::from(span.rem_euclid(d) != 0)).max(0);
                if count > MAX_FOLDED as i128 {
                    return Err(node.error(format!("a range of {count} values is too long")));
                }
                Ints::vector((0..count as i64).map(|k| s + k * delta).collect())
            }
            OnnxOp::ConstantOfShape { value } => {
                let shape: Vec<usize> = x
                    .data
                    .iter()
                    .map(|&d| usize::try_from(d).map_err(|_| node.error(format!("dimension {d}"))))
                    .collect::<Result<_, _>>()?;
                let fill = match value.as_ref().map(|c| c.as_i64()) {
                    None => 0,
                    Some(Some([v])) => *v,
                    Some(_) => {
                        return Err(node.error(
                            "only an integer value is supported (a float ConstantOfShape \
                             would be data, not a shape value)",
                        ))
                    }
                };
                let len = cnn_tensor::element_count(&shape)
                    .ok()
                    .filter(|&n| n <= 1 << 24)
                    .ok_or_else(|| node.error(format!("shape {shape:?} is too large")))?;
                Ints {
                    shape,
                    data: vec![fill; len],
                }
            }
            OnnxOp::Where => {
                let (a, b) = match (self.known_ints(node, 1), self.known_ints(node, 2)) {
                    (Some(a), Some(b)) => (a, b),
                    _ => return Err(node.error("Where needs three inputs")),
                };
                // Each operand broadcast to the common shape, then picked element by element.
                let shape = broadcast_shapes(&x.shape, &a.shape)
                    .and_then(|s| broadcast_shapes(&s, &b.shape))
                    .ok_or_else(|| node.error("the condition and values do not broadcast"))?;
                let zeros = Ints {
                    data: vec![0; folded_len(node, &shape)?],
                    shape,
                };
                let [c, p, q] = [x, a, b].map(|v| broadcast(node, v, &zeros, |v, _| Ok(v)));
                let (c, p, q) = (c?, p?, q?);
                Ints {
                    data: (0..c.data.len())
                        .map(|k| if c.data[k] != 0 { p.data[k] } else { q.data[k] })
                        .collect(),
                    shape: c.shape,
                }
            }
            op => match (arithmetic(op), self.known_ints(node, 1)) {
                (Some(f), Some(b)) => broadcast(node, x, b, f)?,
                // Anything else on integers is not shape arithmetic the engine evaluates.
                _ => return Ok(None),
            },
        };
        Ok(Some(v))
    }
}
