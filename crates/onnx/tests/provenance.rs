//! What `summary` says about an exporter's changes to the parameters, on small graphs written
//! the way the exporters write them: a tensor shared through `Identity` (the legacy exporter's
//! merge of identical initializers) is one parameter tensor, read directly by both nodes and
//! counted once, with the note giving what per-reader copies would add; biases named
//! `<weight>_bias` or weights named `onnx::Conv_*` without a BatchNormalization mean folded
//! BatchNorm; convolutions without a bias that feed no BatchNormalization are counted and
//! their channels summed. A graph that shows none of this gets no note.

use cnn_onnx::proto::{
    data_type, Dimension, DimensionValue, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto,
};
use cnn_onnx::provenance::export_notes;
use cnn_onnx::{plan, OnnxModel};
use prost::Message;

fn node(op: &str, out: &str, inputs: &[&str]) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![out.to_string()],
        name: out.into(),
        op_type: op.into(),
        ..Default::default()
    }
}

fn floats(name: &str, shape: &[usize]) -> TensorProto {
    TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: data_type::FLOAT,
        name: name.into(),
        float_data: vec![0.25; shape.iter().product()],
        ..Default::default()
    }
}

/// A model reading `x` of `[1, 2, 4, 4]`, at opset 17.
fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, output: &str) -> OnnxModel {
    let x = ValueInfoProto {
        name: "x".into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: [1, 2, 4, 4]
                        .map(|v| Dimension {
                            value: Some(DimensionValue::DimValue(v)),
                        })
                        .to_vec(),
                }),
            }),
            ..Default::default()
        }),
    };
    let proto = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            node: nodes,
            name: "g".into(),
            initializer: inits,
            input: vec![x],
            output: vec![ValueInfoProto {
                name: output.into(),
                r#type: None,
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    OnnxModel::from_bytes(&proto.encode_to_vec(), "g.onnx", "g").unwrap()
}

fn total(m: &OnnxModel) -> u64 {
    plan(m, &[vec![1, 2, 4, 4]]).unwrap().graph.total_params()
}

#[test]
fn a_tensor_shared_through_identity_is_counted_once_and_noted() {
    let m = model(
        vec![
            node("Identity", "b_copy", &["b"]),
            node("Conv", "c1", &["x", "w1", "b"]),
            node("Conv", "c2", &["c1", "w2", "b_copy"]),
        ],
        vec![
            floats("w1", &[2, 2, 1, 1]),
            floats("w2", &[2, 2, 1, 1]),
            floats("b", &[2]),
        ],
        "c2",
    );
    // The Identity is gone: both convolutions read `b`.
    assert_eq!(m.nodes.len(), 2);
    assert_eq!(m.nodes[1].input(2), Some("b"));
    assert_eq!(total(&m), 4 + 4 + 2);
    let notes = export_notes(&m);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("1 float initializers are read by several nodes (2 reads)")
            && notes[0].contains("would add 2 parameters"),
        "{}",
        notes[0]
    );
}

#[test]
fn an_identity_that_is_a_graph_output_stays() {
    let m = model(
        vec![node("Identity", "y", &["b"])],
        vec![floats("b", &[2])],
        "y",
    );
    assert_eq!(m.nodes.len(), 1);
}

#[test]
fn exporter_made_biases_mean_folded_batchnorm() {
    for (weight, bias) in [
        ("conv.weight", "conv.weight_bias"),
        ("onnx::Conv_7", "onnx::Conv_8"),
    ] {
        let m = model(
            vec![
                node("Conv", "c", &["x", weight, bias]),
                node("Relu", "r", &["c"]),
            ],
            vec![floats(weight, &[3, 2, 1, 1]), floats(bias, &[3])],
            "r",
        );
        let notes = export_notes(&m);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("folded BatchNorm into 1 convolutions")
                && notes[0].contains(&format!("'{bias}'")),
            "{}",
            notes[0]
        );
    }
}

#[test]
fn biasless_convolutions_without_batchnorm_are_noted_with_their_channels() {
    let m = model(
        vec![
            node("Conv", "c1", &["x", "w1"]),
            node("Relu", "r", &["c1"]),
            node("Conv", "c2", &["r", "w2"]),
        ],
        vec![floats("w1", &[3, 2, 1, 1]), floats("w2", &[5, 3, 1, 1])],
        "c2",
    );
    let notes = export_notes(&m);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("2 of 2 Conv and 0 of 0 Gemm nodes have no bias")
            && notes[0].contains("would hold 8 values"),
        "{}",
        notes[0]
    );
}

#[test]
fn a_separately_added_bias_or_a_following_convolution_is_no_missing_bias() {
    // Keras' export: Conv, Transpose to NHWC, Add of a reshaped bias; a separable
    // convolution's depthwise half feeds its pointwise half directly.
    let m = model(
        vec![
            node("Conv", "dw", &["x", "w1"]),
            node("Conv", "pw", &["dw", "w2"]),
            node("Transpose", "t", &["pw"]),
            node("Reshape", "b4", &["b", "shape"]),
            node("Add", "y", &["t", "b4"]),
        ],
        vec![
            floats("w1", &[2, 1, 3, 3]),
            floats("w2", &[2, 2, 1, 1]),
            floats("b", &[2]),
            TensorProto {
                dims: vec![4],
                data_type: data_type::INT64,
                name: "shape".into(),
                int64_data: vec![1, 1, 1, 2],
                ..Default::default()
            },
        ],
        "y",
    );
    assert_eq!(export_notes(&m), Vec::<String>::new());
}

#[test]
fn a_graph_as_the_framework_wrote_it_gets_no_note() {
    // Conv without bias into BatchNormalization, then Conv with a module-named bias.
    let m = model(
        vec![
            node("Conv", "c1", &["x", "w1"]),
            node("BatchNormalization", "bn", &["c1", "g", "b", "m", "v"]),
            node("Conv", "c2", &["bn", "conv2.weight", "conv2.bias"]),
        ],
        vec![
            floats("w1", &[2, 2, 1, 1]),
            floats("g", &[2]),
            floats("b", &[2]),
            floats("m", &[2]),
            floats("v", &[2]),
            floats("conv2.weight", &[2, 2, 1, 1]),
            floats("conv2.bias", &[2]),
        ],
        "c2",
    );
    assert_eq!(export_notes(&m), Vec::<String>::new());
}
