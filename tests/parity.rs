//! One network, two front doors: the same layers written as a model file and as an ONNX graph
//! (built here with the ONNX protobuf messages, carrying the model file's weights) must give
//! the same outputs (within 1e-5 of the largest output magnitude) and the same parameter
//! totals, trainable and not. The network covers every layer type both doors have: a strided
//! "same" convolution, batch normalisation, a separate activation layer, a depthwise
//! convolution with its activation, a 1x1 convolution without bias, a residual add, a grouped
//! and dilated convolution, a separable convolution, channel concatenation, max and average
//! pooling (with padding), global average and max pooling, flatten, concatenation of vectors,
//! dense layers, dropout and softmax. Both run through the one graph executor after the same
//! compile passes; the test also checks that a model file gets them (BatchNorm folded,
//! activation layers fused, flatten and dropout aliased).

use cnn::graph::Graph;
use cnn::model::{parse_model, Model};
use cnn::Tensor;
use cnn_onnx::constant::encode_f32;
use cnn_onnx::proto::{
    attribute_type, data_type, AttributeProto, Dimension, DimensionValue, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor,
    ValueInfoProto,
};
use cnn_onnx::OnnxModel;
use prost::Message;
use rand::{Rng, SeedableRng};

const MODEL: &str = r#"
name = "parity"
[input]
channels = 3
height = 12
width = 10

[[layers]]
type = "conv2d"
name = "c1"
filters = 8
kernel = 3
stride = 2
padding = "same"

[[layers]]
type = "batchnorm"
name = "bn1"
epsilon = 0.001

[[layers]]
type = "activation"
name = "r1"
activation = "relu"

[[layers]]
type = "depthwise_conv2d"
name = "dw"
kernel = 3
padding = "same"
activation = "relu"

[[layers]]
type = "conv2d"
name = "pw1"
filters = 8
kernel = 1
use_bias = false

[[layers]]
type = "add"
name = "add1"
inputs = ["r1", "pw1"]

[[layers]]
type = "conv2d"
name = "g1"
filters = 8
kernel = 3
dilation = 2
groups = 2
padding = "same"
activation = "tanh"

[[layers]]
type = "separable_conv2d"
name = "sep"
filters = 6
kernel = 3
padding = "same"
activation = "sigmoid"

[[layers]]
type = "concat"
name = "cat"
inputs = ["add1", "sep"]

[[layers]]
type = "maxpool2d"
name = "mp"
pool = 2

[[layers]]
type = "avgpool2d"
name = "ap"
inputs = ["cat"]
pool = 3
stride = 1
padding = "same"

[[layers]]
type = "global_avgpool2d"
name = "gap"

[[layers]]
type = "global_maxpool2d"
name = "gmp"
inputs = ["g1"]

[[layers]]
type = "flatten"
name = "flat"
inputs = ["mp"]

[[layers]]
type = "concat"
name = "vcat"
inputs = ["gap", "gmp", "flat"]

[[layers]]
type = "dense"
name = "fc1"
units = 16

[[layers]]
type = "activation"
name = "fc1_relu"
activation = "relu"

[[layers]]
type = "dropout"
name = "drop"
rate = 0.5

[[layers]]
type = "dense"
name = "fc2"
units = 5
activation = "softmax"
"#;

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INTS,
        ints: v.to_vec(),
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

fn same_upper() -> AttributeProto {
    AttributeProto {
        name: "auto_pad".into(),
        r#type: attribute_type::STRING,
        s: b"SAME_UPPER".to_vec(),
        ..Default::default()
    }
}

fn node(op: &str, name: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![name.to_string()],
        name: name.into(),
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    }
}

/// A float input `[batch, item…]`; batch 0 is symbolic (`N`).
fn input_info(name: &str, batch: usize, item: &[usize]) -> ValueInfoProto {
    let first = match batch {
        0 => DimensionValue::DimParam("N".into()),
        b => DimensionValue::DimValue(b as i64),
    };
    let dim = std::iter::once(first)
        .chain(item.iter().map(|&d| DimensionValue::DimValue(d as i64)))
        .map(|v| Dimension { value: Some(v) })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto { dim }),
            }),
            ..Default::default()
        }),
    }
}

/// The model file's network as an ONNX file's bytes, with its weights (`layer.param`) as
/// initializers; the input `[batch, 3, h, w]` (a symbolic batch when `batch` is 0).
fn onnx_twin_bytes(model: &Model, batch: usize) -> Vec<u8> {
    let mut inits: Vec<TensorProto> = Vec::new();
    let w = model.weights().expect("weights allocated");
    for (layer, held) in model.plan.layers().iter().zip(&w.layers) {
        for t in &held.tensors {
            let name = format!("{}.{}", layer.name, t.name);
            inits.push(encode_f32(&name, &t.shape, &t.data));
        }
    }
    let k3 = || ints("kernel_shape", &[3, 3]);
    let nodes = vec![
        node(
            "Conv",
            "c1",
            &["x", "c1.weight", "c1.bias"],
            vec![k3(), ints("strides", &[2, 2]), same_upper()],
        ),
        node(
            "BatchNormalization",
            "bn1",
            &[
                "c1",
                "bn1.gamma",
                "bn1.beta",
                "bn1.moving_mean",
                "bn1.moving_variance",
            ],
            vec![AttributeProto {
                name: "epsilon".into(),
                r#type: attribute_type::FLOAT,
                f: 0.001,
                ..Default::default()
            }],
        ),
        node("Relu", "r1", &["bn1"], vec![]),
        node(
            "Conv",
            "dw",
            &["r1", "dw.weight", "dw.bias"],
            vec![k3(), int("group", 8), same_upper()],
        ),
        node("Relu", "dw_relu", &["dw"], vec![]),
        node("Conv", "pw1", &["dw_relu", "pw1.weight"], vec![]),
        node("Add", "add1", &["r1", "pw1"], vec![]),
        node(
            "Conv",
            "g1",
            &["add1", "g1.weight", "g1.bias"],
            vec![
                k3(),
                int("group", 2),
                ints("dilations", &[2, 2]),
                same_upper(),
            ],
        ),
        node("Tanh", "g1_tanh", &["g1"], vec![]),
        node(
            "Conv",
            "sep_dw",
            &["g1_tanh", "sep.depthwise_weight"],
            vec![k3(), int("group", 8), same_upper()],
        ),
        node(
            "Conv",
            "sep_pw",
            &["sep_dw", "sep.pointwise_weight", "sep.bias"],
            vec![],
        ),
        node("Sigmoid", "sep", &["sep_pw"], vec![]),
        node("Concat", "cat", &["add1", "sep"], vec![int("axis", 1)]),
        node(
            "MaxPool",
            "mp",
            &["cat"],
            vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
        ),
        node(
            "AveragePool",
            "ap",
            &["cat"],
            vec![k3(), ints("strides", &[1, 1]), same_upper()],
        ),
        node("GlobalAveragePool", "gap4", &["ap"], vec![]),
        node("Flatten", "gap", &["gap4"], vec![]),
        node("GlobalMaxPool", "gmp4", &["g1_tanh"], vec![]),
        node("Flatten", "gmp", &["gmp4"], vec![]),
        node("Flatten", "flat", &["mp"], vec![]),
        node(
            "Concat",
            "vcat",
            &["gap", "gmp", "flat"],
            vec![int("axis", 1)],
        ),
        node(
            "Gemm",
            "fc1",
            &["vcat", "fc1.weight", "fc1.bias"],
            vec![int("transB", 1)],
        ),
        node("Relu", "fc1_relu", &["fc1"], vec![]),
        node("Dropout", "drop", &["fc1_relu"], vec![]),
        node(
            "Gemm",
            "fc2",
            &["drop", "fc2.weight", "fc2.bias"],
            vec![int("transB", 1)],
        ),
        node("Softmax", "y", &["fc2"], vec![int("axis", 1)]),
    ];
    let proto = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(GraphProto {
            node: nodes,
            name: "parity".into(),
            initializer: inits,
            input: vec![input_info("x", batch, &model.plan.input_shape())],
            output: vec![ValueInfoProto {
                name: "y".into(),
                r#type: None,
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    proto.encode_to_vec()
}

fn onnx_twin(model: &Model, batch: usize) -> OnnxModel {
    OnnxModel::from_bytes(&onnx_twin_bytes(model, batch), "parity.onnx", "parity").unwrap()
}

/// The model file with random weights everywhere: kernels, biases and BatchNorm statistics.
fn model_file() -> Model {
    model_file_from(MODEL)
}

fn model_file_from(text: &str) -> Model {
    let spec = parse_model(text, "parity.toml").unwrap();
    let mut m = Model::plan_spec(&spec).unwrap();
    m.allocate(5, cnn::DEFAULT_MAX_WEIGHT_BYTES).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for layer in &mut m.weights_mut().unwrap().layers {
        for t in &mut layer.tensors {
            for v in &mut t.data {
                *v = match t.name.as_str() {
                    "moving_variance" => rng.random_range(0.3..2.0),
                    "gamma" => rng.random_range(0.5..1.5),
                    "weight" | "depthwise_weight" | "pointwise_weight" => {
                        rng.random_range(-0.6..0.6)
                    }
                    _ => rng.random_range(-0.5..0.5),
                };
            }
        }
    }
    m
}

fn node_index(g: &Graph, name: &str) -> usize {
    g.nodes.iter().position(|n| n.name == name).unwrap()
}

#[test]
fn a_model_file_and_its_onnx_twin_agree() {
    let m = model_file();
    let batch = 2;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let data: Vec<f32> = (0..batch * 3 * 12 * 10)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let x = Tensor::from_vec(&[batch, 3, 12, 10], data.clone()).unwrap();
    let from_file = m.forward(&x).unwrap();

    let onnx = onnx_twin(&m, batch);
    let p = cnn_onnx::plan(&onnx, &[vec![batch, 3, 12, 10]]).unwrap();
    let from_onnx = cnn_onnx::run(&onnx, &p, &[data]).unwrap().remove(0);

    // Same counts, computed each front end's own way.
    assert_eq!(m.plan.total_params(), p.graph.total_params());
    assert_eq!(m.plan.trainable_params(), p.graph.trainable_params());
    assert_eq!(
        m.plan.non_trainable_params(),
        p.graph.non_trainable_params()
    );
    assert_eq!(m.plan.non_trainable_params(), 16);
    assert!(p.unused_initializers.is_empty());

    assert_eq!(from_file.shape(), from_onnx.shape.as_slice());
    assert_eq!(from_file.shape(), &[batch, 5]);
    let largest = from_onnx
        .data
        .iter()
        .fold(0.0f32, |a, &v| a.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    let worst = from_file
        .as_slice()
        .iter()
        .zip(&from_onnx.data)
        .map(|(a, b)| (a - b).abs() / largest)
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1e-5,
        "model file {:?} vs ONNX {:?}: relative difference {worst}",
        from_file.as_slice(),
        from_onnx.data
    );
    // Not a degenerate network: the probabilities differ between classes and images.
    let first = from_file.as_slice()[0];
    assert!(from_file
        .as_slice()
        .iter()
        .any(|v| (v - first).abs() > 1e-3));
}

#[test]
fn a_model_file_gets_every_compile_pass() {
    let m = model_file();
    let x = cnn::random_input(&m.plan, 1, 4).unwrap();
    assert!(m.compiled().is_none(), "planning never compiles");
    m.forward(&x).unwrap();
    let c = m.compiled().expect("compiled by the first forward pass");
    let g = &m.plan.graph;
    let at = |name: &str| &c.nodes[node_index(g, name)];
    assert!(at("c1").folded.is_some(), "batchnorm folded into c1");
    assert!(
        at("bn1").alias,
        "the folded batchnorm passes c1's output on"
    );
    assert_eq!(at("c1").fused, Some(cnn::conv::Activation::Relu));
    assert!(at("r1").alias, "the relu layer is fused into c1");
    assert_eq!(at("fc1").fused, Some(cnn::conv::Activation::Relu));
    assert!(
        at("fc1_relu").alias,
        "the relu layer is fused into dense fc1"
    );
    assert!(at("c1").packed[0].is_some() && at("sep").packed.iter().all(Option::is_some));
    // Flatten and dropout are aliases in the graph itself.
    assert!(matches!(
        g.nodes[node_index(g, "flat")].op,
        cnn::graph::Op::Alias
    ));
    assert!(matches!(
        g.nodes[node_index(g, "drop")].op,
        cnn::graph::Op::Alias
    ));
    // The add reads r1 again, so nothing fuses across it.
    assert!(!at("pw1").alias && at("pw1").fused.is_none());
}

/// With `CNN_TWIN_DIR` set, writes the network at a benchmark size (3x128x128) as a model
/// file, its weights and its ONNX twin into that folder, for `cnn bench` side by side
/// (`docs/architecture.md`). Without it, checks only that the twin at that size still agrees.
#[test]
fn the_twin_at_benchmark_size() {
    let text = MODEL
        .replace("height = 12", "height = 128")
        .replace("width = 10", "width = 128");
    let m = model_file_from(&text);
    let bytes = onnx_twin_bytes(&m, 0);
    let onnx = OnnxModel::from_bytes(&bytes, "twin.onnx", "twin").unwrap();
    let p = cnn_onnx::plan(&onnx, &[vec![1, 3, 128, 128]]).unwrap();
    assert_eq!(p.graph.total_params(), m.plan.total_params());
    let x = cnn::random_input(&m.plan, 1, 2).unwrap();
    let a = m.forward(&x).unwrap();
    let b = cnn_onnx::run(&onnx, &p, &[x.as_slice()]).unwrap().remove(0);
    assert!(a
        .as_slice()
        .iter()
        .zip(&b.data)
        .all(|(u, v)| (u - v).abs() <= 1e-5));
    if let Some(dir) = std::env::var_os("CNN_TWIN_DIR") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let toml = text.replace("name = \"parity\"", "name = \"twin\"");
        std::fs::write(dir.join("twin.toml"), toml).unwrap();
        let w = m.weights().unwrap();
        cnn::model::save_weights(&m.plan, w, &dir.join("twin.safetensors")).unwrap();
        std::fs::write(dir.join("twin.onnx"), &bytes).unwrap();
    }
}
