//! One node of a run: its arm per op. Weighted layers call the `cnn-conv` kernels (im2col +
//! GEMM and its fast paths, depthwise, locally connected, dense) with the compiled weights
//! (folded, packed) and epilogue (fused activation); pooling, softmax and activations run on
//! the same crate's kernels; the rest on [`super::ops`]. Element-wise ops work in place on an
//! operand this node is the last reader of.

use super::{ops, reserve, zeroed, Env, ExecError};
use crate::compile::NodeWork;
use crate::op::{batchnorm_scale_shift, BinaryOp, Epilogue, Op, PoolGeometry, Scalar, UnaryOp};
use cnn_conv::{Activation, Conv2dGeometry, KernelError, PackedWeights, Padding, Pool2dGeometry};

fn kernel(node: usize) -> impl Fn(KernelError) -> ExecError {
    move |source| ExecError::Kernel { node, source }
}

/// The element count of `shape` (planned shapes were checked by the front end; this is the
/// executor's own guard).
fn element_count(node: usize, shape: &[usize]) -> Result<usize, ExecError> {
    cnn_tensor::element_count(shape).map_err(|e| ExecError::Node {
        node,
        message: e.to_string(),
    })
}

/// The epilogue a weighted node runs with: its own, or the activation fused into it.
fn epilogue(own: Epilogue, work: &NodeWork) -> Epilogue {
    match work.fused {
        Some(act) => Epilogue {
            act,
            softmax: false,
        },
        None => own,
    }
}

/// `u` on every element of `v`: vectorised where the kernels have the function, element by
/// element otherwise.
fn unary(u: UnaryOp, v: &mut [f32]) {
    ops::par_blocks(v, |block| match (u.activation(), u.elementwise()) {
        (Some(act), _) => act.apply(block),
        (None, Some(f)) => f.apply(block, None),
        (None, None) => block.iter_mut().for_each(|x| *x = u.apply(*x)),
    });
}

/// One convolution: with its packed weights when there are some, else packing them now; with
/// `onto`, the products are added to what `out` holds ([`cnn_conv::conv2d_packed_onto`]).
#[allow(clippy::too_many_arguments)]
fn convolve(
    geom: &Conv2dGeometry,
    x: &[f32],
    batch: usize,
    weights: &[f32],
    packed: Option<&PackedWeights>,
    bias: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
    onto: bool,
) -> Result<(), KernelError> {
    let owned;
    let p = match packed {
        Some(p) => p,
        None => {
            owned = PackedWeights::new(geom, weights)?;
            &owned
        }
    };
    match onto {
        true => cnn_conv::conv2d_packed_onto(geom, x, batch, p, bias, act, out),
        false => cnn_conv::conv2d_packed(geom, x, batch, p, bias, act, out),
    }
}

/// Softmax over the channel axis of `[batch, channels, spatial…]`, when the epilogue asks.
fn finish_softmax(e: Epilogue, out: &mut [f32], batch: usize, channels: usize) {
    if e.softmax && batch > 0 && channels > 0 {
        let inner = out.len() / batch / channels;
        cnn_conv::softmax_channels(out, batch, channels, inner);
    }
}

impl Env<'_> {
    /// The data at input position `k` of node `i` (an absent optional input: `None`).
    fn optional(&self, i: usize, k: usize) -> Result<Option<&[f32]>, ExecError> {
        match self.graph.nodes[i].input(k) {
            Some(v) => self.get(i, v).map(Some),
            None => Ok(None),
        }
    }

    /// The data at input position `k` of node `i`.
    fn arg(&self, i: usize, k: usize) -> Result<&[f32], ExecError> {
        self.optional(i, k)?.ok_or_else(|| ExecError::Node {
            node: i,
            message: format!("input {k} is required"),
        })
    }

    /// The input value at position `k` (0 when absent; the planner checked it is there).
    fn input_id(&self, i: usize, k: usize) -> usize {
        self.graph.nodes[i].input(k).unwrap_or(usize::MAX)
    }

    fn scalar(&self, i: usize, s: Scalar, default: f32) -> Result<f32, ExecError> {
        Ok(match s {
            Scalar::Absent => default,
            Scalar::Const(v) => v,
            Scalar::Input(k) => *self.arg(i, k)?.first().ok_or_else(|| ExecError::Node {
                node: i,
                message: format!("'{}' is empty", self.graph.values[self.input_id(i, k)].name),
            })?,
        })
    }
}

/// Runs node `i`; returns its output's data.
pub(super) fn run_node(
    env: &mut Env<'_>,
    i: usize,
    work: &NodeWork,
) -> Result<Vec<f32>, ExecError> {
    let graph = env.graph;
    let n = &graph.nodes[i];
    let out_shape = &n.output_shape;
    let out_len = element_count(i, out_shape)?;
    if out_len == 0 {
        // An empty result (a zero dimension somewhere): nothing to compute, and the kernels'
        // per-row tables are never built for dimensions that only an empty tensor can have.
        return Ok(Vec::new());
    }
    if work.alias {
        return env.take(env.input_id(i, work.pass), i);
    }
    if let Some(u) = work.unary {
        let mut v = env.take(env.input_id(i, work.pass), i)?;
        unary(u, &mut v);
        return Ok(v);
    }
    let packed = |k: usize| work.packed.get(k).and_then(Option::as_ref);
    Ok(match &n.op {
        Op::Conv {
            geom,
            batch,
            epilogue: own,
        } => {
            let e = epilogue(*own, work);
            let mut out = match work.residual {
                // The residual, which the products are added to (moved when this node is its
                // last reader and does not read it otherwise, else copied).
                Some((skip, _)) if !env.graph.nodes[i].inputs.contains(&Some(skip)) => {
                    env.take(skip, i)?
                }
                Some((skip, _)) => env.copied(skip, i)?,
                // Written whole by the kernels (whatever the buffer held before).
                None => env.overwritable(i, out_len)?,
            };
            let x = env.arg(i, 0)?;
            let (w, bias) = match &work.folded {
                Some(f) => (f.weights.as_slice(), Some(f.bias.as_slice())),
                None => (env.arg(i, 1)?, env.optional(i, 2)?),
            };
            let onto = work.residual.is_some();
            convolve(geom, x, *batch, w, packed(0), bias, e.act, &mut out, onto)
                .map_err(kernel(i))?;
            finish_softmax(e, &mut out, *batch, geom.out_c);
            out
        }
        Op::ConvTranspose { geom, batch } => {
            let mut out = env.overwritable(i, out_len)?;
            let (x, w, b) = (env.arg(i, 0)?, env.arg(i, 1)?, env.optional(i, 2)?);
            cnn_conv::conv_transpose2d(geom, x, *batch, w, b, &mut out).map_err(kernel(i))?;
            out
        }
        Op::Separable {
            depthwise,
            pointwise,
            batch,
            epilogue: own,
        } => {
            let e = epilogue(*own, work);
            let mid = [*batch, depthwise.out_c, depthwise.out_h, depthwise.out_w];
            let mid_len = element_count(i, &mid)?;
            let mut mid = env.overwritable(i, mid_len)?;
            let mut out = env.overwritable(i, out_len)?;
            let (x, dw, pw) = (env.arg(i, 0)?, env.arg(i, 1)?, env.arg(i, 2)?);
            let bias = env.optional(i, 3)?;
            let linear = Activation::Linear;
            convolve(
                depthwise,
                x,
                *batch,
                dw,
                packed(0),
                None,
                linear,
                &mut mid,
                false,
            )
            .map_err(kernel(i))?;
            convolve(
                pointwise,
                &mid,
                *batch,
                pw,
                packed(1),
                bias,
                e.act,
                &mut out,
                false,
            )
            .map_err(kernel(i))?;
            env.spare.keep(mid);
            finish_softmax(e, &mut out, *batch, pointwise.out_c);
            out
        }
        Op::Local {
            geom,
            batch,
            epilogue: own,
        } => {
            let e = epilogue(*own, work);
            let mut out = zeroed(i, out_len)?;
            let (x, w, b) = (env.arg(i, 0)?, env.arg(i, 1)?, env.optional(i, 2)?);
            cnn_conv::locally_connected2d(geom, x, *batch, w, b, e.act, &mut out)
                .map_err(kernel(i))?;
            finish_softmax(e, &mut out, *batch, geom.out_c);
            out
        }
        Op::Dense {
            m,
            k,
            n: units,
            epilogue: own,
        } => {
            let e = epilogue(*own, work);
            let mut out = zeroed(i, out_len)?;
            let (x, w, b) = (env.arg(i, 0)?, env.arg(i, 1)?, env.optional(i, 2)?);
            cnn_conv::dense(x, *m, *k, w, b, e.act, &mut out).map_err(kernel(i))?;
            finish_softmax(e, &mut out, *m, *units);
            out
        }
        Op::Gemm {
            m,
            k,
            n: cols,
            alpha,
            beta,
            trans_a,
            trans_b,
            c_shape,
        } => {
            let (a, b, c) = (env.arg(i, 0)?, env.arg(i, 1)?, env.optional(i, 2)?);
            let (mut out, beta) = match (c, c_shape) {
                (Some(c), Some(cs)) if *beta != 0.0 => {
                    reserve(i, out_len)?;
                    (ops::broadcast_to(cs, c, &[*m, *cols], *beta), 1.0)
                }
                _ => (zeroed(i, out_len)?, 0.0),
            };
            ops::sgemm(
                *m, *k, *cols, *alpha, a, *trans_a, b, *trans_b, beta, &mut out,
            );
            out
        }
        Op::MatMul {
            a_shape,
            b_shape,
            batch_shape,
            ..
        } => {
            reserve(i, out_len)?;
            let (a, b) = (env.arg(i, 0)?, env.arg(i, 1)?);
            ops::matmul(a_shape, a, b_shape, b, batch_shape)
        }
        Op::Binary(op) => binary(env, i, *op, out_len)?,
        Op::Unary(u) => {
            let mut v = env.take(env.input_id(i, 0), i)?;
            unary(*u, &mut v);
            v
        }
        Op::Clip { min, max } => {
            let lo = env.scalar(i, *min, f32::NEG_INFINITY)?;
            let hi = env.scalar(i, *max, f32::INFINITY)?;
            let mut v = env.take(env.input_id(i, 0), i)?;
            // ONNX: min is applied first, then max (so min > max gives max everywhere).
            v.iter_mut().for_each(|x| *x = x.max(lo).min(hi));
            v
        }
        Op::Softmax {
            outer,
            axis_len,
            inner,
        } => {
            let mut v = env.take(env.input_id(i, 0), i)?;
            cnn_conv::softmax_channels(&mut v, *outer, *axis_len, *inner);
            v
        }
        Op::Alias => env.take(env.input_id(i, 0), i)?,
        Op::Where => {
            reserve(i, out_len)?;
            let graph = env.graph;
            let n = &graph.nodes[i];
            let shape = |k: usize| n.input(k).map(|v| graph.values[v].shape.as_slice());
            let (Some(cs), Some(xs), Some(ys)) = (shape(0), shape(1), shape(2)) else {
                return Err(ExecError::Node {
                    node: i,
                    message: "Where needs a condition and two values".into(),
                });
            };
            let (c, x, y) = (env.arg(i, 0)?, env.arg(i, 1)?, env.arg(i, 2)?);
            ops::select((cs, c), (xs, x), (ys, y), &n.output_shape)
        }
        Op::Pool(g) => match fast_pool(g) {
            Some((geom, overhang)) => {
                // Written whole by the kernels.
                let mut out = env.overwritable(i, out_len)?;
                let x = env.arg(i, 0)?;
                if g.max {
                    cnn_conv::max_pool2d(&geom, x, 1, &mut out)
                } else if g.count_include_pad {
                    cnn_conv::pool::avg_pool2d_include_pad(&geom, x, 1, &mut out, overhang)
                } else {
                    cnn_conv::avg_pool2d(&geom, x, 1, &mut out)
                }
                .map_err(kernel(i))?;
                out
            }
            None => {
                reserve(i, out_len)?;
                ops::pool(g, env.arg(i, 0)?)
            }
        },
        Op::GlobalPool {
            max,
            planes,
            spatial,
        } => {
            let x = env.arg(i, 0)?;
            let mut out = zeroed(i, out_len)?;
            if *max {
                cnn_conv::global_max_pool2d(x, 1, *planes, *spatial, &mut out)
            } else {
                cnn_conv::global_avg_pool2d(x, 1, *planes, *spatial, &mut out)
            }
            .map_err(kernel(i))?;
            out
        }
        Op::BatchNorm {
            channels,
            inner,
            epsilon,
        } => {
            // Per channel `y = x * scale + shift`, from the statistics as they are held.
            let stats = [
                env.arg(i, 1)?,
                env.arg(i, 2)?,
                env.arg(i, 3)?,
                env.arg(i, 4)?,
            ];
            let (scale, shift) =
                batchnorm_scale_shift(*channels, stats, *epsilon).ok_or_else(|| {
                    ExecError::Node {
                        node: i,
                        message: format!("a statistic holds fewer than the {channels} channels"),
                    }
                })?;
            let mut v = env.take(env.input_id(i, 0), i)?;
            for (p, plane) in v.chunks_exact_mut((*inner).max(1)).enumerate() {
                let c = p % channels;
                plane.iter_mut().for_each(|x| *x = *x * scale[c] + shift[c]);
            }
            v
        }
        Op::Concat { axis } => {
            reserve(i, out_len)?;
            let mut parts = Vec::new();
            for &v in n.inputs.iter().flatten() {
                parts.push((graph.values[v].shape.as_slice(), env.get(i, v)?));
            }
            ops::concat(&parts, *axis, out_len)
        }
        Op::Pad { begin, end, value } => {
            reserve(i, out_len)?;
            let v = env.scalar(i, *value, 0.0)?;
            let x_shape = &graph.values[env.input_id(i, 0)].shape;
            ops::pad(x_shape, env.arg(i, 0)?, begin, end, v).1
        }
        Op::Reduce { op, in_shape, axes } => {
            reserve(i, out_len)?;
            ops::reduce(*op, in_shape, axes, env.arg(i, 0)?)
        }
        Op::Slice {
            in_shape,
            starts,
            steps,
        } => {
            reserve(i, out_len)?;
            ops::slice(in_shape, starts, steps, out_shape, env.arg(i, 0)?)
        }
        Op::LayerNorm { inner, epsilon } => {
            let too_short = |what: &str, len: usize| ExecError::Node {
                node: i,
                message: format!("{what} holds {len} values; the normalised axes need {inner}"),
            };
            let scale = env.arg(i, 1)?;
            if scale.len() != *inner {
                return Err(too_short("the scale", scale.len()));
            }
            if let Some(b) = env.optional(i, 2)? {
                if b.len() != *inner {
                    return Err(too_short("the bias", b.len()));
                }
            }
            let mut v = env.take(env.input_id(i, 0), i)?;
            let (scale, bias) = (env.arg(i, 1)?, env.optional(i, 2)?);
            ops::layer_norm(&mut v, *inner, scale, bias, *epsilon);
            v
        }
        Op::Resize { in_shape, taps } => {
            ops::resize(in_shape, taps, env.arg(i, 0)?).ok_or(ExecError::Alloc {
                node: i,
                bytes: out_len as u128 * 4,
            })?
        }
        Op::Expand { in_shape } => {
            reserve(i, out_len)?;
            ops::broadcast_to(in_shape, env.arg(i, 0)?, out_shape, 1.0)
        }
        Op::Tile { in_shape } => {
            reserve(i, out_len)?;
            ops::tile(in_shape, out_shape, env.arg(i, 0)?)
        }
        Op::InstanceNorm {
            channels,
            inner,
            epsilon,
        } => {
            let (scale, bias) = (env.arg(i, 1)?, env.arg(i, 2)?);
            if scale.len() != *channels || bias.len() != *channels {
                return Err(ExecError::Node {
                    node: i,
                    message: format!("scale and bias must hold the {channels} channels"),
                });
            }
            let mut v = env.take(env.input_id(i, 0), i)?;
            let (scale, bias) = (env.arg(i, 1)?, env.arg(i, 2)?);
            ops::instance_norm(&mut v, *channels, *inner, scale, bias, *epsilon);
            v
        }
        Op::Lrn {
            channels,
            inner,
            size,
            alpha,
            beta,
            bias,
        } => {
            reserve(i, out_len)?;
            ops::lrn(
                env.arg(i, 0)?,
                *channels,
                *inner,
                *size,
                [*alpha, *beta, *bias],
            )
        }
        Op::GroupNorm {
            groups,
            channels,
            inner,
            epsilon,
            per_group,
        } => {
            let want = if *per_group { *groups } else { *channels };
            let (scale, bias) = (env.arg(i, 1)?, env.arg(i, 2)?);
            if scale.len() != want || bias.len() != want {
                return Err(ExecError::Node {
                    node: i,
                    message: format!("scale and bias must hold {want} values"),
                });
            }
            let mut v = env.take(env.input_id(i, 0), i)?;
            let (scale, bias) = (env.arg(i, 1)?, env.arg(i, 2)?);
            let dims = [*groups, *channels, *inner];
            ops::group_norm(&mut v, dims, scale, bias, *epsilon, *per_group);
            v
        }
        Op::Gather {
            in_shape,
            axis,
            indices,
        } => {
            reserve(i, out_len)?;
            ops::gather(in_shape, env.arg(i, 0)?, *axis, indices)
        }
        Op::Transpose { in_shape, perm } => {
            reserve(i, out_len)?;
            ops::transpose(in_shape, perm, env.arg(i, 0)?)
        }
        Op::ChannelSum {
            channels, spatial, ..
        } => {
            let mut out = env.overwritable(i, out_len)?;
            ops::channel_sum(env.arg(i, 0)?, *channels, *spatial, &mut out);
            out
        }
    })
}

/// Two operands with broadcasting, or several of the output's shape (a residual connection):
/// then the result goes into one this node is the last reader of, instead of a new buffer.
fn binary(
    env: &mut Env<'_>,
    i: usize,
    op: BinaryOp,
    out_len: usize,
) -> Result<Vec<f32>, ExecError> {
    let graph = env.graph;
    let n = &graph.nodes[i];
    let ids: Vec<usize> = n.inputs.iter().flatten().copied().collect();
    let same = ids.iter().all(|&v| graph.values[v].shape == n.output_shape);
    if !same {
        let [a, b] = ids[..] else {
            return Err(ExecError::Node {
                node: i,
                message: format!("{} operands of different shapes", ids.len()),
            });
        };
        let (sa, sb) = (&graph.values[a].shape, &graph.values[b].shape);
        // Into the full-shape operand when this node is its last reader (a channel scale).
        for (acc, other, acc_first) in [(a, b, true), (b, a, false)] {
            let full = graph.values[acc].shape == n.output_shape;
            if full && a != b && env.owned(acc, i) {
                let mut data = env.take(acc, i)?;
                let other_shape = &graph.values[other].shape;
                let out = &n.output_shape;
                let y = env.get(i, other)?;
                ops::binary_broadcast_in_place(op, &mut data, out, y, other_shape, acc_first);
                return Ok(data);
            }
        }
        reserve(i, out_len)?;
        return Ok(ops::binary(
            op,
            sa,
            env.get(i, a)?,
            sb,
            env.get(i, b)?,
            &n.output_shape,
        ));
    }
    // Folded left to right; with two operands of a commuting op either may be the
    // accumulator, else only the first, so the order of the sums is the written one.
    let once = |v: usize| ids.iter().filter(|&&w| w == v).count() == 1;
    let candidates = if ids.len() == 2 && op.commutes() {
        2
    } else {
        1
    };
    let acc_at = (0..candidates).find(|&k| env.owned(ids[k], i) && once(ids[k]));
    let first = acc_at.unwrap_or(0);
    let mut acc = match acc_at {
        Some(k) => env.take(ids[k], i)?,
        // Read again later, the caller's, or given twice: a new buffer.
        None => {
            reserve(i, out_len)?;
            env.get(i, ids[0])?.to_vec()
        }
    };
    for (k, &v) in ids.iter().enumerate() {
        if k != first {
            // `acc` is operand `first`: for the second operand of two (`first == 1`, a
            // commuting op) the order does not matter.
            ops::binary_in_place(op, &mut acc, env.get(i, v)?);
        }
    }
    Ok(acc)
}

/// The engine's vectorised 2-D pooling kernel, when it computes exactly what the node asks
/// (no dilation), and the ceil-mode overhang per axis. Ceil mode becomes extra padding at the
/// end, which `count_include_pad` does not count.
fn fast_pool(g: &PoolGeometry) -> Option<(Pool2dGeometry, [usize; 2])> {
    if g.dilation != [1, 1] {
        return None;
    }
    let extra = |i: usize| {
        ((g.out_hw[i] - 1) * g.stride[i] + g.kernel[i])
            .saturating_sub(g.in_hw[i] + g.pad_begin[i] + g.pad_end[i])
    };
    let spec = cnn_conv::Pool2dSpec {
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
    (geom.out_h == g.out_hw[0] && geom.out_w == g.out_hw[1]).then_some((geom, [extra(0), extra(1)]))
}
