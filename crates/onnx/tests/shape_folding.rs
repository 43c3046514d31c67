//! Shape arithmetic as exporters write it, evaluated when planning: the flatten PyTorch's
//! legacy exporter emits (`Shape → Gather → Unsqueeze → Concat → Reshape`) and the halves of
//! `torch.chunk` (`Shape → Gather → Div → Unsqueeze → Slice`, twice) plan at any batch with
//! constant shapes, leave only the nodes that move data in the graph, and run to the same
//! values as the arithmetic done by hand. Shape-only ops whose inputs are not known when
//! planning are one error naming the node.

use cnn_onnx::proto::{
    attribute_type, data_type, AttributeProto, Dimension, DimensionValue, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor,
    ValueInfoProto,
};
use cnn_onnx::{plan, run, OnnxModel};
use prost::Message;

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

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i: v,
        ..Default::default()
    }
}

fn ints(name: &str, shape: &[usize], v: &[i64]) -> TensorProto {
    TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: data_type::INT64,
        name: name.into(),
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

/// A model reading `x` of `[N, 3, 4, 4]` (N symbolic), at opset 13.
fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, outputs: &[&str]) -> OnnxModel {
    let dims = [
        DimensionValue::DimParam("N".into()),
        DimensionValue::DimValue(3),
        DimensionValue::DimValue(4),
        DimensionValue::DimValue(4),
    ];
    let x = ValueInfoProto {
        name: "x".into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .into_iter()
                        .map(|v| Dimension { value: Some(v) })
                        .collect(),
                }),
            }),
            ..Default::default()
        }),
    };
    let proto = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(GraphProto {
            node: nodes,
            name: "shapes".into(),
            initializer: inits,
            input: vec![x],
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
    };
    OnnxModel::from_bytes(&proto.encode_to_vec(), "shapes.onnx", "shapes").unwrap()
}

fn x(n: usize) -> Vec<f32> {
    (0..n * 48).map(|i| i as f32 * 0.5 - 3.0).collect()
}

#[test]
fn the_exported_flatten_plans_at_any_batch_and_leaves_one_node() {
    let m = model(
        vec![
            node("Shape", "s", &["x"], vec![]),
            node("Gather", "n", &["s", "zero"], vec![int("axis", 0)]),
            node("Unsqueeze", "n1", &["n", "axes0"], vec![]),
            node("Concat", "target", &["n1", "minus1"], vec![int("axis", 0)]),
            node("Reshape", "flat", &["x", "target"], vec![]),
            node("Relu", "y", &["flat"], vec![]),
        ],
        vec![
            ints("zero", &[], &[0]),
            ints("axes0", &[1], &[0]),
            ints("minus1", &[1], &[-1]),
        ],
        &["y"],
    );
    for n in [1, 3] {
        let p = plan(&m, &[vec![n, 3, 4, 4]]).unwrap();
        let kinds: Vec<&str> = p.graph.nodes.iter().map(|n| n.type_name.as_str()).collect();
        assert_eq!(
            kinds,
            ["Reshape", "Relu"],
            "shape arithmetic is folded away"
        );
        assert_eq!(p.graph.nodes[0].output_shape, vec![n, 48]);
        let y = run(&m, &p, &[x(n)]).unwrap().remove(0);
        assert_eq!(y.shape, vec![n, 48]);
        let want: Vec<f32> = x(n).iter().map(|v| v.max(0.0)).collect();
        assert_eq!(y.data, want);
    }
}

#[test]
fn the_halves_of_torch_chunk_are_slices_with_folded_bounds() {
    // half = Shape(x)[1:2] / 2; a = x[:, :half], b = x[:, half:2*half] — computed in the
    // graph, as the exporter writes `torch.chunk(x, 2, dim=1)` on 3 channels (1 and 1, the
    // third dropped, to keep the arithmetic honest).
    let m = model(
        vec![
            node("Shape", "s", &["x"], vec![int("start", 1), int("end", 2)]),
            node("Div", "half", &["s", "two"], vec![]),
            node("Mul", "twice", &["half", "two"], vec![]),
            node("Slice", "a", &["x", "zero1", "half", "one1"], vec![]),
            node("Slice", "b", &["x", "half", "twice", "one1"], vec![]),
            node("Add", "y", &["a", "b"], vec![]),
        ],
        vec![
            ints("two", &[1], &[2]),
            ints("zero1", &[1], &[0]),
            ints("one1", &[1], &[1]),
        ],
        &["y"],
    );
    // (Shape's start/end are opset 15's; the importer reads them by name.)
    let p = plan(&m, &[vec![2, 3, 4, 4]]).unwrap();
    let kinds: Vec<&str> = p.graph.nodes.iter().map(|n| n.type_name.as_str()).collect();
    assert_eq!(kinds, ["Slice", "Slice", "Add"]);
    assert_eq!(p.graph.nodes[0].output_shape, vec![2, 1, 4, 4]);
    let data = x(2);
    let y = run(&m, &p, std::slice::from_ref(&data)).unwrap().remove(0);
    let want: Vec<f32> = (0..2)
        .flat_map(|b| (0..16).map(move |k| (b, k)))
        .map(|(b, k)| data[b * 48 + k] + data[b * 48 + 16 + k])
        .collect();
    assert_eq!(y.data, want);
}

#[test]
fn gather_of_data_at_constant_indices_runs() {
    let m = model(
        vec![node("Gather", "y", &["x", "idx"], vec![int("axis", 1)])],
        vec![ints("idx", &[2], &[2, -3])],
        &["y"],
    );
    let p = plan(&m, &[vec![1, 3, 4, 4]]).unwrap();
    assert_eq!(p.graph.nodes[0].output_shape, vec![1, 2, 4, 4]);
    let data = x(1);
    let y = run(&m, &p, std::slice::from_ref(&data)).unwrap().remove(0);
    let want: Vec<f32> = data[32..48].iter().chain(&data[0..16]).copied().collect();
    assert_eq!(y.data, want);
}

#[test]
fn comparisons_on_data_run_and_bad_shape_arithmetic_is_an_error() {
    // Equal on data runs (booleans as 1.0 / 0.0); Range on data is shape-only.
    let m = model(
        vec![
            node("Equal", "e", &["x", "x"], vec![]),
            node("Not", "n", &["e"], vec![]),
        ],
        vec![],
        &["n"],
    );
    let p = plan(&m, &[vec![1, 3, 4, 4]]).unwrap();
    let y = run(&m, &p, &[x(1)]).unwrap().remove(0);
    assert_eq!(y.data, vec![0.0; 48]);
    let m = model(
        vec![node("Range", "r", &["x", "x", "x"], vec![])],
        vec![],
        &["r"],
    );
    let e = plan(&m, &[vec![1, 3, 4, 4]]).unwrap_err().to_string();
    assert!(
        e.contains("node 'r' (Range): this op runs on shape values only"),
        "{e}"
    );
    let m = model(
        vec![
            node("Shape", "s", &["x"], vec![]),
            node("Div", "d", &["s", "zero"], vec![]),
            node("Reshape", "y", &["x", "d"], vec![]),
        ],
        vec![ints("zero", &[1], &[0])],
        &["y"],
    );
    let e = plan(&m, &[vec![1, 3, 4, 4]]).unwrap_err().to_string();
    assert!(
        e.contains("node 'd' (Div): division by zero in shape arithmetic"),
        "{e}"
    );
    // Indices that are data, not known when planning.
    let m = model(
        vec![node("Gather", "y", &["x", "x"], vec![])],
        vec![],
        &["y"],
    );
    let e = plan(&m, &[vec![1, 3, 4, 4]]).unwrap_err().to_string();
    assert!(
        e.contains("the indices (input 1) must be integers known when planning"),
        "{e}"
    );
}
