//! Compile: the execution-only rewrites of a planned graph, as inference engines do. They need
//! the weights, so planning never runs them (`summary` and `explain` never compile).
//!
//! 1. **BatchNorm folding.** A BatchNorm whose input is a convolution's output (read by nothing
//!    else, and not a graph output) is folded into that convolution's weights and bias:
//!    `w' = w * s`, `b' = (b - mean) * s + beta`, `s = gamma / sqrt(var + epsilon)` per output
//!    channel, in f32.
//! 2. **Activation fusion.** `Mul(x, Sigmoid(x))` is found as one SiLU. Then an activation
//!    the kernels know (Relu, Sigmoid, Tanh, LeakyRelu, SiLU, HardSigmoid, HardSwish, Gelu, or
//!    a Clip with bounds known when planning: ReLU6) that is the only reader of a
//!    convolution's, separable's, locally connected's or dense layer's output — directly or
//!    through a folded BatchNorm — becomes that layer's store epilogue, when the layer has
//!    none of its own. A SiLU with no such layer is computed in one vectorised pass by the
//!    Mul node, and its Sigmoid does not run. GELU written as five nodes (`x/sqrt 2`, Erf,
//!    `+1`, `*x`, `*0.5`) is one vectorised GELU the same way.
//!    Before that, a residual `Add(conv(x), skip)` becomes the convolution's: it adds its
//!    products onto a copy of `skip` in its stores, so an activation after the Add fuses too.
//! 3. **Aliasing.** The folded-away nodes, like every [`Op::Alias`] (flatten, dropout,
//!    reshape, identity), pass their input's buffer on: moved, not copied, when they are its
//!    last reader.
//! 4. **Packing.** Every convolution whose (folded) weights are constants gets them packed
//!    once into the GEMM's panel layout ([`cnn_conv::PackedWeights`]).
//!
//! The result, [`Compiled`], is indexed like the graph's nodes and holds no shape: it applies
//! to the same graph planned at any batch. Shapes, parameter counts and reports are those of
//! the graph as written; only the work changes.

use crate::ir::{Graph, ValueId};
use crate::op::{batchnorm_scale_shift, BinaryOp, Op, Scalar, UnaryOp};
use cnn_conv::{Activation, PackedWeights};

/// Where the executor and the passes find the data of the graph's constants, by name.
pub trait Constants: Sync {
    /// The values of the constant called `name`, if there is one.
    fn constant(&self, name: &str) -> Option<&[f32]>;
}

/// A convolution's weights and bias with the BatchNorm after it folded in.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedConv {
    /// Empty once the folded weights are packed (`NodeWork::packed`), which is what runs.
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

/// What compiling decided for one node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeWork {
    /// An activation fused into this node's stores (replacing its linear epilogue).
    pub fused: Option<Activation>,
    /// Folded weights and bias replacing the node's own (convolutions).
    pub folded: Option<FoldedConv>,
    /// Packed weights per convolution the node runs (a separable node has two).
    pub packed: Vec<Option<PackedWeights>>,
    /// The node was folded or fused into its producer: it passes its input on (input
    /// [`NodeWork::pass`]).
    pub alias: bool,
    /// Which input an aliased node passes on, or a [`NodeWork::unary`] node reads.
    pub pass: usize,
    /// Instead of its op, the node computes this on input [`NodeWork::pass`] (a SiLU found as
    /// `Mul(x, Sigmoid(x))` with no layer to fuse it into).
    pub unary: Option<UnaryOp>,
    /// The node does not run: its one reader no longer reads its output (the Sigmoid of a
    /// SiLU).
    pub skip: bool,
    /// A convolution's output starts as a copy of this value (moved when nothing else reads
    /// it later) and the products are added to it in the GEMM's stores: the residual `Add`
    /// node (the second field) that read both passes the sum on.
    pub residual: Option<(ValueId, usize)>,
}

/// A graph's compiled form: one [`NodeWork`] per node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Compiled {
    pub nodes: Vec<NodeWork>,
    /// Output buffers one run leaves to the next ([`crate::exec::BufferPool`]).
    pub buffers: crate::exec::BufferPool,
}

impl Compiled {
    /// Nothing folded, fused or packed: the graph runs as written.
    pub fn plain(graph: &Graph) -> Self {
        Compiled {
            nodes: vec![NodeWork::default(); graph.nodes.len()],
            buffers: Default::default(),
        }
    }

    /// Bytes held by packed weights.
    pub fn packed_bytes(&self) -> usize {
        self.nodes
            .iter()
            .flat_map(|n| n.packed.iter().flatten())
            .map(PackedWeights::bytes)
            .sum()
    }
}

/// Runs every pass over `graph` with the constants' data from `consts`.
pub fn compile(graph: &Graph, consts: &dyn Constants) -> Compiled {
    let mut c = Compiled::plain(graph);
    let mut folded_into = fold_batchnorm(graph, consts, &mut c);
    fuse_silu(graph, &folded_into, &mut c);
    fuse_gelu(graph, consts, &mut c);
    fuse_residual(graph, &mut folded_into, &mut c);
    fuse_activations(graph, &folded_into, &mut c);
    pack(graph, consts, &mut c);
    c
}

/// The values of node `i`'s input at position `k`, if it is a constant with data.
fn constant_input<'a>(
    graph: &Graph,
    consts: &'a dyn Constants,
    i: usize,
    k: usize,
) -> Option<&'a [f32]> {
    let v = graph.nodes[i].input(k)?;
    if !graph.is_constant(v) {
        return None;
    }
    consts.constant(&graph.values[v].name)
}

/// The node producing node `i`'s first input, if that value is read only by node `i` and is
/// not a graph output (so it may disappear into the producer).
fn sole_producer(graph: &Graph, readers: &[usize], i: usize) -> Option<usize> {
    let src = graph.nodes[i].input(0)?;
    if readers[src] != 1 || graph.outputs.contains(&src) {
        return None;
    }
    graph.producer(src)
}

/// Pass 1. Returns, per node, the convolution a BatchNorm node was folded into.
fn fold_batchnorm(graph: &Graph, consts: &dyn Constants, c: &mut Compiled) -> Vec<Option<usize>> {
    let readers = graph.reader_counts();
    let mut folded_into = vec![None; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        let Op::BatchNorm {
            channels, epsilon, ..
        } = node.op
        else {
            continue;
        };
        let Some(j) = sole_producer(graph, &readers, i) else {
            continue;
        };
        let Op::Conv { geom, epilogue, .. } = &graph.nodes[j].op else {
            continue;
        };
        if !epilogue.is_linear() || c.nodes[j].folded.is_some() {
            continue;
        }
        let stats = (1..=4)
            .map(|k| constant_input(graph, consts, i, k))
            .collect::<Option<Vec<_>>>();
        let (Some(stats), Some(w)) = (stats, constant_input(graph, consts, j, 1)) else {
            continue; // statistics or weights computed at run time: nothing to fold
        };
        let bias = match graph.nodes[j].input(2) {
            None => None,
            Some(_) => match constant_input(graph, consts, j, 2) {
                Some(b) => Some(b),
                None => continue,
            },
        };
        if geom.out_c != channels || w.len() % channels != 0 {
            continue;
        }
        let per = w.len() / channels;
        let stats = [stats[0], stats[1], stats[2], stats[3]];
        if stats.iter().any(|s| s.len() != channels) {
            continue;
        }
        let Some((scale, _)) = batchnorm_scale_shift(channels, stats, epsilon) else {
            continue;
        };
        let [_, beta, mean, _] = stats;
        let mut weights = Vec::new();
        if weights.try_reserve_exact(w.len()).is_err() {
            continue; // no memory for a folded copy: the BatchNorm runs on its own
        }
        for (row, &s) in w.chunks_exact(per).zip(&scale) {
            weights.extend(row.iter().map(|&v| v * s));
        }
        let bias = (0..channels)
            .map(|ch| (bias.map_or(0.0, |b| b[ch]) - mean[ch]) * scale[ch] + beta[ch])
            .collect();
        c.nodes[j].folded = Some(FoldedConv { weights, bias });
        c.nodes[i].alias = true;
        folded_into[i] = Some(j);
    }
    folded_into
}

/// A Clip bound known when planning: `Some(None)` when absent, `Some(Some(v))` for a
/// constant, `None` when it is computed at run time.
fn bound(s: Scalar) -> Option<Option<f32>> {
    match s {
        Scalar::Absent => Some(None),
        Scalar::Const(v) => Some(Some(v)),
        Scalar::Input(_) => None,
    }
}

/// The activation node `op` computes, if a kernel can apply it in its stores.
fn fusable(op: &Op) -> Option<Activation> {
    Some(match op {
        Op::Unary(u) => u.activation()?,
        // Bounds known when planning (attributes or constants): ReLU6 and friends.
        Op::Clip { min, max } => {
            let (lo, hi) = (bound(*min)?, bound(*max)?);
            Activation::Clip {
                min: lo.unwrap_or(f32::NEG_INFINITY),
                max: hi.unwrap_or(f32::INFINITY),
            }
        }
        _ => return None,
    })
}

/// True when `target` (a layer, or the layer a BatchNorm was folded into) can take an
/// activation into its stores.
fn takes_activation(graph: &Graph, c: &Compiled, target: usize) -> bool {
    let linear = graph.nodes[target]
        .op
        .epilogue()
        .is_some_and(|e| e.is_linear());
    linear && c.nodes[target].fused.is_none() && !c.nodes[target].alias
}

/// Pass 2a. `Mul(x, Sigmoid(x))` (SiLU as exporters write it) is one SiLU: fused into the
/// layer producing `x` when `x` has no other reader, else computed by the Mul node on `x`; the
/// Sigmoid node does not run.
fn fuse_silu(graph: &Graph, folded_into: &[Option<usize>], c: &mut Compiled) {
    let readers = graph.reader_counts();
    for (m, node) in graph.nodes.iter().enumerate() {
        if node.op != Op::Binary(BinaryOp::Mul) {
            continue;
        }
        let ins: Vec<usize> = node.inputs.iter().flatten().copied().collect();
        let [u, v] = ins[..] else { continue };
        for (k, x, s) in [(0, u, v), (1, v, u)] {
            let Some(g) = graph.producer(s) else { continue };
            let silu = graph.nodes[g].op == Op::Unary(UnaryOp::Sigmoid)
                && graph.nodes[g].input(0) == Some(x)
                && x != s
                && readers[s] == 1
                && !graph.outputs.contains(&s)
                && graph.values[x].shape == node.output_shape;
            if !silu {
                continue;
            }
            c.nodes[g].skip = true;
            c.nodes[m].pass = k;
            let target = graph
                .producer(x)
                .map(|p| folded_into[p].unwrap_or(p))
                .filter(|_| readers[x] == 2 && !graph.outputs.contains(&x));
            match target {
                Some(t) if takes_activation(graph, c, t) => {
                    c.nodes[t].fused = Some(Activation::Silu);
                    c.nodes[m].alias = true;
                }
                _ => c.nodes[m].unary = Some(UnaryOp::Silu),
            }
            break;
        }
    }
}

/// The value of `v` when it is a one-element constant.
fn scalar_constant(graph: &Graph, consts: &dyn Constants, v: usize) -> Option<f32> {
    if !graph.is_constant(v) {
        return None;
    }
    match consts.constant(&graph.values[v].name)? {
        [x] => Some(*x),
        _ => None,
    }
}

/// The node producing `v` when `v` is read only once and is no graph output.
fn single_use_producer(graph: &Graph, readers: &[usize], v: usize) -> Option<usize> {
    (readers[v] == 1 && !graph.outputs.contains(&v))
        .then(|| graph.producer(v))
        .flatten()
}

/// The other input of a two-input node, given one of them.
fn other_input(graph: &Graph, node: usize, one: usize) -> Option<(usize, usize)> {
    let ins: Vec<usize> = graph.nodes[node].inputs.iter().flatten().copied().collect();
    match ins[..] {
        [a, b] if a == one => Some((1, b)),
        [a, b] if b == one => Some((0, a)),
        _ => None,
    }
}

/// Pass 2b. GELU as PyTorch's legacy exporter writes it, `Mul(Mul(x, Add(Erf(Div(x,
/// sqrt 2)), 1)), 0.5)` (five nodes, five passes over memory), is one vectorised GELU: the
/// inner Mul computes `gelu(x)` and the outer one passes it on; Div, Erf and Add do not run.
fn fuse_gelu(graph: &Graph, consts: &dyn Constants, c: &mut Compiled) {
    let readers = graph.reader_counts();
    let is = |i: usize, op: &Op| graph.nodes[i].op == *op;
    let near = |v: Option<f32>, want: f32| v.is_some_and(|v| (v - want).abs() <= 1e-6 * want);
    for (outer, node) in graph.nodes.iter().enumerate() {
        if !is(outer, &Op::Binary(BinaryOp::Mul)) {
            continue;
        }
        let ins: Vec<usize> = node.inputs.iter().flatten().copied().collect();
        let [u, v] = ins[..] else { continue };
        // Mul(p, 0.5), either order.
        let (p, p_at) = match (
            scalar_constant(graph, consts, u),
            scalar_constant(graph, consts, v),
        ) {
            (_, Some(h)) if near(Some(h), 0.5) => (u, 0),
            (Some(h), _) if near(Some(h), 0.5) => (v, 1),
            _ => continue,
        };
        let Some(inner) = single_use_producer(graph, &readers, p) else {
            continue;
        };
        if !is(inner, &Op::Binary(BinaryOp::Mul)) {
            continue;
        }
        // Mul(x, a) with a = Add(Erf(Div(x, sqrt 2)), 1), x either input.
        let found = [0usize, 1].into_iter().find_map(|k| {
            let x = graph.nodes[inner].input(k)?;
            let (_, a) = other_input(graph, inner, x)?;
            let add = single_use_producer(graph, &readers, a)?;
            if !is(add, &Op::Binary(BinaryOp::Add)) {
                return None;
            }
            let erf_out = [0, 1].into_iter().find_map(|j| {
                let e = graph.nodes[add].input(j)?;
                let (_, one) = other_input(graph, add, e)?;
                near(scalar_constant(graph, consts, one), 1.0).then_some(e)
            })?;
            let erf = single_use_producer(graph, &readers, erf_out)?;
            if !is(erf, &Op::Unary(UnaryOp::Erf)) {
                return None;
            }
            let d = graph.nodes[erf].input(0)?;
            let div = single_use_producer(graph, &readers, d)?;
            let scaled = graph.nodes[div].input(0) == Some(x)
                && is(div, &Op::Binary(BinaryOp::Div))
                && near(
                    graph.nodes[div]
                        .input(1)
                        .and_then(|s| scalar_constant(graph, consts, s)),
                    std::f32::consts::SQRT_2,
                );
            let same_shape = graph.values[x].shape == graph.nodes[inner].output_shape
                && graph.nodes[inner].output_shape == node.output_shape;
            (scaled && same_shape).then_some((k, [div, erf, add]))
        });
        let Some((x_at, skipped)) = found else {
            continue;
        };
        // Nodes an earlier pass already rewrote are left as they are.
        let untouched = |i: usize| c.nodes[i] == NodeWork::default();
        if !(untouched(outer) && untouched(inner) && skipped.iter().all(|&i| untouched(i))) {
            continue;
        }
        for s in skipped {
            c.nodes[s].skip = true;
        }
        c.nodes[inner].unary = Some(UnaryOp::Gelu { tanh: false });
        c.nodes[inner].pass = x_at;
        c.nodes[outer].alias = true;
        c.nodes[outer].pass = p_at;
    }
}

/// Pass 2c. A residual connection, `Add(y, skip)` where `y` is a convolution's output (read
/// only by the Add, through a folded BatchNorm or not; the convolution not depthwise and with
/// no activation of its own) and `skip` is computed before the convolution runs, with the
/// same shape and no broadcasting: the convolution adds its products onto a copy of `skip`
/// in its stores, and the Add passes the sum on. An activation after the Add is then fused
/// into the convolution by the next pass (`act(conv + bias + skip)`). When both inputs are
/// such convolutions, the later one takes the sum.
fn fuse_residual(graph: &Graph, folded_into: &mut [Option<usize>], c: &mut Compiled) {
    let readers = graph.reader_counts();
    for (m, node) in graph.nodes.iter().enumerate() {
        if node.op != Op::Binary(BinaryOp::Add) || c.nodes[m] != NodeWork::default() {
            continue;
        }
        let ins: Vec<usize> = node.inputs.iter().flatten().copied().collect();
        let [u, v] = ins[..] else { continue };
        let shape = &node.output_shape;
        if graph.values[u].shape != *shape || graph.values[v].shape != *shape {
            continue;
        }
        // The index of the value's producer, `None` for a graph input or constant.
        let made_at = |x: usize| graph.producer(x);
        let candidate = |y: usize, skip: usize| -> Option<usize> {
            let p = single_use_producer(graph, &readers, y)?;
            let t = folded_into[p].unwrap_or(p);
            let conv = matches!(&graph.nodes[t].op, Op::Conv { geom, .. } if !geom.is_depthwise());
            let ready = made_at(skip).is_none_or(|q| q < t);
            let free = c.nodes[t].residual.is_none() && takes_activation(graph, c, t);
            (conv && free && ready).then_some(t)
        };
        let found = [(0, u, v), (1, v, u)]
            .into_iter()
            .filter_map(|(k, y, skip)| Some((candidate(y, skip)?, k, skip)))
            .max_by_key(|&(t, ..)| t);
        let Some((t, k, skip)) = found else { continue };
        c.nodes[t].residual = Some((skip, m));
        c.nodes[m].alias = true;
        c.nodes[m].pass = k;
        folded_into[m] = Some(t);
    }
}

/// Pass 2d.
fn fuse_activations(graph: &Graph, folded_into: &[Option<usize>], c: &mut Compiled) {
    let readers = graph.reader_counts();
    for (i, node) in graph.nodes.iter().enumerate() {
        let Some(act) = fusable(&node.op).filter(|_| !c.nodes[i].skip) else {
            continue;
        };
        let Some(p) = sole_producer(graph, &readers, i) else {
            continue;
        };
        let target = folded_into[p].unwrap_or(p);
        if takes_activation(graph, c, target) && !c.nodes[i].alias {
            c.nodes[target].fused = Some(act);
            c.nodes[i].alias = true;
        }
    }
}

/// Pass 4.
fn pack(graph: &Graph, consts: &dyn Constants, c: &mut Compiled) {
    for (j, node) in graph.nodes.iter().enumerate() {
        let folded_and_packed = matches!(node.op, Op::Conv { .. }) && c.nodes[j].folded.is_some();
        // A failure here (memory) leaves the weights unpacked; the run packs them per call and
        // reports the error there.
        let packed = |geom, w: Option<&[f32]>| w.and_then(|w| PackedWeights::new(geom, w).ok());
        c.nodes[j].packed = match &node.op {
            Op::Conv { geom, .. } => {
                let w = match &c.nodes[j].folded {
                    Some(f) => Some(f.weights.as_slice()),
                    None => constant_input(graph, consts, j, 1),
                };
                vec![packed(geom, w)]
            }
            Op::Separable {
                depthwise,
                pointwise,
                ..
            } => vec![
                packed(depthwise, constant_input(graph, consts, j, 1)),
                packed(pointwise, constant_input(graph, consts, j, 2)),
            ],
            _ => Vec::new(),
        };
        // The packed copy is what runs: the folded weights' unpacked copy is not kept.
        if folded_and_packed && c.nodes[j].packed.iter().all(Option::is_some) {
            if let Some(f) = &mut c.nodes[j].folded {
                f.weights = Vec::new();
            }
        }
    }
}
