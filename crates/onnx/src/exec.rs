//! Running a planned ONNX graph. Values live in a map from name to tensor; each is dropped
//! after its last reader (or moved into it, for ops that only change the shape), so memory
//! holds the live frontier of the graph, not every activation. The buffers of dropped values
//! are kept (a few, [`Spare`]) and reused for convolution and pooling outputs, which the
//! kernels overwrite whole: such an output is then neither allocated nor zero-filled again.
//! An element-wise Add or Mul of two same-shaped tensors writes into the one no later node
//! reads. Convolutions, dense-shaped Gemm, pooling, global pooling, activations and softmax
//! run on the `cnn-conv` kernels the model-file engine uses; the rest on [`crate::kernels`].

use crate::error::OnnxError;
use crate::kernels;
use crate::load::OnnxModel;
use crate::plan::{Kernel, NodePlan, OnnxPlan, Scalar, Shape, UnaryOp};
use cnn_conv::{Activation, Padding, Pool2dGeometry, Pool2dSpec};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A computed tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub shape: Shape,
    pub data: Vec<f32>,
}

struct Env<'a> {
    model: &'a OnnxModel,
    values: HashMap<&'a str, Value>,
    /// The caller's input tensors, borrowed (never moved or freed here).
    inputs: HashMap<&'a str, (&'a [usize], &'a [f32])>,
    /// Index of the last node reading each value (graph outputs: never dropped).
    last_use: HashMap<&'a str, usize>,
    /// Buffers of dropped values, for outputs that are overwritten whole.
    spare: Spare,
}

/// Buffers of dropped values kept for reuse: at most [`Spare::KEPT`], the largest.
#[derive(Default)]
struct Spare {
    buffers: Vec<Vec<f32>>,
}

impl Spare {
    const KEPT: usize = 4;

    /// Keeps `data`'s buffer (dropping the smallest one when more than `KEPT` are kept).
    fn keep(&mut self, data: Vec<f32>) {
        self.buffers.push(data);
        if self.buffers.len() > Self::KEPT {
            self.buffers
                .sort_by_key(|v| std::cmp::Reverse(v.capacity()));
            self.buffers.truncate(Self::KEPT);
        }
    }

    /// The smallest kept buffer with room for `len` values, resized to `len` (its old contents
    /// left in place, any part beyond its old length zeroed).
    fn take(&mut self, len: usize) -> Option<Vec<f32>> {
        let fit = (0..self.buffers.len())
            .filter(|&i| self.buffers[i].capacity() >= len)
            .min_by_key(|&i| self.buffers[i].capacity())?;
        let mut v = self.buffers.swap_remove(fit);
        v.truncate(len);
        v.resize(len, 0.0);
        Some(v)
    }
}

impl<'a> Env<'a> {
    fn get(&self, name: &str) -> Result<(&[usize], &[f32]), OnnxError> {
        if let Some(v) = self.values.get(name) {
            return Ok((&v.shape, &v.data));
        }
        if let Some(&(shape, data)) = self.inputs.get(name) {
            return Ok((shape, data));
        }
        match self.model.constant(name) {
            Some(c) => match c.as_f32() {
                Some(d) => Ok((&c.shape, d)),
                None => Err(OnnxError::graph(format!("value '{name}' is not FLOAT"))),
            },
            None => Err(OnnxError::graph(format!(
                "value '{name}' has not been computed"
            ))),
        }
    }

    /// Takes `name`'s tensor out if `node` is its last reader, else copies it.
    fn take(&mut self, name: &'a str, node: usize) -> Result<Value, OnnxError> {
        if self.last_use.get(name) == Some(&node) {
            if let Some(v) = self.values.remove(name) {
                return Ok(v);
            }
        }
        let (shape, data) = self.get(name)?;
        Ok(Value {
            shape: shape.to_vec(),
            data: data.to_vec(),
        })
    }

    /// A buffer of `len` values for an output the kernel overwrites whole: a kept one
    /// ([`Spare::take`]), else a new zero-filled one.
    fn overwritable(
        &mut self,
        node: &crate::load::Node,
        len: usize,
    ) -> Result<Vec<f32>, OnnxError> {
        match self.spare.take(len) {
            Some(v) => Ok(v),
            None => zeroed(node, len),
        }
    }

    fn scalar(&self, node: &crate::load::Node, s: Scalar, default: f32) -> Result<f32, OnnxError> {
        Ok(match s {
            Scalar::Absent => default,
            Scalar::Const(v) => v,
            Scalar::Input(i) => {
                let name = node.input(i).unwrap_or("");
                *self
                    .get(name)?
                    .1
                    .first()
                    .ok_or_else(|| node.error(format!("'{name}' is empty")))?
            }
        })
    }
}

/// Runs `plan` on `inputs` (one flat tensor per graph input, in order, with the planned
/// shapes; borrowed, not copied) and returns the graph outputs.
pub fn run<I: AsRef<[f32]>>(
    model: &OnnxModel,
    plan: &OnnxPlan,
    inputs: &[I],
) -> Result<Vec<Value>, OnnxError> {
    run_timed(model, plan, inputs, None)
}

/// [`run`], adding each node's time to `times[node]`.
pub fn run_timed<'a, I: AsRef<[f32]>>(
    model: &'a OnnxModel,
    plan: &'a OnnxPlan,
    inputs: &'a [I],
    mut times: Option<&mut [Duration]>,
) -> Result<Vec<Value>, OnnxError> {
    if inputs.len() != plan.inputs.len() {
        return Err(OnnxError::graph(format!(
            "the model has {} input(s), {} given",
            plan.inputs.len(),
            inputs.len()
        )));
    }
    let mut env = Env {
        model,
        values: HashMap::new(),
        inputs: HashMap::new(),
        last_use: HashMap::new(),
        spare: Spare::default(),
    };
    for (i, n) in model.nodes.iter().enumerate() {
        for input in n.inputs.iter().flatten() {
            env.last_use.insert(input.as_str(), i);
        }
    }
    for o in &model.outputs {
        env.last_use.insert(o.as_str(), usize::MAX);
    }
    for ((name, shape), data) in plan.inputs.iter().zip(inputs) {
        let data = data.as_ref();
        let want: usize = shape.iter().product();
        if data.len() != want {
            return Err(OnnxError::input(
                name,
                format!(
                    "{} values given, the shape {shape:?} needs {want}",
                    data.len()
                ),
            ));
        }
        env.inputs.insert(name.as_str(), (shape, data));
    }
    for np in &plan.nodes {
        let start = Instant::now();
        let node = &model.nodes[np.node];
        let out = run_node(&mut env, np).map_err(|e| match e {
            OnnxError::Graph { message } => node.error(message),
            other => other,
        })?;
        debug_assert_eq!(out.shape, np.output_shape);
        for input in node.inputs.iter().flatten() {
            if env.last_use.get(input.as_str()) == Some(&np.node) {
                if let Some(v) = env.values.remove(input.as_str()) {
                    env.spare.keep(v.data);
                }
            }
        }
        env.values.insert(node.output(), out);
        if let Some(t) = times.as_deref_mut() {
            t[np.node] += start.elapsed();
        }
    }
    model
        .outputs
        .iter()
        .map(|o| {
            let (shape, data) = env.get(o)?;
            Ok(Value {
                shape: shape.to_vec(),
                data: data.to_vec(),
            })
        })
        .collect()
}

fn kernel_error(node: &crate::load::Node, e: impl std::fmt::Display) -> OnnxError {
    node.error(e.to_string())
}

/// A zero-filled output buffer, or an error (not an abort) when memory cannot be had.
fn zeroed(node: &crate::load::Node, len: usize) -> Result<Vec<f32>, OnnxError> {
    cnn_tensor::try_zeroed(len, "the output").map_err(|e| node.error(e.to_string()))
}

/// An empty buffer with room for `len` values, or an error when memory cannot be had.
fn zeroed_capacity(node: &crate::load::Node, len: usize) -> Result<Vec<f32>, OnnxError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        node.error(format!(
            "cannot allocate {} bytes for the output",
            len as u128 * 4
        ))
    })?;
    Ok(v)
}

fn run_node<'a>(env: &mut Env<'a>, np: &NodePlan) -> Result<Value, OnnxError> {
    let model = env.model;
    let node = &model.nodes[np.node];
    let out_shape = np.output_shape.clone();
    let out_len: usize = out_shape.iter().product();
    let input = |i: usize| node.input(i).unwrap_or("");
    if out_len == 0 {
        // An empty result (a zero dimension somewhere): nothing to compute, and the kernels'
        // per-row tables are never built for dimensions that only an empty tensor can have.
        return Ok(Value {
            shape: out_shape,
            data: Vec::new(),
        });
    }
    if matches!(
        np.kernel,
        Kernel::MatMul { .. } | Kernel::Concat { .. } | Kernel::Pad { .. }
    ) {
        // These kernels allocate their result themselves: make sure it can be had first.
        drop(zeroed_capacity(node, out_len)?);
    }
    let data = match &np.kernel {
        Kernel::Conv {
            geom,
            batch,
            act,
            folded,
            packed,
        } => {
            // Written whole by the kernels (whatever the buffer held before).
            let mut out = env.overwritable(node, out_len)?;
            let (_, x) = env.get(input(0))?;
            let (w, bias) = match folded {
                Some(f) => (f.weights.as_slice(), Some(f.bias.as_slice())),
                None => (
                    env.get(input(1))?.1,
                    match node.input(2) {
                        Some(b) => Some(env.get(b)?.1),
                        None => None,
                    },
                ),
            };
            match packed {
                Some(p) => cnn_conv::conv2d_packed(geom, x, *batch, p, bias, *act, &mut out),
                None => cnn_conv::conv2d(geom, x, *batch, w, bias, *act, &mut out),
            }
            .map_err(|e| kernel_error(node, e))?;
            out
        }
        Kernel::Gemm {
            m,
            k,
            n,
            alpha,
            beta,
            trans_a,
            trans_b,
            c_shape,
            dense,
        } => {
            let (_, a) = env.get(input(0))?;
            let (_, b) = env.get(input(1))?;
            let c = match node.input(2) {
                Some(name) => Some(env.get(name)?.1),
                None => None,
            };
            if *dense {
                let mut out = zeroed(node, out_len)?;
                cnn_conv::dense(a, *m, *k, b, c, Activation::Linear, &mut out)
                    .map_err(|e| kernel_error(node, e))?;
                out
            } else {
                let (mut out, beta) = match (c, c_shape) {
                    (Some(c), Some(cs)) if *beta != 0.0 => {
                        (kernels::broadcast_to(cs, c, &[*m, *n], *beta), 1.0)
                    }
                    _ => (zeroed(node, out_len)?, 0.0),
                };
                kernels::sgemm(*m, *k, *n, *alpha, a, *trans_a, b, *trans_b, beta, &mut out);
                out
            }
        }
        Kernel::MatMul {
            a_shape,
            b_shape,
            batch_shape,
            ..
        } => {
            let (_, a) = env.get(input(0))?;
            let (_, b) = env.get(input(1))?;
            kernels::matmul(a_shape, a, b_shape, b, batch_shape)
        }
        Kernel::Binary(op) => {
            // Two tensors of the output's shape (a residual connection): the result goes into
            // one of them when this node is its last reader, instead of a new buffer.
            let same = |i: usize| {
                env.get(input(i))
                    .is_ok_and(|(s, _)| s == out_shape.as_slice())
            };
            let owned = |i: usize| {
                env.last_use.get(input(i)) == Some(&np.node) && env.values.contains_key(input(i))
            };
            let reuse = (same(0) && same(1) && input(0) != input(1))
                .then(|| (0..2).find(|&i| owned(i)))
                .flatten();
            match reuse {
                Some(i) => {
                    let mut acc = env.take(input(i), np.node)?.data;
                    kernels::binary_in_place(*op, &mut acc, env.get(input(1 - i))?.1);
                    acc
                }
                None => {
                    drop(zeroed_capacity(node, out_len)?);
                    let (sa, a) = env.get(input(0))?;
                    let (sb, b) = env.get(input(1))?;
                    kernels::binary(*op, sa, a, sb, b, &out_shape)
                }
            }
        }
        Kernel::Unary(u) => {
            let mut v = env.take(input(0), np.node)?.data;
            match u {
                UnaryOp::Relu => Activation::Relu.apply(&mut v),
                UnaryOp::Sigmoid => Activation::Sigmoid.apply(&mut v),
                UnaryOp::Tanh => Activation::Tanh.apply(&mut v),
                UnaryOp::LeakyRelu(alpha) => v.iter_mut().for_each(|x| {
                    if *x < 0.0 {
                        *x *= alpha
                    }
                }),
            }
            v
        }
        Kernel::Clip { min, max } => {
            let lo = env.scalar(node, *min, f32::NEG_INFINITY)?;
            let hi = env.scalar(node, *max, f32::INFINITY)?;
            let mut v = env.take(input(0), np.node)?.data;
            // ONNX: min is applied first, then max (so min > max gives max everywhere).
            v.iter_mut().for_each(|x| *x = x.max(lo).min(hi));
            v
        }
        Kernel::Softmax {
            outer,
            axis_len,
            inner,
        } => {
            let mut v = env.take(input(0), np.node)?.data;
            cnn_conv::softmax_channels(&mut v, *outer, *axis_len, *inner);
            v
        }
        Kernel::Alias => env.take(input(0), np.node)?.data,
        Kernel::Pool(g) => match fast_pool(g) {
            Some(geom) => {
                // Written whole by the kernels.
                let mut out = env.overwritable(node, out_len)?;
                let (_, x) = env.get(input(0))?;
                let r = if g.max {
                    cnn_conv::max_pool2d(&geom, x, 1, &mut out)
                } else {
                    cnn_conv::avg_pool2d(&geom, x, 1, &mut out)
                };
                r.map_err(|e| kernel_error(node, e))?;
                out
            }
            None => {
                drop(zeroed_capacity(node, out_len)?);
                kernels::pool(g, env.get(input(0))?.1)
            }
        },
        Kernel::GlobalPool {
            max,
            planes,
            spatial,
        } => {
            let (_, x) = env.get(input(0))?;
            let mut out = zeroed(node, out_len)?;
            let r = if *max {
                cnn_conv::global_max_pool2d(x, 1, *planes, *spatial, &mut out)
            } else {
                cnn_conv::global_avg_pool2d(x, 1, *planes, *spatial, &mut out)
            };
            r.map_err(|e| kernel_error(node, e))?;
            out
        }
        Kernel::BatchNorm {
            channels,
            inner,
            epsilon,
        } => {
            // Per channel `y = x * scale + shift`, from the statistics as they are held.
            let (scale, shift): (Vec<f32>, Vec<f32>) = {
                let stat = |k: usize| env.get(input(k)).map(|(_, d)| d);
                let (gamma, beta, mean, var) = (stat(1)?, stat(2)?, stat(3)?, stat(4)?);
                (0..*channels)
                    .map(|c| {
                        let s = gamma[c] / (var[c] + epsilon).sqrt();
                        (s, beta[c] - mean[c] * s)
                    })
                    .unzip()
            };
            let mut v = env.take(input(0), np.node)?.data;
            for (i, plane) in v.chunks_exact_mut((*inner).max(1)).enumerate() {
                let c = i % channels;
                plane.iter_mut().for_each(|x| *x = *x * scale[c] + shift[c]);
            }
            v
        }
        Kernel::Concat { axis } => {
            let mut parts = Vec::new();
            for name in node.inputs.iter().flatten() {
                parts.push(env.get(name)?);
            }
            kernels::concat(&parts, *axis, out_len)
        }
        Kernel::Pad { begin, end, value } => {
            let v = env.scalar(node, *value, 0.0)?;
            let (s, x) = env.get(input(0))?;
            kernels::pad(s, x, begin, end, v).1
        }
    };
    if data.len() != out_len {
        return Err(node.error(format!(
            "produced {} values for the planned shape {out_shape:?}",
            data.len()
        )));
    }
    Ok(Value {
        shape: out_shape,
        data,
    })
}

/// The engine's vectorised 2-D pooling kernel, when it computes exactly what ONNX asks: no
/// dilation, and padding that only ever excludes cells (max, or average without
/// `count_include_pad`). Ceil mode becomes extra padding at the end.
fn fast_pool(g: &crate::plan::PoolGeometry) -> Option<Pool2dGeometry> {
    if g.dilation != [1, 1] || (!g.max && g.count_include_pad) {
        return None;
    }
    let extra = |i: usize| {
        ((g.out_hw[i] - 1) * g.stride[i] + g.kernel[i])
            .saturating_sub(g.in_hw[i] + g.pad_begin[i] + g.pad_end[i])
    };
    let spec = Pool2dSpec {
        pool: g.kernel,
        stride: g.stride,
        padding: Padding::Asymmetric {
            top: g.pad_begin[0],
            bottom: g.pad_end[0] + extra(0),
            left: g.pad_begin[1],
            right: g.pad_end[1] + extra(1),
        },
    };
    let geom = Pool2dGeometry::resolve(g.planes, g.in_hw[0], g.in_hw[1], &spec).ok()?;
    (geom.out_h == g.out_hw[0] && geom.out_w == g.out_hw[1]).then_some(geom)
}

#[cfg(test)]
mod tests {
    use super::Spare;

    #[test]
    fn spare_buffers_keep_the_largest_and_give_the_smallest_fit() {
        let mut spare = Spare::default();
        for len in [10, 50, 20, 40, 30] {
            spare.keep(vec![len as f32; len]);
        }
        // Five given, four kept: the 10-value buffer was dropped.
        assert!(spare
            .take(11)
            .is_some_and(|v| v.capacity() == 20 && v == vec![20.0; 11]));
        assert!(spare
            .take(5)
            .is_some_and(|v| v.capacity() == 30 && v.len() == 5));
        // Longer than its old length: the old values stay, the new part is zero.
        spare.keep(vec![7.0; 3]);
        let mut grown = Vec::with_capacity(35);
        grown.extend([1.0f32; 2]);
        spare.keep(grown);
        let v = spare.take(4).unwrap();
        assert_eq!(v, [1.0, 1.0, 0.0, 0.0]);
        assert!(spare.take(60).is_none());
        assert_eq!(spare.take(40).map(|v| v.capacity()), Some(40));
        assert_eq!(spare.take(1).map(|v| v.capacity()), Some(3));
        assert_eq!(spare.take(1).map(|v| v.capacity()), Some(50));
        assert!(spare.take(1).is_none());
    }
}
