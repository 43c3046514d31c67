//! The compile passes against the graph as written: random graphs built with the IR's own
//! builder — a convolution (random stride, padding, dilation, groups, bias or none) followed by
//! BatchNorm and an activation, and a dense layer followed by an activation — run once
//! compiled (BatchNorm folded, activations fused, weights packed) and once plain
//! ([`Compiled::plain`]: every node as written). Bound: `|compiled - plain| <= 1e-4 * (1 +
//! max |plain|)` (folding rounds `(w * s) . x` instead of `(w . x) * s`). Also: what each pass
//! may not touch (a value read twice, a graph output, a layer with its own activation).

use cnn_conv::{Activation, Conv2dGeometry, Conv2dSpec, Padding};
use cnn_graph::{
    compile, run, BinaryOp, Compiled, Constants, Epilogue, Graph, Node, Op, UnaryOp, ValueId,
};
use proptest::prelude::*;
use std::collections::HashMap;

#[derive(Default)]
struct Consts(HashMap<String, Vec<f32>>);

impl Constants for Consts {
    fn constant(&self, name: &str) -> Option<&[f32]> {
        self.0.get(name).map(Vec::as_slice)
    }
}

fn values(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            lo + (hi - lo) * ((s >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

/// Adds a constant `name` of `shape` with seeded values in `[lo, hi)`.
fn constant(
    g: &mut Graph,
    c: &mut Consts,
    name: &str,
    shape: Vec<usize>,
    seed: u64,
    (lo, hi): (f32, f32),
) -> ValueId {
    let n = shape.iter().product();
    c.0.insert(name.to_string(), values(n, seed, lo, hi));
    g.add_constant(name, shape)
}

fn push(g: &mut Graph, name: &str, op: Op, inputs: Vec<ValueId>, shape: Vec<usize>) -> ValueId {
    let mut n = Node::new(name, name, op);
    n.inputs = inputs.into_iter().map(Some).collect();
    n.output_shape = shape;
    g.add_node(n, name)
}

fn activation_op(which: u8) -> Op {
    match which % 9 {
        0 => Op::Unary(UnaryOp::Relu),
        1 => Op::Unary(UnaryOp::Sigmoid),
        2 => Op::Unary(UnaryOp::Tanh),
        3 => Op::Unary(UnaryOp::LeakyRelu(0.1)),
        4 => Op::Unary(UnaryOp::HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        }),
        5 => Op::Unary(UnaryOp::HardSwish),
        6 => Op::Unary(UnaryOp::Gelu { tanh: false }),
        7 => Op::Unary(UnaryOp::Gelu { tanh: true }),
        _ => Op::Clip {
            min: cnn_graph::Scalar::Const(0.0),
            max: cnn_graph::Scalar::Const(6.0),
        },
    }
}

fn run_both(g: &Graph, c: &Consts, x: &[f32]) -> (Compiled, Vec<f32>, Vec<f32>) {
    let compiled = compile(g, c);
    let fast = run(g, &compiled, c, &[x], None).unwrap().remove(0).data;
    let plain = run(g, &Compiled::plain(g), c, &[x], None)
        .unwrap()
        .remove(0)
        .data;
    (compiled, fast, plain)
}

fn close(fast: &[f32], plain: &[f32]) -> Result<(), TestCaseError> {
    prop_assert_eq!(fast.len(), plain.len());
    let largest = plain.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
    for (a, b) in fast.iter().zip(plain) {
        prop_assert!(
            (a - b).abs() <= 1e-4 * (1.0 + largest),
            "{} vs {} (largest {})",
            a,
            b,
            largest
        );
    }
    Ok(())
}

/// conv (+ bias) -> BatchNorm -> activation, on `[batch, c, h, w]`.
#[allow(clippy::too_many_arguments)]
fn conv_bn_act(
    batch: usize,
    geom: &Conv2dGeometry,
    bias: bool,
    act: u8,
    seed: u64,
) -> (Graph, Consts, Vec<f32>) {
    let (mut g, mut c) = (Graph::new("t"), Consts::default());
    let x = g.add_input("x", vec![batch, geom.in_c, geom.in_h, geom.in_w]);
    let w_shape = vec![geom.out_c, geom.in_c / geom.groups, geom.k_h, geom.k_w];
    let w = constant(&mut g, &mut c, "w", w_shape, seed, (-0.5, 0.5));
    let mut inputs = vec![x, w];
    if bias {
        inputs.push(constant(
            &mut g,
            &mut c,
            "b",
            vec![geom.out_c],
            seed + 1,
            (-0.5, 0.5),
        ));
    }
    let out = vec![batch, geom.out_c, geom.out_h, geom.out_w];
    let conv = Op::Conv {
        geom: *geom,
        batch,
        epilogue: Epilogue::default(),
    };
    let y = push(&mut g, "conv", conv, inputs, out.clone());
    let oc = geom.out_c;
    let stats = [
        ("gamma", (0.5, 1.5)),
        ("beta", (-0.5, 0.5)),
        ("mean", (-0.5, 0.5)),
        ("var", (0.2, 2.0)),
    ];
    let mut bn_in = vec![y];
    for (k, (name, range)) in stats.into_iter().enumerate() {
        bn_in.push(constant(
            &mut g,
            &mut c,
            name,
            vec![oc],
            seed + 2 + k as u64,
            range,
        ));
    }
    let bn = Op::BatchNorm {
        channels: oc,
        inner: geom.out_h * geom.out_w,
        epsilon: 1e-3,
    };
    let n = push(&mut g, "bn", bn, bn_in, out.clone());
    let a = push(&mut g, "act", activation_op(act), vec![n], out);
    g.outputs.push(a);
    let len = batch * geom.in_c * geom.in_h * geom.in_w;
    (g, c, values(len, seed + 9, -1.0, 1.0))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn folding_and_fusing_a_convolution_equal_the_graph_as_written(
        batch in 1usize..3,
        cpg in 1usize..5, groups in 1usize..4, opg in 1usize..5,
        h in 3usize..12, w in 3usize..12,
        k in 1usize..4, stride in 1usize..3, dilation in 1usize..3, pad in 0usize..3,
        bias: bool, act in 0u8..9, seed in 0u64..1000,
    ) {
        let spec = Conv2dSpec {
            filters: opg * groups,
            kernel: [k, k],
            stride: [stride, stride],
            dilation: [dilation, dilation],
            padding: Padding::Explicit { h: pad, w: pad },
            groups,
        };
        let Ok(geom) = Conv2dGeometry::resolve(cpg * groups, h, w, &spec) else {
            return Ok(());
        };
        let (g, c, x) = conv_bn_act(batch, &geom, bias, act, seed);
        let (compiled, fast, plain) = run_both(&g, &c, &x);
        prop_assert!(compiled.nodes[0].folded.is_some());
        prop_assert!(compiled.nodes[1].alias && compiled.nodes[2].alias);
        prop_assert!(compiled.nodes[0].fused.is_some());
        prop_assert!(compiled.nodes[0].packed[0].is_some());
        close(&fast, &plain)?;
    }

    #[test]
    fn fusing_into_a_dense_layer_equals_the_graph_as_written(
        m in 1usize..4, k in 1usize..40, n in 1usize..20, bias: bool, act in 0u8..9,
        seed in 0u64..1000,
    ) {
        let (mut g, mut c) = (Graph::new("d"), Consts::default());
        let x = g.add_input("x", vec![m, k]);
        let wv = constant(&mut g, &mut c, "w", vec![n, k], seed, (-0.5, 0.5));
        let mut inputs = vec![x, wv];
        if bias {
            inputs.push(constant(&mut g, &mut c, "b", vec![n], seed + 1, (-0.5, 0.5)));
        }
        let dense = Op::Dense { m, k, n, epilogue: Epilogue::default() };
        let y = push(&mut g, "fc", dense, inputs, vec![m, n]);
        let a = push(&mut g, "act", activation_op(act), vec![y], vec![m, n]);
        g.outputs.push(a);
        let data = values(m * k, seed + 5, -1.0, 1.0);
        let (compiled, fast, plain) = run_both(&g, &c, &data);
        prop_assert!(compiled.nodes[0].fused.is_some() && compiled.nodes[1].alias);
        close(&fast, &plain)?;
    }
}

fn small_conv() -> Conv2dGeometry {
    let spec = Conv2dSpec {
        filters: 4,
        kernel: [3, 3],
        stride: [1, 1],
        dilation: [1, 1],
        padding: Padding::Explicit { h: 1, w: 1 },
        groups: 1,
    };
    Conv2dGeometry::resolve(2, 5, 5, &spec).unwrap()
}

#[test]
fn a_value_read_twice_or_a_graph_output_is_not_folded_away() {
    // The convolution's output is also a graph output: BatchNorm and activation run alone.
    let (mut g, c, x) = conv_bn_act(1, &small_conv(), true, 0, 3);
    g.outputs.push(g.nodes[0].output);
    let (compiled, fast, plain) = run_both(&g, &c, &x);
    assert_eq!(compiled.nodes[0].folded, None);
    assert!(!compiled.nodes[1].alias);
    // The activation reads the (unfolded) BatchNorm, which takes no epilogue: it runs alone.
    assert!(!compiled.nodes[2].alias);
    assert_eq!(fast, plain);

    // The BatchNorm's output is read twice: it folds, the activation does not fuse into it.
    let (mut g, c, x) = conv_bn_act(1, &small_conv(), false, 2, 4);
    let bn_out = g.nodes[1].output;
    let shape = g.nodes[1].output_shape.clone();
    let again = push(&mut g, "again", Op::Alias, vec![bn_out], shape);
    g.outputs.push(again);
    let compiled = compile(&g, &c);
    assert!(compiled.nodes[0].folded.is_some());
    assert_eq!(compiled.nodes[0].fused, None);
    assert!(!compiled.nodes[2].alias);
    let fast = run(&g, &compiled, &c, &[&x], None).unwrap();
    let plain = run(&g, &Compiled::plain(&g), &c, &[&x], None).unwrap();
    for (a, b) in fast.iter().zip(&plain) {
        let largest = b.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(a
            .data
            .iter()
            .zip(&b.data)
            .all(|(p, q)| (p - q).abs() <= 1e-4 * (1.0 + largest)));
    }
}

#[test]
fn a_layer_with_its_own_activation_takes_no_other() {
    let (mut g, c, x) = conv_bn_act(1, &small_conv(), true, 0, 5);
    if let Op::Conv { epilogue, .. } = &mut g.nodes[0].op {
        epilogue.act = Activation::Tanh;
    }
    let (compiled, fast, plain) = run_both(&g, &c, &x);
    // Not linear: the BatchNorm cannot fold through the tanh, nor the relu fuse.
    assert_eq!(compiled.nodes[0].folded, None);
    assert_eq!(compiled.nodes[0].fused, None);
    assert!(!compiled.nodes[1].alias && !compiled.nodes[2].alias);
    assert_eq!(fast, plain);
}

/// `x -> conv -> (Sigmoid, Mul(conv, sigmoid))`, SiLU as exporters write it; with `extra`, the
/// convolution's output is also a graph output (so the SiLU cannot be fused into it).
fn conv_silu(extra: bool, swap: bool, seed: u64) -> (Graph, Consts, Vec<f32>) {
    let geom = small_conv();
    let (mut g, mut c) = (Graph::new("silu"), Consts::default());
    let x = g.add_input("x", vec![1, geom.in_c, geom.in_h, geom.in_w]);
    let w_shape = vec![geom.out_c, geom.in_c, geom.k_h, geom.k_w];
    let w = constant(&mut g, &mut c, "w", w_shape, seed, (-0.5, 0.5));
    let out = vec![1, geom.out_c, geom.out_h, geom.out_w];
    let conv = Op::Conv {
        geom,
        batch: 1,
        epilogue: Epilogue::default(),
    };
    let y = push(&mut g, "conv", conv, vec![x, w], out.clone());
    let s = push(
        &mut g,
        "sig",
        Op::Unary(UnaryOp::Sigmoid),
        vec![y],
        out.clone(),
    );
    let pair = if swap { vec![s, y] } else { vec![y, s] };
    let m = push(
        &mut g,
        "mul",
        Op::Binary(cnn_graph::BinaryOp::Mul),
        pair,
        out,
    );
    g.outputs.push(m);
    if extra {
        g.outputs.push(y);
    }
    let len = geom.in_c * geom.in_h * geom.in_w;
    (g, c, values(len, seed + 9, -3.0, 3.0))
}

#[test]
fn silu_as_written_is_fused_into_the_convolution_or_computed_by_the_mul() {
    for swap in [false, true] {
        let (g, c, x) = conv_silu(false, swap, 3);
        let (compiled, fast, plain) = run_both(&g, &c, &x);
        assert_eq!(compiled.nodes[0].fused, Some(Activation::Silu));
        assert!(compiled.nodes[1].skip);
        assert!(compiled.nodes[2].alias && compiled.nodes[2].pass == usize::from(swap));
        close(&fast, &plain).unwrap();
        // The convolution's output is also a graph output: the Mul computes SiLU itself.
        let (g, c, x) = conv_silu(true, swap, 4);
        let compiled = compile(&g, &c);
        assert_eq!(compiled.nodes[0].fused, None);
        assert!(compiled.nodes[1].skip);
        assert_eq!(compiled.nodes[2].unary, Some(UnaryOp::Silu));
        let fast = run(&g, &compiled, &c, &[&x], None).unwrap();
        let plain = run(&g, &Compiled::plain(&g), &c, &[&x], None).unwrap();
        for (f, p) in fast.iter().zip(&plain) {
            close(&f.data, &p.data).unwrap();
        }
    }
}

/// `x -> Div(x, sqrt 2) -> Erf -> Add(1) -> Mul(x, .) -> Mul(., half)`, GELU as PyTorch's
/// legacy exporter writes it, on a graph input of `[2, 5, 7]`.
fn written_gelu(half: f32) -> (Graph, Consts, Vec<f32>) {
    use cnn_graph::BinaryOp;
    let (mut g, mut c) = (Graph::new("gelu"), Consts::default());
    let shape = vec![2, 5, 7];
    let x = g.add_input("x", shape.clone());
    let mut scalar = |g: &mut Graph, name: &str, v: f32| {
        c.0.insert(name.to_string(), vec![v]);
        g.add_constant(name, vec![1])
    };
    let root2 = scalar(&mut g, "root2", std::f32::consts::SQRT_2);
    let one = scalar(&mut g, "one", 1.0);
    let half = scalar(&mut g, "half", half);
    let d = push(
        &mut g,
        "div",
        Op::Binary(BinaryOp::Div),
        vec![x, root2],
        shape.clone(),
    );
    let e = push(
        &mut g,
        "erf",
        Op::Unary(UnaryOp::Erf),
        vec![d],
        shape.clone(),
    );
    let a = push(
        &mut g,
        "add",
        Op::Binary(BinaryOp::Add),
        vec![e, one],
        shape.clone(),
    );
    let p = push(
        &mut g,
        "mul",
        Op::Binary(BinaryOp::Mul),
        vec![x, a],
        shape.clone(),
    );
    let y = push(
        &mut g,
        "half",
        Op::Binary(BinaryOp::Mul),
        vec![p, half],
        shape,
    );
    g.outputs.push(y);
    (g, c, values(70, 5, -4.0, 4.0))
}

#[test]
fn gelu_as_written_runs_as_one_vectorised_gelu() {
    let (g, c, x) = written_gelu(0.5);
    let (compiled, fast, plain) = run_both(&g, &c, &x);
    let skipped: Vec<bool> = compiled.nodes.iter().map(|n| n.skip).collect();
    assert_eq!(skipped, [true, true, true, false, false]);
    assert_eq!(compiled.nodes[3].unary, Some(UnaryOp::Gelu { tanh: false }));
    assert!(compiled.nodes[4].alias);
    close(&fast, &plain).unwrap();
    // Not a GELU (a factor of 0.4): left as written.
    let (g, c, _) = written_gelu(0.4);
    let compiled = compile(&g, &c);
    assert!(compiled.nodes.iter().all(|n| !n.skip && n.unary.is_none()));
}

#[test]
fn buffers_left_by_one_run_serve_the_next_with_the_same_results() {
    // conv -> conv: the first output is dropped after the second reads it; its buffer is
    // kept, goes to the pool at the end of the run, and is the next run's first output.
    let geom = small_conv();
    let second = Conv2dGeometry::resolve(
        4,
        5,
        5,
        &Conv2dSpec {
            filters: 3,
            ..conv_spec(&geom)
        },
    )
    .unwrap();
    let (mut g, mut c) = (Graph::new("t"), Consts::default());
    let x = g.add_input("x", vec![1, 2, 5, 5]);
    let w1 = constant(&mut g, &mut c, "w1", vec![4, 2, 3, 3], 1, (-0.5, 0.5));
    let w2 = constant(&mut g, &mut c, "w2", vec![3, 4, 3, 3], 2, (-0.5, 0.5));
    let conv = |geom| Op::Conv {
        geom,
        batch: 1,
        epilogue: Epilogue::default(),
    };
    let y1 = push(&mut g, "c1", conv(geom), vec![x, w1], vec![1, 4, 5, 5]);
    let y2 = push(&mut g, "c2", conv(second), vec![y1, w2], vec![1, 3, 5, 5]);
    g.outputs.push(y2);
    let compiled = compile(&g, &c);
    assert_eq!(compiled.buffers.bytes(), 0);
    for seed in 0..3 {
        let x = values(50, 10 + seed, -1.0, 1.0);
        let got = run(&g, &compiled, &c, &[&x], None).unwrap().remove(0).data;
        assert!(
            compiled.buffers.bytes() >= 100 * 4,
            "the first output's buffer is kept"
        );
        // A fresh compile (empty pool) gives the same values, bit for bit.
        let fresh = run(&g, &compile(&g, &c), &c, &[&x], None);
        assert_eq!(got, fresh.unwrap().remove(0).data, "run {seed}");
    }
    // A clone starts with an empty pool.
    assert_eq!(compiled.clone().buffers.bytes(), 0);
}

/// The spec `geom` was resolved from.
fn conv_spec(geom: &Conv2dGeometry) -> Conv2dSpec {
    Conv2dSpec {
        filters: geom.out_c,
        kernel: [geom.k_h, geom.k_w],
        stride: [geom.stride_h, geom.stride_w],
        dilation: [geom.dil_h, geom.dil_w],
        padding: Padding::Explicit {
            h: geom.pad_top,
            w: geom.pad_left,
        },
        groups: geom.groups,
    }
}

/// `x -> conv1 = s -> [mid ->] conv2 -> BatchNorm -> Add(., s) -> activation`, the Add's
/// operands in either order; with `mid`, a 1x1 convolution between `s` and `conv2` (so
/// `conv2` does not read `s` and may take its buffer); with `reread`, `s` is also read after
/// the Add (so the fused convolution must copy it); with `from_input`, the skip is the graph
/// input itself (copied: the caller's). Activation 4 is none: the Add's output is the graph's.
#[allow(clippy::too_many_arguments)]
fn residual_block(
    channels: usize,
    size: usize,
    k: usize,
    act: u8,
    swap: bool,
    reread: bool,
    from_input: bool,
    mid: bool,
    seed: u64,
) -> (Graph, Consts, Vec<f32>) {
    let (mut g, mut c) = (Graph::new("t"), Consts::default());
    let x = g.add_input("x", vec![1, channels, size, size]);
    let spec = |kernel: usize| Conv2dSpec {
        filters: channels,
        kernel: [kernel, kernel],
        stride: [1, 1],
        dilation: [1, 1],
        padding: Padding::Same,
        groups: 1,
    };
    let shape = vec![1, channels, size, size];
    let conv = |k: usize| Op::Conv {
        geom: Conv2dGeometry::resolve(channels, size, size, &spec(k)).unwrap(),
        batch: 1,
        epilogue: Epilogue::default(),
    };
    let w_shape = |k: usize| vec![channels, channels, k, k];
    let s = if from_input {
        x
    } else {
        let w1 = constant(&mut g, &mut c, "w1", w_shape(1), seed, (-0.5, 0.5));
        push(&mut g, "c1", conv(1), vec![x, w1], shape.clone())
    };
    let into_c2 = if mid {
        let wm = constant(&mut g, &mut c, "wm", w_shape(1), seed + 8, (-0.5, 0.5));
        push(&mut g, "mid", conv(1), vec![s, wm], shape.clone())
    } else {
        s
    };
    let w2 = constant(&mut g, &mut c, "w2", w_shape(k), seed + 1, (-0.5, 0.5));
    let b2 = constant(&mut g, &mut c, "b2", vec![channels], seed + 2, (-0.5, 0.5));
    let y = push(&mut g, "c2", conv(k), vec![into_c2, w2, b2], shape.clone());
    let mut bn_in = vec![y];
    for (j, (name, range)) in [
        ("gamma", (0.5, 1.5)),
        ("beta", (-0.5, 0.5)),
        ("mean", (-0.5, 0.5)),
        ("var", (0.2, 2.0)),
    ]
    .into_iter()
    .enumerate()
    {
        bn_in.push(constant(
            &mut g,
            &mut c,
            name,
            vec![channels],
            seed + 3 + j as u64,
            range,
        ));
    }
    let bn = Op::BatchNorm {
        channels,
        inner: size * size,
        epsilon: 1e-3,
    };
    let y = push(&mut g, "bn", bn, bn_in, shape.clone());
    let add_in = if swap { vec![s, y] } else { vec![y, s] };
    let sum = push(
        &mut g,
        "add",
        Op::Binary(BinaryOp::Add),
        add_in,
        shape.clone(),
    );
    // Activation 4: none, the Add's output is the graph's.
    match act {
        4 => g.outputs.push(sum),
        _ => {
            let out = push(&mut g, "act", activation_op(act), vec![sum], shape.clone());
            g.outputs.push(out);
        }
    }
    if reread {
        let again = push(&mut g, "again", Op::Alias, vec![s], shape);
        g.outputs.push(again);
    }
    (g, c, values(channels * size * size, seed + 9, -1.0, 1.0))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_residual_add_fused_into_the_convolution_equals_the_graph_as_written(
        channels in 1..=20usize, size in 1..=9usize, k in prop_oneof![Just(1usize), Just(3)],
        act in 0u8..5, swap: bool, reread: bool, from_input: bool, mid: bool, seed in 0u64..1000,
    ) {
        let (g, c, x) =
            residual_block(channels, size, k, act, swap, reread, from_input, mid, seed);
        let compiled = compile(&g, &c);
        let add = g.nodes.iter().position(|n| n.name == "add").unwrap();
        let conv = g.nodes.iter().position(|n| n.name == "c2").unwrap();
        // The BatchNorm folds, the Add becomes the convolution's, the activation fuses.
        prop_assert!(compiled.nodes[add].alias);
        prop_assert_eq!(compiled.nodes[conv].residual.map(|r| r.1), Some(add));
        prop_assert_eq!(compiled.nodes[conv].fused.is_some(), act < 4);
        let fast = run(&g, &compiled, &c, &[&x], None).unwrap();
        let plain = run(&g, &Compiled::plain(&g), &c, &[&x], None).unwrap();
        prop_assert_eq!(fast.len(), plain.len());
        for (a, b) in fast.iter().zip(&plain) {
            close(&a.data, &b.data)?;
        }
        // A second run (buffers from the pool) gives the same values.
        let again = run(&g, &compiled, &c, &[&x], None).unwrap();
        prop_assert_eq!(again, fast);
    }
}

#[test]
fn a_skip_computed_after_the_convolution_is_not_fused() {
    // Add(conv(x), relu(x)) with the Relu after the convolution in the node order: the
    // convolution cannot start from the skip, the Add runs as written.
    let (mut g, mut c) = (Graph::new("t"), Consts::default());
    let x = g.add_input("x", vec![1, 2, 5, 5]);
    let w = constant(&mut g, &mut c, "w", vec![2, 2, 3, 3], 1, (-0.5, 0.5));
    let spec = Conv2dSpec {
        filters: 2,
        ..conv_spec(&small_conv())
    };
    let geom = Conv2dGeometry::resolve(2, 5, 5, &spec).unwrap();
    let conv = Op::Conv {
        geom,
        batch: 1,
        epilogue: Epilogue::default(),
    };
    let y = push(&mut g, "conv", conv, vec![x, w], vec![1, 2, 5, 5]);
    let r = push(&mut g, "relu", activation_op(0), vec![x], vec![1, 2, 5, 5]);
    let add = Op::Binary(BinaryOp::Add);
    let s = push(&mut g, "add", add, vec![y, r], vec![1, 2, 5, 5]);
    g.outputs.push(s);
    let (compiled, fast, plain) = run_both(&g, &c, &values(50, 3, -1.0, 1.0));
    assert!(compiled.nodes.iter().all(|w| w.residual.is_none()));
    assert!(!compiled.nodes[2].alias);
    assert_eq!(fast, plain);
}
