//! Every kind of bad ONNX input, built as `ModelProto` values in Rust and encoded with prost:
//! each must be refused with one error that names the file, the node (name and op), the tensor
//! or the input, and says what is wrong — never a panic. Plus a valid tiny network whose
//! shapes, parameter counts, formulas, MACs and outputs are checked against hand computation.

use cnn_conv::Activation;
use cnn_graph::{Epilogue, Op};
use cnn_onnx::constant::encode_f32;
use cnn_onnx::proto::{
    attribute_type, data_type, AttributeProto, Dimension, DimensionValue, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, SparseTensorProto, StringStringEntryProto, TensorProto,
    TensorShapeProto, TypeProto, TypeProtoTensor, Unread, ValueInfoProto,
};
use cnn_onnx::{declared_input_shapes, plan, run, OnnxModel, OnnxPlan};
use prost::Message;
use std::path::Path;

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: v,
        r#type: attribute_type::INT,
        ..Default::default()
    }
}

fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f: v,
        r#type: attribute_type::FLOAT,
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.to_vec(),
        r#type: attribute_type::INTS,
        ..Default::default()
    }
}

fn attr_s(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        s: v.as_bytes().to_vec(),
        r#type: attribute_type::STRING,
        ..Default::default()
    }
}

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        name: name.into(),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn with(mut n: NodeProto, attrs: Vec<AttributeProto>) -> NodeProto {
    n.attribute = attrs;
    n
}

fn dim(d: i64) -> Dimension {
    Dimension {
        value: Some(DimensionValue::DimValue(d)),
    }
}

fn sym(s: &str) -> Dimension {
    Dimension {
        value: Some(DimensionValue::DimParam(s.into())),
    }
}

fn value_info(name: &str, elem_type: i32, dims: Vec<Dimension>) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type,
                shape: Some(TensorShapeProto { dim: dims }),
            }),
            ..Default::default()
        }),
    }
}

/// A FLOAT graph input or output with fixed dims.
fn float_io(name: &str, dims: &[i64]) -> ValueInfoProto {
    value_info(
        name,
        data_type::FLOAT,
        dims.iter().map(|&d| dim(d)).collect(),
    )
}

fn init(name: &str, shape: &[usize], data: &[f32]) -> TensorProto {
    assert_eq!(shape.iter().product::<usize>(), data.len(), "{name}");
    encode_f32(name, shape, data)
}

/// An f32 initializer of `shape` filled with `0.01 * (i % 7) - 0.03`.
fn filled(name: &str, shape: &[usize]) -> TensorProto {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|i| 0.01 * (i % 7) as f32 - 0.03).collect();
    init(name, shape, &data)
}

fn init_i64(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        dims: vec![values.len() as i64],
        data_type: data_type::INT64,
        name: name.into(),
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

/// A model of opset 13 with one graph.
fn model(
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: &[&str],
) -> ModelProto {
    model_opset(13, nodes, initializers, inputs, outputs)
}

fn model_opset(
    opset: i64,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: &[&str],
) -> ModelProto {
    ModelProto {
        ir_version: 8,
        producer_name: "errors.rs".into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        graph: Some(GraphProto {
            name: "g".into(),
            node: nodes,
            initializer: initializers,
            input: inputs,
            output: outputs
                .iter()
                .map(|o| ValueInfoProto {
                    name: o.to_string(),
                    r#type: None,
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn load(m: &ModelProto) -> Result<OnnxModel, String> {
    OnnxModel::from_bytes(&m.encode_to_vec(), "m.onnx", "m").map_err(|e| e.to_string())
}

fn load_ok(m: &ModelProto) -> OnnxModel {
    load(m).unwrap_or_else(|e| panic!("the model should load: {e}"))
}

/// Plans at the declared shapes (batch 1).
fn plan_declared(m: &ModelProto) -> Result<(OnnxModel, OnnxPlan), String> {
    let model = load(m)?;
    let shapes = declared_input_shapes(&model, 1).map_err(|e| e.to_string())?;
    let p = plan(&model, &shapes).map_err(|e| e.in_file(&model.path).to_string())?;
    Ok((model, p))
}

/// Asserts one error line containing every needle.
fn assert_message(e: &str, needles: &[&str]) {
    assert_eq!(e.lines().count(), 1, "one line: {e:?}");
    for n in needles {
        assert!(e.contains(n), "missing `{n}` in: {e}");
    }
}

fn load_fails(m: &ModelProto, needles: &[&str]) -> String {
    let e = load(m)
        .map(|_| ())
        .expect_err("the model should be refused");
    assert_message(&e, needles);
    e
}

fn plan_fails(m: &ModelProto, needles: &[&str]) -> String {
    let e = plan_declared(m)
        .map(|_| ())
        .expect_err("the model should be refused");
    assert_message(&e, needles);
    e
}

/// `x -> op -> y` with a [1, 2, 4, 4] input (for single-node plan errors).
fn single(n: NodeProto, inits: Vec<TensorProto>, x: &[i64]) -> ModelProto {
    model(vec![n], inits, vec![float_io("x", x)], &["y"])
}

fn squeezenet_bytes() -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/onnx/networks/squeezenet1_0/model.onnx");
    std::fs::read(p).expect("the squeezenet fixture is committed")
}

// ---------------------------------------------------------------------------------------------
// The file itself
// ---------------------------------------------------------------------------------------------

#[test]
fn bytes_that_are_not_protobuf_are_refused() {
    for bytes in [
        vec![0xff_u8; 16],
        b"\x0a\xff\xff\xff\xff\x0f".to_vec(),
        b"this is not an onnx file\n".to_vec(),
    ] {
        let e = OnnxModel::from_bytes(&bytes, "m.onnx", "m")
            .expect_err("garbage is refused")
            .to_string();
        assert_message(&e, &["m.onnx"]);
        assert!(
            e.contains("not a valid ONNX model") || e.contains("has no graph"),
            "{e}"
        );
    }
}

#[test]
fn a_truncated_model_file_is_refused() {
    let bytes = squeezenet_bytes();
    for cut in [1usize, 100, 5_000, bytes.len() / 2, bytes.len() - 1] {
        let e = OnnxModel::from_bytes(&bytes[..cut], "squeezenet.onnx", "m")
            .expect_err("a truncated file is refused")
            .to_string();
        assert_message(&e, &["squeezenet.onnx: not a valid ONNX model"]);
    }
}

#[test]
fn a_missing_file_names_it() {
    let e = OnnxModel::load(Path::new("/nonexistent/dir/m.onnx"))
        .unwrap_err()
        .to_string();
    assert_message(&e, &["/nonexistent/dir/m.onnx"]);
}

#[test]
fn a_model_without_a_graph_is_refused() {
    let m = ModelProto {
        ir_version: 8,
        ..Default::default()
    };
    load_fails(&m, &["m.onnx", "the model has no graph"]);
}

#[test]
fn a_graph_without_outputs_is_refused() {
    let m = single(node("r", "Relu", &["x"], &["y"]), vec![], &[1, 2]);
    let mut m2 = m.clone();
    m2.graph.as_mut().unwrap().output.clear();
    load_fails(&m2, &["m.onnx", "declares no output"]);
}

// ---------------------------------------------------------------------------------------------
// Operators and attributes
// ---------------------------------------------------------------------------------------------

#[test]
fn an_unsupported_op_names_node_op_and_the_supported_list() {
    let m = single(node("sp", "LSTM", &["x"], &["y"]), vec![], &[1, 2]);
    let e = load_fails(
        &m,
        &[
            "m.onnx",
            "node 'sp' (LSTM)",
            "operator 'LSTM' is not supported",
            "supported: Conv, ConvTranspose, Gemm",
            "Pad",
        ],
    );
    assert!(e.contains(cnn_onnx::ops::SUPPORTED), "{e}");
}

#[test]
fn names_with_control_characters_stay_on_one_line() {
    let m = model(
        vec![
            node("line\none", "Relu", &["x"], &["a"]),
            node("tab\there", "Soft\nplus", &["a"], &["y"]),
        ],
        vec![],
        vec![float_io("x", &[1, 2])],
        &["y"],
    );
    load_fails(
        &m,
        &["node 'tab\\there' (Soft\\nplus)", "operator 'Soft\\nplus'"],
    );
    // Node and graph names are escaped for reports too (one table row per node).
    let mut m = single(node("a\nb", "Relu", &["x"], &["y"]), vec![], &[1, 2]);
    m.graph.as_mut().unwrap().name = "multi\nline".into();
    let model = load_ok(&m);
    assert_eq!(model.nodes[0].name, "a\\nb");
    assert_eq!(model.name, "multi\\nline");
    // A tensor name with an escape sequence.
    let mut w = filled("w\u{1b}[31m", &[2]);
    w.dims = vec![3];
    let e = load_fails(
        &single(node("r", "Relu", &["x"], &["y"]), vec![w], &[1, 2]),
        &["tensor 'w\\u{1b}[31m'"],
    );
    assert!(!e.contains('\u{1b}'), "{e:?}");
}

#[test]
fn an_unnamed_node_is_named_by_its_index() {
    let m = model(
        vec![
            node("", "Relu", &["x"], &["a"]),
            node("", "LSTM", &["a"], &["y"]),
        ],
        vec![],
        vec![float_io("x", &[1, 2])],
        &["y"],
    );
    load_fails(&m, &["node '#1' (LSTM)", "not supported"]);
}

#[test]
fn a_node_of_a_custom_domain_is_refused() {
    let mut n = node("fused", "Relu", &["x"], &["y"]);
    n.domain = "com.microsoft".into();
    let m = single(n, vec![], &[1, 2]);
    load_fails(
        &m,
        &[
            "m.onnx",
            "node 'fused' (Relu)",
            "domain 'com.microsoft' is not supported",
        ],
    );
}

#[test]
fn an_unknown_attribute_on_conv_is_refused() {
    let n = with(
        node("c1", "Conv", &["x", "w"], &["y"]),
        vec![attr_i("group", 1), attr_i("fancy", 3)],
    );
    let m = single(n, vec![filled("w", &[2, 2, 3, 3])], &[1, 2, 4, 4]);
    load_fails(
        &m,
        &[
            "m.onnx",
            "node 'c1' (Conv)",
            "attribute 'fancy' is not supported",
            "known: auto_pad, dilations, group, kernel_shape, pads, strides",
        ],
    );
}

#[test]
fn attributes_of_the_wrong_type_or_value_are_refused() {
    let w = || vec![filled("w", &[2, 2, 3, 3])];
    let conv = |attrs| with(node("c1", "Conv", &["x", "w"], &["y"]), attrs);
    let cases: Vec<(Vec<AttributeProto>, &str)> = vec![
        (
            vec![attr_f("group", 2.0)],
            "attribute 'group' must be an int",
        ),
        (vec![attr_i("group", 0)], "group = 0 must be at least 1"),
        (vec![attr_ints("strides", &[0, 1])], "'strides' = [0, 1]"),
        (
            vec![attr_ints("pads", &[-1, 0, 0, 0])],
            "every value must be >= 0",
        ),
        (
            vec![attr_ints("kernel_shape", &[0, 3])],
            "every value must be >= 1",
        ),
    ];
    for (attrs, needle) in cases {
        let m = single(conv(attrs), w(), &[1, 2, 4, 4]);
        load_fails(&m, &["m.onnx", "node 'c1' (Conv)", needle]);
    }
    let n = with(
        node("mp", "MaxPool", &["x"], &["y"]),
        vec![attr_ints("kernel_shape", &[2, 2]), attr_i("ceil_mode", 2)],
    );
    load_fails(
        &single(n, vec![], &[1, 2, 4, 4]),
        &["node 'mp' (MaxPool)", "'ceil_mode' must be 0 or 1, not 2"],
    );
}

#[test]
fn auto_pad_garbage_is_refused() {
    let n = with(
        node("c1", "Conv", &["x", "w"], &["y"]),
        vec![attr_s("auto_pad", "SAME")],
    );
    let m = single(n, vec![filled("w", &[2, 2, 3, 3])], &[1, 2, 4, 4]);
    load_fails(
        &m,
        &[
            "node 'c1' (Conv)",
            "auto_pad 'SAME' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER",
        ],
    );
    let n = with(
        node("p", "AveragePool", &["x"], &["y"]),
        vec![
            attr_ints("kernel_shape", &[2, 2]),
            attr_s("auto_pad", "same_upper"),
        ],
    );
    load_fails(
        &single(n, vec![], &[1, 2, 4, 4]),
        &["node 'p' (AveragePool)", "auto_pad 'same_upper'"],
    );
}

#[test]
fn op_specific_refusals_at_import() {
    let x = &[1, 2, 4, 4];
    // Clip bounds as attributes from opset 11 on.
    let n = with(
        node("cl", "Clip", &["x"], &["y"]),
        vec![attr_f("min", 0.0), attr_f("max", 6.0)],
    );
    load_fails(
        &single(n, vec![], x),
        &["node 'cl' (Clip)", "min and max as inputs"],
    );
    // Concat without axis.
    let m = model(
        vec![node("cat", "Concat", &["x", "x"], &["y"])],
        vec![],
        vec![float_io("x", x)],
        &["y"],
    );
    load_fails(&m, &["node 'cat' (Concat)", "attribute 'axis' is required"]);
    // Pad in reflect mode.
    let n = with(
        node("pad", "Pad", &["x", "pads"], &["y"]),
        vec![attr_s("mode", "reflect")],
    );
    load_fails(
        &single(n, vec![init_i64("pads", &[0; 8])], x),
        &["node 'pad' (Pad)", "mode 'reflect' is not supported"],
    );
    // BatchNormalization with per-activation statistics.
    let n = with(
        node(
            "bn",
            "BatchNormalization",
            &["x", "s", "b", "m", "v"],
            &["y"],
        ),
        vec![attr_i("spatial", 0)],
    );
    load_fails(
        &single(n, vec![], x),
        &["node 'bn' (BatchNormalization)", "spatial = 0"],
    );
    // A Constant node without a value.
    let m = model(
        vec![
            node("k", "Constant", &[], &["c"]),
            node("add", "Add", &["x", "c"], &["y"]),
        ],
        vec![],
        vec![float_io("x", x)],
        &["y"],
    );
    load_fails(&m, &["node 'k' (Constant)", "no value attribute"]);
    // A node without output; an output produced twice.
    let m = single(node("r", "Relu", &["x"], &[]), vec![], x);
    load_fails(&m, &["node 'r' (Relu)", "has no output"]);
    let m = model(
        vec![
            node("r1", "Relu", &["x"], &["y"]),
            node("r2", "Relu", &["x"], &["y"]),
        ],
        vec![],
        vec![float_io("x", x)],
        &["y"],
    );
    load_fails(&m, &["node 'r2' (Relu)", "output 'y' is produced twice"]);
}

// ---------------------------------------------------------------------------------------------
// Initializers
// ---------------------------------------------------------------------------------------------

fn conv_with_weight(w: TensorProto) -> ModelProto {
    single(
        node("c1", "Conv", &["x", "w"], &["y"]),
        vec![w],
        &[1, 2, 4, 4],
    )
}

#[test]
fn an_initializer_with_external_data_needs_the_models_folder() {
    // Read from bytes, there is no folder to find `weights.bin` in (tests/external.rs loads
    // such models from their files).
    let mut w = filled("w", &[2, 2, 3, 3]);
    w.raw_data.clear();
    w.data_location = 1;
    w.external_data = vec![
        StringStringEntryProto {
            key: "location".into(),
            value: "weights.bin".into(),
        },
        StringStringEntryProto {
            key: "offset".into(),
            value: "0".into(),
        },
    ];
    load_fails(
        &conv_with_weight(w),
        &[
            "m.onnx",
            "tensor 'w'",
            "external file ('weights.bin')",
            "which is read from the model's folder",
        ],
    );
}

#[test]
fn initializers_of_double_and_float16_are_refused() {
    let w = TensorProto {
        dims: vec![2, 2, 3, 3],
        data_type: data_type::DOUBLE,
        name: "w".into(),
        double_data: vec![0.5; 36],
        ..Default::default()
    };
    load_fails(
        &conv_with_weight(w),
        &["m.onnx", "tensor 'w'", "data type DOUBLE is not supported"],
    );
    let w = TensorProto {
        dims: vec![2, 2, 3, 3],
        data_type: 10, // FLOAT16
        name: "w".into(),
        raw_data: vec![0; 72],
        ..Default::default()
    };
    load_fails(
        &conv_with_weight(w),
        &["m.onnx", "tensor 'w'", "data type FLOAT16 is not supported"],
    );
    let w = TensorProto {
        dims: vec![1],
        data_type: 77,
        name: "odd".into(),
        raw_data: vec![0; 4],
        ..Default::default()
    };
    load_fails(&conv_with_weight(w), &["tensor 'odd'", "is not supported"]);
}

#[test]
fn raw_data_of_the_wrong_length_is_refused() {
    let mut w = filled("w", &[2, 2, 3, 3]);
    w.raw_data.truncate(70);
    load_fails(
        &conv_with_weight(w),
        &[
            "m.onnx",
            "tensor 'w'",
            "raw_data holds 70 bytes, but 36 elements of 4 bytes need 144",
        ],
    );
    let w = TensorProto {
        dims: vec![2, 2, 3, 3],
        data_type: data_type::FLOAT,
        name: "w".into(),
        float_data: vec![1.0; 35],
        ..Default::default()
    };
    load_fails(
        &conv_with_weight(w),
        &[
            "tensor 'w'",
            "float_data holds 35 elements, but the dims need 36",
        ],
    );
    let mut s = init_i64("shape", &[1, 2]);
    s.int64_data.push(3);
    load_fails(
        &single(
            node("r", "Reshape", &["x", "shape"], &["y"]),
            vec![s],
            &[1, 2],
        ),
        &[
            "tensor 'shape'",
            "int64_data holds 3 elements, but the dims need 2",
        ],
    );
}

#[test]
fn initializers_with_bad_dims_no_name_or_sparse_storage_are_refused() {
    let mut w = filled("w", &[2]);
    w.dims = vec![2, -1];
    load_fails(
        &conv_with_weight(w),
        &["tensor 'w'", "negative dimension -1"],
    );
    let mut w = filled("w", &[2]);
    w.dims = vec![1 << 40, 1 << 40];
    load_fails(&conv_with_weight(w), &["tensor 'w'", "overflow"]);
    let mut w = filled("w", &[2, 2, 3, 3]);
    w.name.clear();
    load_fails(
        &conv_with_weight(w),
        &["m.onnx", "an initializer has no name"],
    );
    let mut m = conv_with_weight(filled("w", &[2, 2, 3, 3]));
    m.graph.as_mut().unwrap().sparse_initializer = vec![SparseTensorProto {
        values: Some(filled("sw", &[2])),
    }];
    load_fails(
        &m,
        &["tensor 'sw'", "sparse initializers are not supported"],
    );
}

// ---------------------------------------------------------------------------------------------
// Graph structure
// ---------------------------------------------------------------------------------------------

#[test]
fn a_node_input_nothing_produces_is_refused() {
    let m = model(
        vec![
            node("late", "Add", &["x", "later"], &["a"]),
            node("r", "Relu", &["x"], &["later"]),
        ],
        vec![],
        vec![float_io("x", &[1, 2])],
        &["a"],
    );
    load_fails(
        &m,
        &[
            "m.onnx",
            "node 'late' (Add)",
            "input 'later' is not a graph input, an initializer or the output of an earlier node",
            "topological order",
        ],
    );
}

#[test]
fn a_graph_output_nobody_produces_is_refused() {
    let m = single(node("r", "Relu", &["x"], &["y"]), vec![], &[1, 2]);
    let mut m2 = m.clone();
    m2.graph.as_mut().unwrap().output[0].name = "z".into();
    load_fails(
        &m2,
        &["m.onnx", "graph output 'z' is not produced by any node"],
    );
}

#[test]
fn a_graph_output_that_is_an_integer_constant_is_refused() {
    let m = model(
        vec![node("r", "Relu", &["x"], &["y"])],
        vec![init_i64("k", &[1, 2])],
        vec![float_io("x", &[1, 2])],
        &["y", "k"],
    );
    plan_fails(&m, &["m.onnx", "graph output 'k' is not a FLOAT value"]);
}

// ---------------------------------------------------------------------------------------------
// Graph inputs
// ---------------------------------------------------------------------------------------------

#[test]
fn graph_inputs_of_int8_or_sequence_type_are_refused() {
    let m = model(
        vec![node("r", "Relu", &["x"], &["y"])],
        vec![],
        vec![value_info("x", 3, vec![dim(1), dim(2)])],
        &["y"],
    );
    load_fails(
        &m,
        &["m.onnx", "input 'x'", "element type INT8 is not supported"],
    );
    let seq = ValueInfoProto {
        name: "x".into(),
        r#type: Some(TypeProto {
            sequence_type: Some(Unread {}),
            ..Default::default()
        }),
    };
    let m = model(
        vec![node("r", "Relu", &["x"], &["y"])],
        vec![],
        vec![seq],
        &["y"],
    );
    load_fails(
        &m,
        &[
            "m.onnx",
            "input 'x'",
            "only tensor inputs are supported",
            "sequence",
        ],
    );
}

#[test]
fn an_int64_graph_input_must_be_bound_before_planning() {
    let m = model(
        vec![node("r", "Reshape", &["x", "shape"], &["y"])],
        vec![],
        vec![
            float_io("x", &[1, 2, 3]),
            value_info("shape", data_type::INT64, vec![dim(2)]),
        ],
        &["y"],
    );
    let e = plan_fails(&m, &["m.onnx", "input 'shape'", "INT64"]);
    assert!(e.contains("constant") || e.contains("initializer"), "{e}");
    // Bound to a constant (as the ONNX node tests do), it plans.
    let mut model = load_ok(&m);
    model
        .bind_constant(
            "shape",
            cnn_onnx::Constant {
                shape: vec![2],
                data: cnn_onnx::constant::ConstData::I64(vec![2, 3]),
            },
        )
        .unwrap();
    let p = plan(&model, &[vec![1, 2, 3]]).unwrap();
    assert_eq!(p.graph.values[p.graph.outputs[0]].shape, vec![2, 3]);
    let e = model
        .bind_constant("nope", cnn_onnx::Constant::f32(vec![], vec![1.0]))
        .unwrap_err()
        .to_string();
    assert_message(&e, &["input 'nope'", "no such graph input"]);
}

#[test]
fn a_symbolic_non_batch_dim_needs_an_array() {
    let m = model(
        vec![node("r", "Relu", &["x"], &["y"])],
        vec![],
        vec![value_info(
            "x",
            data_type::FLOAT,
            vec![sym("N"), dim(3), sym("H"), sym("W")],
        )],
        &["y"],
    );
    let model = load_ok(&m);
    let e = declared_input_shapes(&model, 1).unwrap_err().to_string();
    assert_message(
        &e,
        &[
            "input 'x'",
            "dimension 2 is symbolic ('H')",
            "only the first (batch)",
        ],
    );
    // The batch alone may be symbolic: it becomes the batch asked for.
    let m = model_with_input(value_info("x", data_type::FLOAT, vec![sym("N"), dim(3)]));
    assert_eq!(
        declared_input_shapes(&load_ok(&m), 4).unwrap(),
        vec![vec![4, 3]]
    );
    // An input without a declared shape cannot be planned from the file alone.
    let m = model_with_input(ValueInfoProto {
        name: "x".into(),
        r#type: None,
    });
    let e = declared_input_shapes(&load_ok(&m), 1)
        .unwrap_err()
        .to_string();
    assert_message(&e, &["input 'x'", "declares no shape"]);
}

fn model_with_input(input: ValueInfoProto) -> ModelProto {
    model(
        vec![node("r", "Relu", &["x"], &["y"])],
        vec![],
        vec![input],
        &["y"],
    )
}

#[test]
fn shapes_that_do_not_fit_the_declared_input_are_refused() {
    let m = single(node("r", "Relu", &["x"], &["y"]), vec![], &[1, 3, 8, 8]);
    let model = load_ok(&m);
    let e = plan(&model, &[vec![1, 3, 8, 9]]).unwrap_err().to_string();
    assert_message(
        &e,
        &[
            "input 'x'",
            "shape [1, 3, 8, 9] does not fit the declared [1, 3, 8, 8]",
        ],
    );
    let e = plan(&model, &[vec![3, 8, 8]]).unwrap_err().to_string();
    assert_message(&e, &["input 'x'", "does not fit"]);
    let e = plan(&model, &[]).unwrap_err().to_string();
    assert_message(&e, &["the model has 1 input(s), 0 given"]);
}

#[test]
fn run_refuses_the_wrong_number_of_inputs_or_values() {
    let m = single(node("r", "Relu", &["x"], &["y"]), vec![], &[1, 2, 2]);
    let (model, p) = plan_declared(&m).unwrap();
    let e = run(&model, &p, &[vec![0.0; 4], vec![0.0; 4]])
        .unwrap_err()
        .to_string();
    assert_message(&e, &["the model has 1 input(s), 2 given"]);
    let e = run(&model, &p, &[] as &[Vec<f32>]).unwrap_err().to_string();
    assert_message(&e, &["the model has 1 input(s), 0 given"]);
    let e = run(&model, &p, &[vec![0.0; 5]]).unwrap_err().to_string();
    assert_message(
        &e,
        &["input 'x'", "5 values given, the shape [1, 2, 2] needs 4"],
    );
    let y = run(&model, &p, &[vec![-1.0, 2.0, -3.0, 4.0]]).unwrap();
    assert_eq!(y[0].data, vec![0.0, 2.0, 0.0, 4.0]);
}

// ---------------------------------------------------------------------------------------------
// Shapes that do not fit, op by op
// ---------------------------------------------------------------------------------------------

#[test]
fn conv_weights_that_do_not_fit_the_input_are_refused() {
    let x = &[1, 4, 6, 6];
    let conv = |group: i64, w: &[usize]| {
        single(
            with(
                node("c1", "Conv", &["x", "w"], &["y"]),
                vec![attr_i("group", group)],
            ),
            vec![filled("w", w)],
            x,
        )
    };
    // 4 channels in 2 groups: each filter sees 2 channels, not 4.
    plan_fails(
        &conv(2, &[4, 4, 3, 3]),
        &[
            "m.onnx",
            "node 'c1' (Conv)",
            "weight shape [4, 4, 3, 3] does not fit the input: 4 channels in 2 group(s) need [4, 2, 3, 3]",
        ],
    );
    // One group, 3 channels in the weight for a 4-channel input.
    plan_fails(
        &conv(1, &[8, 3, 3, 3]),
        &["node 'c1' (Conv)", "need [8, 4, 3, 3]"],
    );
    // A group count that divides neither.
    plan_fails(
        &conv(3, &[6, 1, 3, 3]),
        &[
            "node 'c1' (Conv)",
            "group = 3 must divide the 4 input channels and the 6 filters",
        ],
    );
    // Wrong rank.
    plan_fails(
        &conv(1, &[4, 4, 3]),
        &[
            "node 'c1' (Conv)",
            "weight shape [4, 4, 3] has rank 3",
            "rank 4",
        ],
    );
    // kernel_shape disagreeing with the weight.
    let m = single(
        with(
            node("c1", "Conv", &["x", "w"], &["y"]),
            vec![attr_ints("kernel_shape", &[5, 5])],
        ),
        vec![filled("w", &[2, 4, 3, 3])],
        x,
    );
    plan_fails(
        &m,
        &[
            "node 'c1' (Conv)",
            "kernel_shape [5, 5] does not match the weight shape [2, 4, 3, 3]",
        ],
    );
    // A bias of the wrong length.
    let m = single(
        node("c1", "Conv", &["x", "w", "b"], &["y"]),
        vec![filled("w", &[2, 4, 3, 3]), filled("b", &[3])],
        x,
    );
    plan_fails(
        &m,
        &["node 'c1' (Conv)", "bias 'b' has shape [3]; it must be [2]"],
    );
    // Attribute lists of the wrong length.
    let m = single(
        with(
            node("c1", "Conv", &["x", "w"], &["y"]),
            vec![attr_ints("pads", &[1, 1])],
        ),
        vec![filled("w", &[2, 4, 3, 3])],
        x,
    );
    plan_fails(
        &m,
        &[
            "node 'c1' (Conv)",
            "attribute 'pads' has 2 values; a 2-D window needs 4",
        ],
    );
    // A missing weight input.
    let m = single(node("c1", "Conv", &["x"], &["y"]), vec![], x);
    plan_fails(&m, &["node 'c1' (Conv)", "input 1 is required"]);
}

#[test]
fn a_conv_kernel_larger_than_the_padded_input_is_refused() {
    let m = single(
        with(
            node("c1", "Conv", &["x", "w"], &["y"]),
            vec![attr_ints("pads", &[1, 1, 1, 1])],
        ),
        vec![filled("w", &[1, 2, 5, 5])],
        &[1, 2, 2, 2],
    );
    plan_fails(
        &m,
        &[
            "m.onnx",
            "node 'c1' (Conv)",
            "input [1, 2, 2, 2]",
            "5x5 window",
            "larger than the padded 4x4 input",
        ],
    );
    let m = single(
        with(
            node("c1", "Conv", &["x", "w"], &["y"]),
            vec![attr_ints("dilations", &[3, 3])],
        ),
        vec![filled("w", &[1, 2, 3, 3])],
        &[1, 2, 6, 6],
    );
    plan_fails(
        &m,
        &["node 'c1' (Conv)", "7x7 effective", "padded 6x6 input"],
    );
}

#[test]
fn a_conv_weight_with_a_zero_dimension_is_refused() {
    for w in [[2usize, 2, 0, 3], [0, 2, 3, 3]] {
        let m = single(
            node("c1", "Conv", &["x", "w"], &["y"]),
            vec![init("w", &w, &[])],
            &[1, 2, 4, 4],
        );
        plan_fails(&m, &["node 'c1' (Conv)"]);
    }
}

#[test]
fn pooling_windows_that_do_not_fit_are_refused() {
    let pool = |op: &str, attrs| {
        single(
            with(node("p", op, &["x"], &["y"]), attrs),
            vec![],
            &[1, 2, 3, 3],
        )
    };
    plan_fails(
        &pool("MaxPool", vec![attr_ints("kernel_shape", &[4, 4])]),
        &["node 'p' (MaxPool)", "larger than the padded input (3)"],
    );
    plan_fails(
        &pool("MaxPool", vec![]),
        &["node 'p' (MaxPool)", "attribute 'kernel_shape' is required"],
    );
    plan_fails(
        &pool("AveragePool", vec![attr_ints("kernel_shape", &[2])]),
        &[
            "node 'p' (AveragePool)",
            "kernel_shape [2] does not match the 2-D input",
        ],
    );
    plan_fails(
        &pool(
            "MaxPool",
            vec![
                attr_ints("kernel_shape", &[2, 2]),
                attr_ints("strides", &[1]),
            ],
        ),
        &["node 'p' (MaxPool)", "attribute 'strides' has 1 values"],
    );
    let m = single(
        node("g", "GlobalAveragePool", &["x"], &["y"]),
        vec![],
        &[1, 2],
    );
    plan_fails(&m, &["node 'g' (GlobalAveragePool)", "[N, C, spatial…]"]);
}

#[test]
fn three_d_spatial_conv_and_maxpool_are_refused() {
    let x = &[1, 1, 4, 4, 4];
    let m = single(
        node("c3", "Conv", &["x", "w"], &["y"]),
        vec![filled("w", &[1, 1, 2, 2, 2])],
        x,
    );
    plan_fails(
        &m,
        &[
            "m.onnx",
            "node 'c3' (Conv)",
            "[1, 1, 4, 4, 4] is 3-D spatial",
            "1-D and 2-D",
        ],
    );
    let m = single(
        with(
            node("mp3", "MaxPool", &["x"], &["y"]),
            vec![attr_ints("kernel_shape", &[2, 2, 2])],
        ),
        vec![],
        x,
    );
    plan_fails(&m, &["node 'mp3' (MaxPool)", "3-D spatial"]);
    // Rank 2 is not an image at all.
    let m = single(
        node("c2", "Conv", &["x", "w"], &["y"]),
        vec![filled("w", &[1, 1])],
        &[1, 4],
    );
    plan_fails(&m, &["node 'c2' (Conv)", "must be [N, C, H, W]"]);
}

#[test]
fn gemm_with_incompatible_k_is_refused() {
    let m = single(
        with(
            node("fc", "Gemm", &["x", "w", "b"], &["y"]),
            vec![attr_i("transB", 1)],
        ),
        vec![filled("w", &[10, 7]), filled("b", &[10])],
        &[1, 8],
    );
    plan_fails(
        &m,
        &[
            "m.onnx",
            "node 'fc' (Gemm)",
            "A [1, 8] and B [10, 7] (transposed) do not multiply: 8 != 7",
        ],
    );
    let m = single(
        node("fc", "Gemm", &["x", "w", "b"], &["y"]),
        vec![filled("w", &[8, 10]), filled("b", &[3, 10])],
        &[1, 8],
    );
    plan_fails(
        &m,
        &[
            "node 'fc' (Gemm)",
            "C 'b' of shape [3, 10] does not broadcast to [1, 10]",
        ],
    );
    let m = single(
        node("fc", "Gemm", &["x", "w"], &["y"]),
        vec![filled("w", &[8, 10])],
        &[1, 2, 4],
    );
    plan_fails(&m, &["node 'fc' (Gemm)", "must both be matrices"]);
}

#[test]
fn matmul_with_mismatched_inner_dims_is_refused() {
    let m = single(
        node("mm", "MatMul", &["x", "w"], &["y"]),
        vec![filled("w", &[5, 3])],
        &[2, 4],
    );
    plan_fails(
        &m,
        &[
            "m.onnx",
            "node 'mm' (MatMul)",
            "[2, 4] x [5, 3]: inner sizes 4 and 5 differ",
        ],
    );
    let m = single(
        node("mm", "MatMul", &["x", "w"], &["y"]),
        vec![filled("w", &[3, 4, 2])],
        &[2, 3, 4],
    );
    plan_fails(
        &m,
        &[
            "node 'mm' (MatMul)",
            "batch dims of [2, 3, 4] and [3, 4, 2] do not broadcast",
        ],
    );
}

#[test]
fn add_and_mul_with_non_broadcastable_shapes_are_refused() {
    for op in ["Add", "Mul"] {
        let m = single(
            node("e", op, &["x", "b"], &["y"]),
            vec![filled("b", &[3])],
            &[1, 2, 4],
        );
        plan_fails(
            &m,
            &[
                &format!("node 'e' ({op})"),
                "shapes [1, 2, 4] and [3] do not broadcast",
            ],
        );
    }
}

#[test]
fn a_float_value_where_an_integer_constant_is_needed_is_refused() {
    // Reshape's shape computed by a node (not a constant).
    let m = model(
        vec![
            node("s", "Relu", &["t"], &["shape"]),
            node("rs", "Reshape", &["x", "shape"], &["y"]),
        ],
        vec![],
        vec![float_io("x", &[1, 6]), float_io("t", &[2])],
        &["y"],
    );
    plan_fails(
        &m,
        &[
            "m.onnx",
            "node 'rs' (Reshape)",
            "the shape ('shape') must be an INT64 constant",
        ],
    );
    // An integer constant fed where data is expected.
    let m = single(
        node("a", "Add", &["x", "k"], &["y"]),
        vec![init_i64("k", &[1, 2])],
        &[1, 2],
    );
    plan_fails(
        &m,
        &[
            "node 'a' (Add)",
            "input 'k' is an integer or boolean value known when planning, used here as data",
        ],
    );
}

#[test]
fn reshape_to_an_impossible_target_is_refused() {
    let reshape = |target: &[i64]| {
        single(
            node("rs", "Reshape", &["x", "shape"], &["y"]),
            vec![init_i64("shape", target)],
            &[1, 2, 3, 4],
        )
    };
    plan_fails(
        &reshape(&[5, -1]),
        &[
            "node 'rs' (Reshape)",
            "cannot reshape [1, 2, 3, 4] (24 values) to [5, -1]",
        ],
    );
    plan_fails(
        &reshape(&[7, 7]),
        &["node 'rs' (Reshape)", "to [7, 7] (49 values)"],
    );
    plan_fails(
        &reshape(&[-1, -1]),
        &["node 'rs' (Reshape)", "one -1 at most"],
    );
    plan_fails(
        &reshape(&[-2, 12]),
        &["node 'rs' (Reshape)", "no other negatives"],
    );
    plan_fails(
        &reshape(&[1, 2, 3, 4, 0]),
        &["node 'rs' (Reshape)", "0 at position 4 copies a dimension"],
    );
    let m = single(node("rs", "Reshape", &["x"], &["y"]), vec![], &[1, 2, 3, 4]);
    plan_fails(
        &m,
        &["node 'rs' (Reshape)", "input 1 (the shape) is required"],
    );
}

#[test]
fn concat_with_mismatched_dims_is_refused() {
    let m = model(
        vec![with(
            node("cat", "Concat", &["x", "z"], &["y"]),
            vec![attr_i("axis", 1)],
        )],
        vec![],
        vec![float_io("x", &[1, 2, 4, 4]), float_io("z", &[1, 3, 4, 5])],
        &["y"],
    );
    plan_fails(
        &m,
        &[
            "m.onnx",
            "node 'cat' (Concat)",
            "input 1 of shape [1, 3, 4, 5] does not match [1, 2, 4, 4] outside axis 1",
        ],
    );
    let m = model(
        vec![with(
            node("cat", "Concat", &["x", "z"], &["y"]),
            vec![attr_i("axis", 1)],
        )],
        vec![],
        vec![float_io("x", &[1, 2, 4, 4]), float_io("z", &[1, 3, 4])],
        &["y"],
    );
    plan_fails(&m, &["node 'cat' (Concat)", "input 1 of shape [1, 3, 4]"]);
    let m = model(
        vec![with(
            node("cat", "Concat", &["x", "x"], &["y"]),
            vec![attr_i("axis", 4)],
        )],
        vec![],
        vec![float_io("x", &[1, 2, 4, 4])],
        &["y"],
    );
    plan_fails(
        &m,
        &[
            "node 'cat' (Concat)",
            "axis 4 is out of range for a rank-4 input",
        ],
    );
}

#[test]
fn pad_with_the_wrong_number_of_pads_is_refused() {
    let m = single(
        node("pad", "Pad", &["x", "pads"], &["y"]),
        vec![init_i64("pads", &[0, 0, 1])],
        &[1, 2, 4, 4],
    );
    plan_fails(
        &m,
        &[
            "m.onnx",
            "node 'pad' (Pad)",
            "pads has 3 values; 4 axes need 8",
        ],
    );
    let m = single(
        node("pad", "Pad", &["x", "pads"], &["y"]),
        vec![init_i64("pads", &[0, 0, -5, 0, 0, 0, 0, 0])],
        &[1, 2, 4, 4],
    );
    plan_fails(&m, &["node 'pad' (Pad)", "crop axis 2", "below zero"]);
    let m = single(node("pad", "Pad", &["x"], &["y"]), vec![], &[1, 2, 4, 4]);
    plan_fails(&m, &["node 'pad' (Pad)", "input 1 (pads) is required"]);
    // Pads so large that the size overflows.
    let m = single(
        node("pad", "Pad", &["x", "pads"], &["y"]),
        vec![init_i64("pads", &[0, 0, i64::MAX, 0, 0, 0, i64::MAX, 0])],
        &[1, 2, 4, 4],
    );
    plan_fails(&m, &["node 'pad' (Pad)"]);
    let m = single(
        node("pad", "Pad", &["x", "pads"], &["y"]),
        vec![init_i64("pads", &[0, 0, 1 << 40, 1 << 40, 0, 0, 0, 0])],
        &[1, 2, 4, 4],
    );
    plan_fails(&m, &["node 'pad' (Pad)"]);
}

#[test]
fn softmax_and_flatten_axes_out_of_range_are_refused() {
    let m = single(
        with(
            node("sm", "Softmax", &["x"], &["y"]),
            vec![attr_i("axis", 2)],
        ),
        vec![],
        &[1, 10],
    );
    plan_fails(
        &m,
        &[
            "m.onnx",
            "node 'sm' (Softmax)",
            "axis 2 is out of range for a rank-2 input",
        ],
    );
    let m = single(
        with(
            node("sm", "Softmax", &["x"], &["y"]),
            vec![attr_i("axis", -3)],
        ),
        vec![],
        &[1, 10],
    );
    plan_fails(&m, &["node 'sm' (Softmax)", "axis -3 is out of range"]);
    let m = single(
        with(
            node("f", "Flatten", &["x"], &["y"]),
            vec![attr_i("axis", 5)],
        ),
        vec![],
        &[1, 2, 3, 4],
    );
    plan_fails(&m, &["node 'f' (Flatten)", "axis 5 is out of range"]);
}

#[test]
fn batch_normalization_in_training_mode_or_with_wrong_statistics_is_refused() {
    let bn = |attrs, outputs: &[&str], mean: &[usize]| {
        single(
            with(
                node(
                    "bn",
                    "BatchNormalization",
                    &["x", "s", "b", "m", "v"],
                    outputs,
                ),
                attrs,
            ),
            vec![
                filled("s", &[2]),
                filled("b", &[2]),
                filled("m", mean),
                init("v", &[2], &[1.0, 1.0]),
            ],
            &[1, 2, 4, 4],
        )
    };
    load_fails(
        &bn(vec![attr_i("training_mode", 1)], &["y"], &[2]),
        &[
            "m.onnx",
            "node 'bn' (BatchNormalization)",
            "training_mode = 1",
            "not supported",
        ],
    );
    load_fails(
        &bn(vec![], &["y", "running_mean", "running_var"], &[2]),
        &["node 'bn' (BatchNormalization)", "only in training mode"],
    );
    plan_fails(
        &bn(vec![], &["y"], &[3]),
        &[
            "node 'bn' (BatchNormalization)",
            "mean ('m') has shape [3]; the input's 2 channels need [2]",
        ],
    );
    // The statistics as they should be: 4 * 2 parameters, 4 of them non-trainable.
    let (_, p) = plan_declared(&bn(vec![], &["y"], &[2])).unwrap();
    let n = &p.graph.nodes[0];
    assert_eq!(
        (
            n.param_count,
            n.trainable,
            n.non_trainable,
            n.formula_text()
        ),
        (8, 4, 4, "4*2".to_string())
    );
}

#[test]
fn dropout_keeps_everything_and_its_mask_is_all_true_but_training_mode_is_refused() {
    let x = vec![1.0, -2.0, 3.0, -4.0];
    // With the mask as a graph output: every element kept (1.0, the graph's true).
    let m = model_opset(
        13,
        vec![node("drop", "Dropout", &["x"], &["y", "mask"])],
        vec![],
        vec![float_io("x", &[1, 4])],
        &["y", "mask"],
    );
    let (model, p) = plan_declared(&m).unwrap();
    let out = run(&model, &p, std::slice::from_ref(&x)).unwrap();
    assert_eq!(out[0].data, x);
    assert_eq!(out[1].data, vec![1.0; 4]);
    // Without the mask it is an identity.
    let m = single(node("drop", "Dropout", &["x"], &["y"]), vec![], &[1, 4]);
    let (model, p) = plan_declared(&m).unwrap();
    assert_eq!(p.graph.nodes[0].op, Op::Alias);
    let y = run(&model, &p, std::slice::from_ref(&x)).unwrap();
    assert_eq!(y[0].data, x);
    // training_mode = true (a BOOL constant) is refused by name.
    let training = TensorProto {
        dims: vec![],
        data_type: 9,
        name: "t".into(),
        int32_data: vec![1],
        ..Default::default()
    };
    let m = model_opset(
        13,
        vec![node("drop", "Dropout", &["x", "", "t"], &["y"])],
        vec![training],
        vec![float_io("x", &[1, 4])],
        &["y"],
    );
    plan_fails(&m, &["node 'drop' (Dropout)", "training mode"]);
}

#[test]
fn zero_sized_inputs_do_not_panic() {
    // Whatever the engine decides about empty tensors, it must not panic.
    let cases: Vec<(NodeProto, Vec<TensorProto>, Vec<i64>)> = vec![
        (
            with(
                node("mp", "MaxPool", &["x"], &["y"]),
                vec![
                    attr_ints("kernel_shape", &[1, 1]),
                    attr_ints("pads", &[1, 1, 1, 1]),
                ],
            ),
            vec![],
            vec![1, 2, 0, 0],
        ),
        (
            with(
                node("ap", "AveragePool", &["x"], &["y"]),
                vec![
                    attr_ints("kernel_shape", &[2, 2]),
                    attr_ints("pads", &[1, 1, 1, 1]),
                    attr_i("count_include_pad", 1),
                ],
            ),
            vec![],
            vec![1, 2, 0, 3],
        ),
        (
            node("g", "GlobalAveragePool", &["x"], &["y"]),
            vec![],
            vec![1, 2, 0, 0],
        ),
        (
            node("c", "Conv", &["x", "w"], &["y"]),
            vec![filled("w", &[2, 2, 1, 1])],
            vec![0, 2, 3, 3],
        ),
        (
            with(
                node("sm", "Softmax", &["x"], &["y"]),
                vec![attr_i("axis", 1)],
            ),
            vec![],
            vec![1, 0, 3],
        ),
        (
            node("mm", "MatMul", &["x", "w"], &["y"]),
            vec![filled("w", &[0, 3])],
            vec![2, 0],
        ),
        (
            node(
                "bn",
                "BatchNormalization",
                &["x", "s", "b", "m", "v"],
                &["y"],
            ),
            vec![
                init("s", &[0], &[]),
                init("b", &[0], &[]),
                init("m", &[0], &[]),
                init("v", &[0], &[]),
            ],
            vec![1, 0, 2, 2],
        ),
        (
            with(
                node("cat", "Concat", &["x", "x"], &["y"]),
                vec![attr_i("axis", 0)],
            ),
            vec![],
            vec![0, 3],
        ),
        (
            node("pad", "Pad", &["x", "pads"], &["y"]),
            vec![init_i64("pads", &[0, 1, 0, 1])],
            vec![0, 3],
        ),
    ];
    for (n, inits, x) in cases {
        let label = n.name.clone();
        let m = single(n, inits, &x);
        let result = std::panic::catch_unwind(|| {
            let (model, p) = plan_declared(&m)?;
            let len: usize = p.inputs()[0].1.iter().product();
            run(&model, &p, &[vec![0.5; len]]).map_err(|e| e.to_string())?;
            Ok::<(), String>(())
        });
        match result {
            Ok(Ok(())) => println!("{label} {x:?}: runs"),
            Ok(Err(e)) => {
                println!("{label} {x:?}: {e}");
                assert_message(&e, &[&format!("'{label}'")]);
            }
            Err(_) => panic!("node {label} panicked on input {x:?}"),
        }
    }
}

#[test]
fn scalar_inputs_do_not_panic() {
    // A rank-0 input through every op that could see one: refused with the node named, or run.
    let scalar = || vec![value_info("x", data_type::FLOAT, vec![])];
    let cases: Vec<(NodeProto, Vec<TensorProto>)> = vec![
        (
            node("pad", "Pad", &["x", "pads"], &["y"]),
            vec![init_i64("pads", &[])],
        ),
        (node("sm", "Softmax", &["x"], &["y"]), vec![]),
        (
            with(
                node("cat", "Concat", &["x", "x"], &["y"]),
                vec![attr_i("axis", 0)],
            ),
            vec![],
        ),
        (
            with(
                node("f", "Flatten", &["x"], &["y"]),
                vec![attr_i("axis", 0)],
            ),
            vec![],
        ),
        (node("mm", "MatMul", &["x", "x"], &["y"]), vec![]),
        (node("add", "Add", &["x", "x"], &["y"]), vec![]),
        (node("g", "GlobalMaxPool", &["x"], &["y"]), vec![]),
        (node("c", "Conv", &["x", "x"], &["y"]), vec![]),
        (node("gemm", "Gemm", &["x", "x"], &["y"]), vec![]),
        (
            node(
                "bn",
                "BatchNormalization",
                &["x", "x", "x", "x", "x"],
                &["y"],
            ),
            vec![],
        ),
        (
            with(
                node("mp", "MaxPool", &["x"], &["y"]),
                vec![attr_ints("kernel_shape", &[1])],
            ),
            vec![],
        ),
        (
            node("rs", "Reshape", &["x", "shape"], &["y"]),
            vec![init_i64("shape", &[1, 1])],
        ),
        (node("cl", "Clip", &["x", "x", "x"], &["y"]), vec![]),
    ];
    for (n, inits) in cases {
        let label = n.name.clone();
        let m = model(vec![n], inits, scalar(), &["y"]);
        let result = std::panic::catch_unwind(|| {
            let (model, p) = plan_declared(&m)?;
            let y = run(&model, &p, &[vec![2.5]]).map_err(|e| e.to_string())?;
            Ok::<Vec<f32>, String>(y[0].data.clone())
        });
        match result {
            Ok(Ok(y)) => println!("{label}: runs, {y:?}"),
            Ok(Err(e)) => {
                println!("{label}: {e}");
                assert_message(&e, &[&format!("'{label}'")]);
            }
            Err(_) => panic!("node {label} panicked on a scalar input"),
        }
    }
}

/// Loads, plans at the declared shapes and runs on zeros, skipping absurdly large tensors (an
/// allocation failure aborts; it cannot be caught).
fn load_plan_run(bytes: &[u8]) -> Result<(), String> {
    let model = OnnxModel::from_bytes(bytes, "f.onnx", "f").map_err(|e| e.to_string())?;
    let shapes = declared_input_shapes(&model, 1).map_err(|e| e.to_string())?;
    let small = |s: &[usize]| {
        s.iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .is_some_and(|n| n <= 1 << 20)
    };
    if !shapes.iter().all(|s| small(s)) {
        return Ok(());
    }
    let p = plan(&model, &shapes).map_err(|e| e.to_string())?;
    if !p.graph.nodes.iter().all(|n| small(&n.output_shape)) {
        return Ok(());
    }
    let inputs: Vec<Vec<f32>> = shapes
        .iter()
        .map(|s| vec![0.25f32; s.iter().product()])
        .collect();
    run(&model, &p, &inputs).map_err(|e| e.to_string())?;
    Ok(())
}

#[test]
fn mutated_model_files_never_panic() {
    // Real node-test files and models built here, with random bytes flipped, overwritten or
    // cut off: each must load, plan and run, or be refused with one line.
    let node_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/onnx/node");
    let mut files: Vec<(String, Vec<u8>)> = [
        "test_conv_with_strides_and_asymmetric_padding",
        "test_maxpool_2d_pads",
        "test_averagepool_2d_ceil",
        "test_gemm_all_attributes",
        "test_batchnorm_example",
        "test_concat_3d_axis_1",
        "test_softmax_axis_1",
        "test_matmul_4d",
        "test_clip",
        "test_flatten_axis2",
        "test_globalmaxpool",
    ]
    .iter()
    .map(|n| {
        let bytes = std::fs::read(node_dir.join(n).join("model.onnx")).unwrap();
        (n.to_string(), bytes)
    })
    .collect();
    files.push(("tiny".into(), tiny().model.encode_to_vec()));
    files.push((
        "pad".into(),
        single(
            node("pad", "Pad", &["x", "pads"], &["y"]),
            vec![init_i64("pads", &[0, 0, 1, 2, 0, 0, 2, 1])],
            &[1, 2, 3, 3],
        )
        .encode_to_vec(),
    ));
    files.push((
        "reshape".into(),
        single(
            node("rs", "Reshape", &["x", "shape"], &["y"]),
            vec![init_i64("shape", &[2, -1])],
            &[1, 2, 3, 4],
        )
        .encode_to_vec(),
    ));
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut refused, mut ran) = (0, 0);
    for (name, original) in &files {
        assert!(load_plan_run(original).is_ok(), "{name} runs unmutated");
        for _ in 0..300 {
            let mut b = original.clone();
            for _ in 0..1 + next() % 3 {
                let i = (next() % b.len() as u64) as usize;
                match next() % 4 {
                    0 => b[i] ^= 1 << (next() % 8),
                    1 => b[i] = next() as u8,
                    2 => b[i] = b[i].wrapping_add(1),
                    _ => b.truncate(i.max(1)),
                }
            }
            match std::panic::catch_unwind(|| load_plan_run(&b)) {
                Ok(Ok(())) => ran += 1,
                Ok(Err(e)) => {
                    assert_eq!(e.lines().count(), 1, "{name}: {e:?}");
                    refused += 1;
                }
                Err(_) => panic!("{name}: mutated bytes panicked: {b:?}"),
            }
        }
    }
    println!("{refused} mutated files refused, {ran} loaded, planned and ran");
    assert!(refused > 0 && ran > 0);
}

#[test]
fn models_with_odd_attribute_and_dim_values_never_panic() {
    // Structured mutations: attribute integers, initializer and input dims replaced by edge
    // values (negative, zero, one, huge), op types swapped.
    const ODD: [i64; 10] = [-3, -1, 0, 1, 2, 3, 7, 1 << 20, 1 << 40, i64::MAX];
    const OPS: [&str; 8] = [
        "Conv",
        "MaxPool",
        "AveragePool",
        "Gemm",
        "Flatten",
        "Softmax",
        "Concat",
        "Pad",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let bases = [
        tiny().model,
        single(
            with(
                node("mp", "MaxPool", &["x"], &["y"]),
                vec![
                    attr_ints("kernel_shape", &[2, 2]),
                    attr_ints("strides", &[2, 2]),
                    attr_ints("pads", &[0, 0, 1, 1]),
                    attr_ints("dilations", &[1, 1]),
                    attr_i("ceil_mode", 1),
                ],
            ),
            vec![],
            &[1, 2, 5, 5],
        ),
        single(
            node("pad", "Pad", &["x", "pads"], &["y"]),
            vec![init_i64("pads", &[0, 0, 1, 2, 0, 0, 2, 1])],
            &[1, 2, 3, 3],
        ),
        single(
            with(
                node("cat", "Concat", &["x", "x"], &["y"]),
                vec![attr_i("axis", 1)],
            ),
            vec![],
            &[1, 2, 3],
        ),
    ];
    let mut outcomes = (0, 0);
    for base in &bases {
        for _ in 0..400 {
            let mut m = base.clone();
            let g = m.graph.as_mut().unwrap();
            for _ in 0..1 + next() % 3 {
                let odd = ODD[(next() % ODD.len() as u64) as usize];
                let ni = (next() % g.node.len() as u64) as usize;
                match next() % 5 {
                    0 => {
                        let n = &mut g.node[ni];
                        if let Some(a) = n.attribute.first_mut() {
                            a.i = odd;
                            if let Some(v) = a.ints.first_mut() {
                                *v = odd;
                            }
                        }
                    }
                    1 => {
                        if let Some(t) = g.initializer.first_mut() {
                            if let Some(d) = t.dims.last_mut() {
                                *d = odd;
                            }
                            if let Some(v) = t.int64_data.first_mut() {
                                *v = odd;
                            }
                        }
                    }
                    2 => {
                        let input = &mut g.input[0];
                        if let Some(TypeProto {
                            tensor_type: Some(TypeProtoTensor { shape: Some(s), .. }),
                            ..
                        }) = input.r#type.as_mut()
                        {
                            let di = (next() % s.dim.len() as u64) as usize;
                            s.dim[di] = dim(odd);
                        }
                    }
                    3 => g.node[ni].op_type = OPS[(next() % OPS.len() as u64) as usize].into(),
                    _ => {
                        let n = &mut g.node[ni];
                        n.attribute.push(attr_ints("pads", &[odd, 0, odd, 1]));
                    }
                }
            }
            let bytes = m.encode_to_vec();
            match std::panic::catch_unwind(|| load_plan_run(&bytes)) {
                Ok(Ok(())) => outcomes.0 += 1,
                Ok(Err(e)) => {
                    assert_eq!(e.lines().count(), 1, "{e:?}");
                    outcomes.1 += 1;
                }
                Err(_) => panic!("panicked on {m:?}"),
            }
        }
    }
    println!("{} ran, {} refused", outcomes.0, outcomes.1);
}

// ---------------------------------------------------------------------------------------------
// A valid network, checked by hand
// ---------------------------------------------------------------------------------------------

/// The tiny network and the values it was built from.
struct Tiny {
    model: ModelProto,
    x: Vec<f32>,
    w1: Vec<f32>,
    b1: Vec<f32>,
    wf: Vec<f32>,
    bf: Vec<f32>,
}

/// Input `[1, 2, 5, 5]`; conv1 3x3 pad 1, 2 -> 4 channels (+bias); relu (fused); global
/// average pool; flatten; Gemm 4 -> 3 (transB, +bias); softmax.
fn tiny() -> Tiny {
    let x: Vec<f32> = (0..50).map(|i| ((i * 7) % 11) as f32 * 0.1 - 0.5).collect();
    let w1: Vec<f32> = (0..72)
        .map(|i| ((i * 5) % 13) as f32 * 0.05 - 0.3)
        .collect();
    let b1 = vec![0.1, -0.2, 0.05, -1.5];
    let wf: Vec<f32> = (0..12).map(|i| ((i * 3) % 5) as f32 * 0.4 - 0.8).collect();
    let bf = vec![0.3, -0.1, 0.0];
    let m = model(
        vec![
            with(
                node("conv1", "Conv", &["x", "w1", "b1"], &["c1"]),
                vec![
                    attr_ints("kernel_shape", &[3, 3]),
                    attr_ints("pads", &[1, 1, 1, 1]),
                ],
            ),
            node("relu1", "Relu", &["c1"], &["r1"]),
            node("gap", "GlobalAveragePool", &["r1"], &["g"]),
            node("flat", "Flatten", &["g"], &["f"]),
            with(
                node("fc", "Gemm", &["f", "wf", "bf"], &["logits"]),
                vec![attr_i("transB", 1)],
            ),
            node("prob", "Softmax", &["logits"], &["y"]),
        ],
        vec![
            init("w1", &[4, 2, 3, 3], &w1),
            init("b1", &[4], &b1),
            init("wf", &[3, 4], &wf),
            init("bf", &[3], &bf),
        ],
        vec![value_info(
            "x",
            data_type::FLOAT,
            vec![sym("N"), dim(2), dim(5), dim(5)],
        )],
        &["y"],
    );
    Tiny {
        model: m,
        x,
        w1,
        b1,
        wf,
        bf,
    }
}

/// Direct (not im2col) convolution, 3x3, padding 1, stride 1: `[cin, h, w]` -> `[cout, h, w]`.
fn direct_conv(x: &[f32], cin: usize, h: usize, w: usize, wt: &[f32], b: &[f32]) -> Vec<f32> {
    let cout = b.len();
    let mut out = vec![0.0f32; cout * h * w];
    for o in 0..cout {
        for y in 0..h {
            for xx in 0..w {
                let mut acc = b[o];
                for c in 0..cin {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let iy = y as isize + ky as isize - 1;
                            let ix = xx as isize + kx as isize - 1;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            acc += wt[((o * cin + c) * 3 + ky) * 3 + kx]
                                * x[(c * h + iy as usize) * w + ix as usize];
                        }
                    }
                }
                out[(o * h + y) * w + xx] = acc;
            }
        }
    }
    out
}

#[test]
fn a_tiny_network_plans_counts_and_runs_as_computed_by_hand() {
    let Tiny {
        model: m,
        x,
        w1,
        b1,
        wf,
        bf,
    } = tiny();
    let (model, p) = plan_declared(&m).unwrap();
    assert_eq!(model.name, "g");
    assert_eq!(model.opset, 13);
    type Row<'a> = (&'a str, &'a str, Vec<usize>, u64, String, u64);
    let rows: Vec<Row> = p
        .graph
        .nodes
        .iter()
        .map(|n| {
            (
                n.name.as_str(),
                n.type_name.as_str(),
                n.output_shape.clone(),
                n.param_count,
                n.formula_text(),
                n.macs,
            )
        })
        .collect();
    // conv1: 4 filters of 2*3*3 weights + 4 biases = 76; MACs 4*2*3*3 per position, 25 positions.
    // fc: 4*3 weights + 3 biases = 15; MACs 1*4*3.
    assert_eq!(
        rows,
        vec![
            (
                "conv1",
                "Conv",
                vec![1, 4, 5, 5],
                76,
                "4*2*3*3 + 4".to_string(),
                1_800
            ),
            ("relu1", "Relu", vec![1, 4, 5, 5], 0, "-".to_string(), 0),
            (
                "gap",
                "GlobalAveragePool",
                vec![1, 4, 1, 1],
                0,
                "-".to_string(),
                0
            ),
            ("flat", "Flatten", vec![1, 4], 0, "-".to_string(), 0),
            ("fc", "Gemm", vec![1, 3], 15, "4*3 + 3".to_string(), 12),
            ("prob", "Softmax", vec![1, 3], 0, "-".to_string(), 0),
        ]
    );
    assert_eq!(p.graph.total_params(), 91);
    assert_eq!(p.graph.trainable_params(), 91);
    assert_eq!(p.graph.non_trainable_params(), 0);
    assert_eq!(model.initializer_float_elements(), 91);
    assert_eq!(p.graph.total_macs(), 1_812);
    assert!(p.unused_initializers.is_empty());
    let out = p.graph.outputs[0];
    assert_eq!(
        (
            p.graph.values[out].name.as_str(),
            &p.graph.values[out].shape
        ),
        ("y", &vec![1, 3])
    );
    // The Relu is folded into the convolution when compiled; the Gemm runs on the dense
    // kernel.
    assert!(matches!(
        p.graph.nodes[0].op,
        Op::Conv {
            epilogue: Epilogue {
                act: Activation::Linear,
                softmax: false
            },
            batch: 1,
            ..
        }
    ));
    let compiled = cnn_onnx::compile(&model, &p);
    assert_eq!(compiled.nodes[0].fused, Some(Activation::Relu));
    assert!(compiled.nodes[0].packed[0].is_some());
    assert!(compiled.nodes[1].alias);
    assert!(matches!(
        p.graph.nodes[4].op,
        Op::Dense {
            m: 1,
            k: 4,
            n: 3,
            ..
        }
    ));

    // By hand: direct convolution, relu, mean over the 25 positions, dense, softmax.
    let conv = direct_conv(&x, 2, 5, 5, &w1, &b1);
    let pooled: Vec<f32> = conv
        .chunks(25)
        .map(|plane| plane.iter().map(|v| v.max(0.0)).sum::<f32>() / 25.0)
        .collect();
    // Channel 3's bias of -1.5 makes some of its outputs negative: the Relu matters.
    assert!(conv.iter().any(|&v| v < 0.0));
    let logits: Vec<f32> = (0..3)
        .map(|o| bf[o] + (0..4).map(|i| wf[o * 4 + i] * pooled[i]).sum::<f32>())
        .collect();
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let exp: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let total: f32 = exp.iter().sum();
    let want: Vec<f32> = exp.iter().map(|e| e / total).collect();

    let y = run(&model, &p, std::slice::from_ref(&x)).unwrap();
    assert_eq!(y.len(), 1);
    assert_eq!(y[0].shape, vec![1, 3]);
    for (g, w) in y[0].data.iter().zip(&want) {
        assert!((g - w).abs() < 1e-5, "got {:?}, want {want:?}", y[0].data);
    }
    // The same network planned at batch 2 runs both images alike.
    let p2 = plan(&model, &[vec![2, 2, 5, 5]]).unwrap();
    assert_eq!(p2.graph.total_macs(), 2 * 1_800 + 2 * 12);
    assert_eq!(p2.graph.total_params(), 91);
    let mut x2 = x.clone();
    x2.extend_from_slice(&x);
    let y2 = run(&model, &p2, &[x2]).unwrap();
    assert_eq!(y2[0].shape, vec![2, 3]);
    for (g, w) in y2[0].data.iter().zip(want.iter().chain(&want)) {
        assert!((g - w).abs() < 1e-5, "{:?}", y2[0].data);
    }
}

#[test]
fn a_relu_reading_a_graph_output_is_not_fused() {
    // conv1's output is also a graph output: the Relu must run on its own.
    let Tiny {
        model: mut m,
        x,
        w1,
        b1,
        ..
    } = tiny();
    m.graph.as_mut().unwrap().output.push(ValueInfoProto {
        name: "c1".into(),
        r#type: None,
    });
    let (model, p) = plan_declared(&m).unwrap();
    let compiled = cnn_onnx::compile(&model, &p);
    assert_eq!(compiled.nodes[0].fused, None);
    assert!(!compiled.nodes[1].alias);
    assert!(matches!(p.graph.nodes[1].op, Op::Unary(_)));
    let y = run(&model, &p, std::slice::from_ref(&x)).unwrap();
    let conv = direct_conv(&x, 2, 5, 5, &w1, &b1);
    assert_eq!(y[1].shape, vec![1, 4, 5, 5]);
    for (g, w) in y[1].data.iter().zip(&conv) {
        assert!((g - w).abs() < 1e-5, "pre-activation output differs");
    }
    assert!(y[1].data.iter().any(|&v| v < 0.0));
}

#[test]
fn a_weight_shared_by_two_convolutions_is_counted_once() {
    // x [1, 2, 4, 4] -> conv_a (w, b) -> relu -> conv_b (w, b): 2*2*1*1 + 2 = 6 parameters.
    let w = vec![1.0, -1.0, 0.5, 2.0];
    let b = vec![0.25, -0.5];
    let m = model(
        vec![
            node("conv_a", "Conv", &["x", "w", "b"], &["a"]),
            node("relu", "Relu", &["a"], &["r"]),
            node("conv_b", "Conv", &["r", "w", "b"], &["y"]),
        ],
        vec![init("w", &[2, 2, 1, 1], &w), init("b", &[2], &b)],
        vec![float_io("x", &[1, 2, 4, 4])],
        &["y"],
    );
    let (model, p) = plan_declared(&m).unwrap();
    let counts: Vec<(u64, String, u64)> = p
        .graph
        .nodes
        .iter()
        .map(|n| (n.param_count, n.formula_text(), n.macs))
        .collect();
    assert_eq!(
        counts,
        vec![
            (6, "2*2*1*1 + 2".to_string(), 64),
            (0, "-".to_string(), 0),
            (0, "-".to_string(), 64),
        ]
    );
    assert_eq!(p.graph.total_params(), 6);
    assert_eq!(model.initializer_float_elements(), 6);
    assert_eq!(p.graph.nodes[0].params.len(), 2);
    assert!(p.graph.nodes[2].params.is_empty());
    // 1x1 convolutions by hand: y[o] = sum_c w[o][c] * x[c] + b[o].
    let x: Vec<f32> = (0..32).map(|i| i as f32 * 0.125 - 2.0).collect();
    let one = |inp: &[f32], relu: bool| -> Vec<f32> {
        let mut out = vec![0.0f32; 32];
        for o in 0..2 {
            for i in 0..16 {
                let v = b[o] + w[o * 2] * inp[i] + w[o * 2 + 1] * inp[16 + i];
                out[o * 16 + i] = if relu { v.max(0.0) } else { v };
            }
        }
        out
    };
    let want = one(&one(&x, true), false);
    let y = run(&model, &p, &[x]).unwrap();
    assert_eq!(y[0].shape, vec![1, 2, 4, 4]);
    for (g, w) in y[0].data.iter().zip(&want) {
        assert!((g - w).abs() < 1e-5, "got {:?}, want {want:?}", y[0].data);
    }
}

#[test]
fn an_initializer_no_node_reads_is_reported_unused() {
    let m = single(
        node("r", "Relu", &["x"], &["y"]),
        vec![filled("orphan", &[3, 3])],
        &[1, 2],
    );
    let (model, p) = plan_declared(&m).unwrap();
    assert_eq!(p.graph.total_params(), 0);
    assert_eq!(p.unused_initializers, vec![("orphan".to_string(), 9)]);
    assert_eq!(model.initializer_float_elements(), 9);
}

#[test]
fn an_opset_outside_7_to_28_is_one_clear_error() {
    let relu = || vec![node("r", "Relu", &["x"], &["y"])];
    for opset in [1, 6, 29, 99] {
        let m = model_opset(opset, relu(), vec![], vec![float_io("x", &[1, 2])], &["y"]);
        load_fails(
            &m,
            &[
                "m.onnx",
                &format!("the model uses ONNX opset {opset}; cnn reads opsets 7 to 28"),
            ],
        );
    }
    for opset in [7, 13, 18, 22, 25, 28] {
        let m = model_opset(opset, relu(), vec![], vec![float_io("x", &[1, 2])], &["y"]);
        assert!(load(&m).is_ok(), "opset {opset}");
    }
    // Attributes that became inputs: given as attributes at a newer opset, refused.
    let mut n = node("m", "ReduceMean", &["x"], &["y"]);
    n.attribute.push(AttributeProto {
        name: "axes".into(),
        r#type: 7,
        ints: vec![1],
        ..Default::default()
    });
    let m = model_opset(
        18,
        vec![n.clone()],
        vec![],
        vec![float_io("x", &[1, 2])],
        &["y"],
    );
    load_fails(
        &m,
        &["from opset 18 on, ReduceMean takes its axes as input 1, not an attribute"],
    );
    let m = model_opset(17, vec![n], vec![], vec![float_io("x", &[1, 2])], &["y"]);
    assert!(load(&m).is_ok());
}

/// Hostile values for the ops of issue 14: each is one error naming the node, never a panic,
/// an abort or an unbounded allocation (found by a review of the new code).
#[test]
fn hostile_values_for_the_newer_ops_are_errors() {
    let attr_int = |name: &str, v: i64| AttributeProto {
        name: name.into(),
        r#type: 2,
        i: v,
        ..Default::default()
    };
    // An omitted first input of shape arithmetic.
    let m = model(
        vec![
            node("s", "Shape", &["x"], &["s"]),
            node("a", "Add", &["", "s"], &["y"]),
        ],
        vec![],
        vec![float_io("x", &[1, 2])],
        &["y"],
    );
    plan_fails(&m, &["node 'a' (Add)"]);
    // Split: num_outputs far from the outputs; sizes that overflow.
    let mut n = node("sp", "Split", &["x"], &["a", "b"]);
    n.attribute.push(attr_int("num_outputs", 1 << 40));
    n.attribute.push(attr_int("axis", 1));
    let m = model_opset(18, vec![n], vec![], vec![float_io("x", &[1, 4])], &["a"]);
    plan_fails(
        &m,
        &["num_outputs = 1099511627776 but the node has 2 outputs"],
    );
    // num_outputs = 3 over 4 elements: parts of 2, 2 and an empty one (the reference errs).
    let mut n = node("sp", "Split", &["x"], &["a", "b", "c"]);
    n.attribute.push(attr_int("num_outputs", 3));
    n.attribute.push(attr_int("axis", 1));
    let m = model_opset(18, vec![n], vec![], vec![float_io("x", &[1, 4])], &["a"]);
    plan_fails(&m, &["node 'sp' (Split)", "the last would be empty"]);
    let n = node("sp", "Split", &["x", "sizes"], &["a", "", "", "b"]);
    let m = model_opset(
        18,
        vec![n],
        vec![init_i64("sizes", &[0, i64::MAX, i64::MAX, 3])],
        vec![float_io("x", &[1, 1])],
        &["a"],
    );
    plan_fails(&m, &["node 'sp' (Split)", "do not split"]);
    // DepthToSpace with a blocksize whose square overflows.
    let mut n = node("d", "DepthToSpace", &["x"], &["y"]);
    n.attribute.push(attr_int("blocksize", 1 << 32));
    plan_fails(
        &single(n, vec![], &[1, 4, 2, 2]),
        &["node 'd' (DepthToSpace)", "blocksize"],
    );
    // Resize to sizes no memory holds, and to an empty-but-huge shape.
    for sizes in [[1, 2, 4, 1 << 40], [1, 0, 4, i64::MAX]] {
        let n = node("r", "Resize", &["x", "", "", "sizes"], &["y"]);
        let m = model(
            n_vec(n),
            vec![init_i64("sizes", &sizes)],
            vec![float_io("x", &[1, 2, 4, 4])],
            &["y"],
        );
        plan_fails(&m, &["node 'r' (Resize)"]);
    }
    // A Range whose count is long, and one whose span overflows i64.
    for (start, limit, delta) in [(0, 1 << 40, 1), (i64::MAX, -2, -1)] {
        let m = model(
            vec![
                node("r", "Range", &["s", "l", "d"], &["shape"]),
                node("y", "Reshape", &["x", "shape"], &["y"]),
            ],
            vec![
                init_i64("s", &[start]),
                init_i64("l", &[limit]),
                init_i64("d", &[delta]),
            ],
            vec![float_io("x", &[1, 2])],
            &["y"],
        );
        plan_fails(&m, &["node 'r' (Range)", "too long"]);
    }
    // ConvTranspose with strides for the wrong number of axes.
    let mut n = node("t", "ConvTranspose", &["x", "w"], &["y"]);
    n.attribute.push(AttributeProto {
        name: "strides".into(),
        r#type: 7,
        ints: vec![2],
        ..Default::default()
    });
    plan_fails(
        &single(n, vec![filled("w", &[2, 1, 3, 3])], &[1, 2, 4, 4]),
        &[
            "node 't' (ConvTranspose)",
            "attribute 'strides' has 1 values",
        ],
    );
}

fn n_vec(n: NodeProto) -> Vec<NodeProto> {
    vec![n]
}

#[test]
fn layer_normalization_scales_broadcast_as_numpy_says() {
    // x [1, 2, 4], axis 1: the normalised axes are [2, 4].
    let ln = |scale_dims: &[usize]| {
        let mut n = node("ln", "LayerNormalization", &["x", "s"], &["y"]);
        n.attribute.push(AttributeProto {
            name: "axis".into(),
            r#type: 2,
            i: 1,
            ..Default::default()
        });
        let count: usize = scale_dims.iter().product();
        let s = TensorProto {
            dims: scale_dims.iter().map(|&d| d as i64).collect(),
            data_type: 1,
            name: "s".into(),
            float_data: vec![1.0; count],
            ..Default::default()
        };
        model_opset(
            17,
            vec![n],
            vec![s],
            vec![float_io("x", &[1, 2, 4])],
            &["y"],
        )
    };
    // As many values, but in a shape that does not broadcast (numpy would refuse it).
    plan_fails(
        &ln(&[8]),
        &["node 'ln'", "[8]", "does not broadcast", "[2, 4]"],
    );
    plan_fails(&ln(&[1, 2, 4]), &["does not broadcast"]);
    // Broadcasts, but repeats one value along the axes: refused by name.
    plan_fails(
        &ln(&[1]),
        &["repeated along the normalised axes", "not supported"],
    );
    // One value per element.
    assert!(plan_declared(&ln(&[2, 4])).is_ok());
}
