//! Random single-node ONNX graphs (Conv, MaxPool, AveragePool) built in memory, run through
//! the importer and the engine's fast kernels, and compared with naive loops written here
//! straight from the ONNX operator specification — padding rules (explicit, VALID,
//! SAME_UPPER, SAME_LOWER), ceil mode, `count_include_pad`, dilations and groups included.
//! Bound: `|fast - ref| <= 1e-4 * (1 + sum |w * x|)` for Conv, 1e-5 (relative) for pooling.

use cnn_onnx::proto::{
    attribute_type, data_type, AttributeProto, Dimension, DimensionValue, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto,
};
use cnn_onnx::{constant::encode_f32, plan, run, OnnxModel};
use proptest::prelude::*;
use prost::Message;

fn ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INTS,
        ints: v.iter().map(|&x| x as i64).collect(),
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i: v,
        ..Default::default()
    }
}

fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::STRING,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn value_info(name: &str, shape: &[usize]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: shape
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(DimensionValue::DimValue(d as i64)),
                        })
                        .collect(),
                }),
            }),
            ..Default::default()
        }),
    }
}

/// A one-node model reading `x` of `shape`, with `initializers`.
fn one_node(
    node: NodeProto,
    shape: &[usize],
    initializers: Vec<cnn_onnx::proto::TensorProto>,
) -> OnnxModel {
    graph(vec![node], vec![value_info("x", shape)], initializers)
}

/// A model of `nodes` (the last writes `y`) with these graph inputs and initializers.
fn graph(
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    initializers: Vec<cnn_onnx::proto::TensorProto>,
) -> OnnxModel {
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            node: nodes,
            name: "g".into(),
            initializer: initializers,
            input: inputs,
            output: vec![ValueInfoProto {
                name: "y".into(),
                r#type: None,
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    OnnxModel::from_bytes(&model.encode_to_vec(), "prop.onnx", "prop").unwrap()
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    // A small deterministic generator: proptest picks the seed.
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Pad {
    Explicit([usize; 4]),
    Valid,
    SameUpper,
    SameLower,
}

/// `(begin, end, out)` of one axis, from the ONNX specification.
fn axis(
    input: usize,
    k: usize,
    s: usize,
    d: usize,
    pad: Pad,
    axis: usize,
    ceil: bool,
) -> Option<(usize, usize, usize)> {
    let eff = d * (k - 1) + 1;
    let (b, e) = match pad {
        Pad::Explicit(p) => (p[axis], p[axis + 2]),
        Pad::Valid => (0, 0),
        Pad::SameUpper | Pad::SameLower => {
            let out = input.div_ceil(s);
            let total = ((out - 1) * s + eff).saturating_sub(input);
            let small = total / 2;
            if matches!(pad, Pad::SameUpper) {
                (small, total - small)
            } else {
                (total - small, small)
            }
        }
    };
    if input + b + e < eff {
        return None;
    }
    let span = input + b + e - eff;
    let mut out = if ceil { span.div_ceil(s) } else { span / s } + 1;
    if ceil && (out - 1) * s >= input + b {
        out -= 1;
    }
    Some((b, e, out))
}

fn window_attrs(k: [usize; 2], s: [usize; 2], d: [usize; 2], pad: Pad) -> Vec<AttributeProto> {
    let mut a = vec![
        ints("kernel_shape", &k),
        ints("strides", &s),
        ints("dilations", &d),
    ];
    match pad {
        Pad::Explicit(p) => a.push(ints("pads", &p)),
        Pad::Valid => a.push(string("auto_pad", "VALID")),
        Pad::SameUpper => a.push(string("auto_pad", "SAME_UPPER")),
        Pad::SameLower => a.push(string("auto_pad", "SAME_LOWER")),
    }
    a
}

fn pad_strategy() -> impl Strategy<Value = Pad> {
    prop_oneof![
        prop::array::uniform4(0usize..3).prop_map(Pad::Explicit),
        Just(Pad::Valid),
        Just(Pad::SameUpper),
        Just(Pad::SameLower),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn conv_matches_the_specification(
        n in 1usize..3, groups in 1usize..4, cpg in 1usize..4, mpg in 1usize..4,
        h in 1usize..12, w in 1usize..12, k in prop::array::uniform2(1usize..4),
        s in prop::array::uniform2(1usize..3), d in prop::array::uniform2(1usize..3),
        pad in pad_strategy(), bias in any::<bool>(), seed in any::<u64>(),
    ) {
        let (c, m) = (groups * cpg, groups * mpg);
        let (Some((pt, _, oh)), Some((pl, _, ow))) = (
            axis(h, k[0], s[0], d[0], pad, 0, false),
            axis(w, k[1], s[1], d[1], pad, 1, false),
        ) else {
            return Ok(()); // the window does not fit: the planner refuses it (tested elsewhere)
        };
        let x = values(n * c * h * w, seed);
        let wt = values(m * cpg * k[0] * k[1], seed ^ 1);
        let b = values(m, seed ^ 2);
        let mut attrs = window_attrs(k, s, d, pad);
        attrs.push(int("group", groups as i64));
        let mut inputs = vec!["x".to_string(), "w".to_string()];
        let mut inits = vec![encode_f32("w", &[m, cpg, k[0], k[1]], &wt)];
        if bias {
            inputs.push("b".into());
            inits.push(encode_f32("b", &[m], &b));
        }
        let node = NodeProto { input: inputs, output: vec!["y".into()], name: "conv".into(), op_type: "Conv".into(), attribute: attrs, ..Default::default() };
        let model = one_node(node, &[n, c, h, w], inits);
        let p = plan(&model, &[vec![n, c, h, w]]).unwrap();
        prop_assert_eq!(&p.graph.nodes[0].output_shape, &vec![n, m, oh, ow]);
        let got = run(&model, &p, std::slice::from_ref(&x)).unwrap().remove(0).data;
        for (i, &g) in got.iter().enumerate() {
            let (b0, rest) = (i / (m * oh * ow), i % (m * oh * ow));
            let (oc, y, xx) = (rest / (oh * ow), rest % (oh * ow) / ow, rest % ow);
            let grp = oc / mpg;
            let (mut acc, mut mag) = (if bias { b[oc] as f64 } else { 0.0 }, 0.0f64);
            for ci in 0..cpg {
                for ky in 0..k[0] {
                    for kx in 0..k[1] {
                        let iy = (y * s[0] + ky * d[0]) as isize - pt as isize;
                        let ix = (xx * s[1] + kx * d[1]) as isize - pl as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let xv = x[((b0 * c + grp * cpg + ci) * h + iy as usize) * w + ix as usize] as f64;
                        let wv = wt[((oc * cpg + ci) * k[0] + ky) * k[1] + kx] as f64;
                        acc += xv * wv;
                        mag += (xv * wv).abs();
                    }
                }
            }
            prop_assert!((g as f64 - acc).abs() <= 1e-4 * (1.0 + mag), "output {}: {} vs {}", i, g, acc);
        }
    }

    #[test]
    fn pooling_matches_the_specification(
        planes in 1usize..4, h in 1usize..12, w in 1usize..12,
        k in prop::array::uniform2(1usize..4), s in prop::array::uniform2(1usize..4),
        d in prop::array::uniform2(1usize..3), pad in pad_strategy(), ceil in any::<bool>(),
        max in any::<bool>(), include_pad in any::<bool>(), seed in any::<u64>(),
    ) {
        let (Some((pt, pb, oh)), Some((pl, pr, ow))) = (
            axis(h, k[0], s[0], d[0], pad, 0, ceil),
            axis(w, k[1], s[1], d[1], pad, 1, ceil),
        ) else {
            return Ok(());
        };
        let x = values(planes * h * w, seed);
        let mut attrs = window_attrs(k, s, d, pad);
        attrs.push(int("ceil_mode", ceil as i64));
        if !max {
            attrs.push(int("count_include_pad", include_pad as i64));
        }
        let op = if max { "MaxPool" } else { "AveragePool" };
        let node = NodeProto { input: vec!["x".into()], output: vec!["y".into()], name: "pool".into(), op_type: op.into(), attribute: attrs, ..Default::default() };
        let model = one_node(node, &[1, planes, h, w], vec![]);
        let p = plan(&model, &[vec![1, planes, h, w]]).unwrap();
        prop_assert_eq!(&p.graph.nodes[0].output_shape, &vec![1, planes, oh, ow]);
        let got = run(&model, &p, std::slice::from_ref(&x)).unwrap().remove(0).data;
        for (i, &g) in got.iter().enumerate() {
            let (pl_i, y, xx) = (i / (oh * ow), i % (oh * ow) / ow, i % ow);
            let (mut acc, mut real, mut inside) = (if max { f64::NEG_INFINITY } else { 0.0 }, 0usize, 0usize);
            for ky in 0..k[0] {
                for kx in 0..k[1] {
                    let iy = (y * s[0] + ky * d[0]) as isize - pt as isize;
                    let ix = (xx * s[1] + kx * d[1]) as isize - pl as isize;
                    if iy < (h + pb) as isize && ix < (w + pr) as isize {
                        inside += 1;
                    }
                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                        continue;
                    }
                    let v = x[(pl_i * h + iy as usize) * w + ix as usize] as f64;
                    acc = if max { acc.max(v) } else { acc + v };
                    real += 1;
                }
            }
            if real == 0 {
                continue; // a window wholly in padding: ONNX leaves its value unspecified
            }
            let want = if max { acc } else { acc / if include_pad { inside } else { real } as f64 };
            prop_assert!((g as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()), "{} output {}: {} vs {}", op, i, g, want);
        }
    }

    /// Conv -> BatchNormalization -> Relu with constant statistics (folded into the
    /// convolution, the Relu fused into its output pass) against the same graph with the
    /// statistics given as inputs (nothing folded): the same values.
    #[test]
    fn folded_batchnorm_matches_the_unfolded_graph(
        c in 1usize..5, m in 1usize..6, hw in 3usize..10, bias in any::<bool>(), seed in any::<u64>(),
    ) {
        let x = values(c * hw * hw, seed);
        let w = values(m * c * 9, seed ^ 1);
        let b = values(m, seed ^ 2);
        let stats: Vec<Vec<f32>> = (0..4u64)
            .map(|k| values(m, seed ^ (3 + k)).into_iter().map(|v| if k == 3 { v.abs() + 0.5 } else { v }).collect())
            .collect();
        let names = ["gamma", "beta", "mean", "var"];
        let mut conv_in = vec!["x".to_string(), "w".to_string()];
        if bias {
            conv_in.push("b".into());
        }
        let nodes = vec![
            NodeProto { input: conv_in, output: vec!["c".into()], name: "conv".into(), op_type: "Conv".into(), attribute: vec![ints("pads", &[1, 1, 1, 1])], ..Default::default() },
            NodeProto { input: std::iter::once("c".to_string()).chain(names.iter().map(|n| n.to_string())).collect(), output: vec!["n".into()], name: "bn".into(), op_type: "BatchNormalization".into(), ..Default::default() },
            NodeProto { input: vec!["n".into()], output: vec!["y".into()], name: "relu".into(), op_type: "Relu".into(), ..Default::default() },
        ];
        let mut inits = vec![encode_f32("w", &[m, c, 3, 3], &w)];
        if bias {
            inits.push(encode_f32("b", &[m], &b));
        }
        let shape = vec![1, c, hw, hw];
        let folded_inits: Vec<_> = inits.iter().cloned().chain(names.iter().zip(&stats).map(|(n, v)| encode_f32(n, &[m], v))).collect();
        let folded = graph(nodes.clone(), vec![value_info("x", &shape)], folded_inits);
        let pf = plan(&folded, std::slice::from_ref(&shape)).unwrap();
        let compiled = cnn_onnx::compile(&folded, &pf);
        let conv_folded = compiled.nodes[0].folded.is_some();
        prop_assert!(conv_folded);
        let aliased = compiled.nodes[1].alias && compiled.nodes[2].alias;
        prop_assert!(aliased);
        prop_assert_eq!(pf.graph.nodes[1].param_count, 4 * m as u64);
        let got = run(&folded, &pf, std::slice::from_ref(&x)).unwrap().remove(0).data;
        let mut inputs = vec![value_info("x", &shape)];
        inputs.extend(names.iter().map(|n| value_info(n, &[m])));
        let plain = graph(nodes, inputs, inits);
        let mut shapes = vec![shape.clone()];
        shapes.extend((0..4).map(|_| vec![m]));
        let pp = plan(&plain, &shapes).unwrap();
        let mut data = vec![x];
        data.extend(stats.iter().cloned());
        let want = run(&plain, &pp, &data).unwrap().remove(0).data;
        for (g, w) in got.iter().zip(&want) {
            prop_assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{} vs {}", g, w);
        }
    }
}

/// Element-wise Add/Mul write into an input that no later node reads (a residual connection
/// reuses its buffer), and never into one that is read again, a graph input, or an operand
/// given twice.
#[test]
fn binary_ops_reuse_only_inputs_nothing_reads_later() {
    let shape = [1, 2, 3, 3];
    let n: usize = shape.iter().product();
    let op = |name: &str, op_type: &str, inputs: &[&str], out: &str| NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        name: name.into(),
        op_type: op_type.into(),
        ..Default::default()
    };
    let nodes = vec![
        op("a", "Relu", &["x"], "a"),
        op("b", "Relu", &["z"], "b"),
        // `a` is read again below, `b` is not: the sum may go into `b` only.
        op("s", "Add", &["a", "b"], "s"),
        // Both are dead afterwards: the product goes into `s`.
        op("t", "Mul", &["s", "a"], "t"),
        // The same value twice: a new buffer.
        op("u", "Add", &["t", "t"], "u"),
        // `x` is the caller's input: never written.
        op("v", "Add", &["u", "x"], "y"),
    ];
    let model = graph(
        nodes,
        vec![value_info("x", &shape), value_info("z", &shape)],
        vec![],
    );
    let p = plan(&model, &[shape.to_vec(), shape.to_vec()]).unwrap();
    let (x, z) = (values(n, 7), values(n, 8));
    let got = run(&model, &p, &[x.clone(), z.clone()])
        .unwrap()
        .remove(0)
        .data;
    let want: Vec<f32> = x
        .iter()
        .zip(&z)
        .map(|(&x, &z)| {
            let (a, b) = (x.max(0.0), z.max(0.0));
            let t = (a + b) * a;
            (t + t) + x
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!((x, z), (values(n, 7), values(n, 8)), "inputs untouched");
}

/// Sub, Div and Pow do not commute: the result may go into the first operand's buffer only,
/// never into the second's, even when only the second is free to take.
#[test]
fn non_commuting_ops_never_swap_their_operands() {
    let shape = [1, 2, 3, 3];
    let n: usize = shape.iter().product();
    for op_type in ["Sub", "Div", "Pow"] {
        let op = |name: &str, op_type: &str, inputs: &[&str], out: &str| NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.into()],
            name: name.into(),
            op_type: op_type.into(),
            ..Default::default()
        };
        let nodes = vec![
            op("a", "Relu", &["x"], "a"),
            op("b", "Relu", &["z"], "b"),
            // `a` is read again below, `b` is not: `b`'s buffer is free, yet `a - b` must
            // not become `b - a`.
            op("s", op_type, &["a", "b"], "s"),
            op("t", "Add", &["s", "a"], "y"),
        ];
        let model = graph(
            nodes,
            vec![value_info("x", &shape), value_info("z", &shape)],
            vec![],
        );
        let p = plan(&model, &[shape.to_vec(), shape.to_vec()]).unwrap();
        let x: Vec<f32> = values(n, 3).iter().map(|v| v.abs() + 0.5).collect();
        let z: Vec<f32> = values(n, 4).iter().map(|v| v.abs() + 0.25).collect();
        let got = run(&model, &p, &[x.clone(), z.clone()])
            .unwrap()
            .remove(0)
            .data;
        let f = |a: f32, b: f32| match op_type {
            "Sub" => a - b,
            "Div" => a / b,
            _ => a.powf(b),
        };
        let want: Vec<f32> = x.iter().zip(&z).map(|(&a, &b)| f(a, b) + a).collect();
        assert_eq!(got, want, "{op_type}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// LayerNormalization (opset 17) with constant scale and bias over the axes from `axis` on,
    /// against a naive f64 loop; bound `1e-5 * (1 + |y|)`. The scale and bias are counted as
    /// parameters, one value per normalised element each.
    #[test]
    fn layer_normalization_equals_a_naive_loop(
        shape in proptest::collection::vec(1usize..6, 2..5),
        axis_pick in 0usize..4, bias: bool, seed in 0u64..1000,
    ) {
        let rank = shape.len();
        let axis = axis_pick % rank;
        let inner: usize = shape[axis..].iter().product();
        let n: usize = shape.iter().product();
        let x = values(n, seed);
        let scale = values(inner, seed + 1);
        let b = values(inner, seed + 2);
        let mut inputs = vec!["x".to_string(), "scale".to_string()];
        let mut inits = vec![encode_f32("scale", &shape[axis..], &scale)];
        if bias {
            inputs.push("b".into());
            inits.push(encode_f32("b", &shape[axis..], &b));
        }
        let node = NodeProto {
            input: inputs,
            output: vec!["y".into()],
            name: "ln".into(),
            op_type: "LayerNormalization".into(),
            attribute: vec![int("axis", axis as i64 - rank as i64)],
            ..Default::default()
        };
        let model = graph(vec![node], vec![value_info("x", &shape)], inits);
        let p = plan(&model, std::slice::from_ref(&shape)).unwrap();
        let counted = if bias { 2 * inner } else { inner } as u64;
        prop_assert_eq!(p.graph.total_params(), counted);
        let got = run(&model, &p, std::slice::from_ref(&x)).unwrap().remove(0).data;
        for (row, out) in x.chunks(inner).zip(got.chunks(inner)) {
            let m = row.iter().map(|&v| v as f64).sum::<f64>() / inner as f64;
            let var = row.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / inner as f64;
            for k in 0..inner {
                let want = (row[k] as f64 - m) / (var + 1e-5).sqrt() * scale[k] as f64
                    + if bias { b[k] as f64 } else { 0.0 };
                prop_assert!((out[k] as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()), "{} vs {}", out[k], want);
            }
        }
    }
}
