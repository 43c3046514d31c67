//! End-to-end tests of the `cnn` binary on `.onnx` files: `summary`, `explain`, `run` and
//! `bench` on the committed torchvision squeezenet1_0 (checked against onnxruntime's output),
//! and every kind of bad input through the command line — each must exit with status 1 and
//! exactly one `cnn: error:` line on stderr that says what is wrong and where, never a panic.

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{cnn, stderr};

const SQUEEZENET: &str = "tests/onnx/networks/squeezenet1_0/model.onnx";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).expect("valid JSON on stdout")
}

/// Asserts a clean failure (see `common::fails_with`) with exit status 1 and nothing on
/// stdout.
fn fails_with(o: &Output, needles: &[&str]) {
    common::fails_with(o, needles);
    assert_eq!(
        o.status.code(),
        Some(1),
        "exit status 1 expected: {}",
        stderr(o)
    );
    assert!(o.stdout.is_empty(), "nothing on stdout: {:?}", o.stdout);
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

/// Writes squeezenet's test input (`input_0.pb`, [1, 3, 224, 224]) as a float32 .npy.
fn write_squeezenet_input(path: &Path) -> Vec<usize> {
    let pb = root().join("tests/onnx/networks/squeezenet1_0/test_data_set_0/input_0.pb");
    let (_, c) = cnn_onnx::read_tensor_file(&pb).unwrap();
    let a = ArrayD::from_shape_vec(IxDyn(&c.shape), c.as_f32().unwrap().to_vec()).unwrap();
    a.write_npy(File::create(path).unwrap()).unwrap();
    c.shape
}

fn write_npy(path: &Path, shape: &[usize]) {
    ArrayD::<f32>::from_elem(IxDyn(shape), 0.5)
        .write_npy(File::create(path).unwrap())
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// The four commands on squeezenet1_0
// ---------------------------------------------------------------------------------------------

#[test]
fn summary_counts_squeezenet_and_checks_the_initializers() {
    let v = json(&cnn(&["summary", SQUEEZENET, "--format", "json"]));
    // torchvision's squeezenet1_0: 1,248,424 parameters, no BatchNorm.
    assert_eq!(v["total_params"], 1_248_424);
    assert_eq!(v["trainable_params"], 1_248_424);
    assert_eq!(v["non_trainable_params"], 0);
    assert_eq!(v["allocated_params"], v["total_params"]);
    assert_eq!(v["input_shape"], serde_json::json!([1, 3, 224, 224]));
    let layers = v["layers"].as_array().unwrap();
    let model = cnn_onnx::OnnxModel::load(&root().join(SQUEEZENET)).unwrap();
    assert_eq!(layers.len(), model.nodes.len());
    let sum: u64 = layers.iter().map(|l| l["params"].as_u64().unwrap()).sum();
    assert_eq!(sum, 1_248_424);
    // The first convolution: 96 filters of 3x7x7, stride 2, on 224x224.
    let first = &layers[0];
    assert_eq!(first["type"], "Conv");
    assert_eq!(first["output_shape"], serde_json::json!([1, 96, 109, 109]));
    assert_eq!(first["params"], 14_208);
    assert_eq!(first["formula"], "96*3*7*7 + 96");
    assert_eq!(first["macs"], 96 * 3 * 7 * 7 * 109 * 109);
    // Every formula, evaluated independently, gives its count.
    for l in layers {
        let f = l["formula"].as_str().unwrap();
        if f != "-" {
            assert_eq!(
                cnn_model::formula::evaluate_text(f),
                l["params"].as_u64(),
                "{l}"
            );
        }
    }

    let o = cnn(&["summary", SQUEEZENET]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("Total params: 1,248,424"), "{t}");
    assert!(t.contains("ONNX opset 17"), "{t}");
    let md = cnn(&["summary", SQUEEZENET, "--format", "markdown"]);
    assert!(md.status.success(), "{}", stderr(&md));
}

#[test]
fn explain_lists_every_convolution_of_squeezenet() {
    let v = json(&cnn(&["explain", SQUEEZENET, "--format", "json"]));
    let layers = v["layers"].as_array().unwrap();
    let convs = layers.iter().filter(|l| l["type"] == "Conv").count();
    assert_eq!(convs, 26);
    let first = &layers[0];
    assert_eq!(first["kernel"], serde_json::json!([7, 7]));
    assert_eq!(first["stride"], serde_json::json!([2, 2]));
    // im2col of the first convolution: 3*7*7 rows, 109*109 columns.
    assert_eq!(first["im2col_shape"], serde_json::json!([147, 11_881]));
    assert_eq!(first["gemm_mkn"], serde_json::json!([96, 147, 11_881]));
    let o = cnn(&["explain", SQUEEZENET]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn run_matches_onnxruntime_and_saves_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let y = dir.path().join("y.npy");
    assert_eq!(write_squeezenet_input(&x), vec![1, 3, 224, 224]);
    let o = cnn(&[
        "run",
        SQUEEZENET,
        "--input",
        s(&x),
        "--save-output",
        s(&y),
        "--format",
        "json",
    ]);
    let v = json(&o);
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    let got = ArrayD::<f32>::read_npy(File::open(&y).unwrap()).unwrap();
    let pb = root().join("tests/onnx/networks/squeezenet1_0/test_data_set_0/output_0.pb");
    let (_, want) = cnn_onnx::read_tensor_file(&pb).unwrap();
    assert_eq!(got.shape(), &want.shape[..]);
    let want = want.as_f32().unwrap();
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(want)
        .fold(0.0f32, |m, (g, w)| m.max((g - w).abs()));
    assert!(
        err <= 1e-4 * scale,
        "max |engine - onnxruntime| = {err}, scale {scale}"
    );
    // The top class in the report is the array's argmax.
    let argmax = want
        .iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
        )
        .0;
    assert_eq!(v["results"][0]["class"], argmax, "{v}");

    // The same array without its batch axis is accepted too (CxHxW).
    let x3 = dir.path().join("x3.npy");
    let a = ArrayD::<f32>::read_npy(File::open(&x).unwrap()).unwrap();
    a.into_shape_with_order(IxDyn(&[3, 224, 224]))
        .unwrap()
        .write_npy(File::create(&x3).unwrap())
        .unwrap();
    let o = cnn(&["run", SQUEEZENET, s(&x3), "--top", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn bench_reports_one_layer_per_node() {
    let v = json(&cnn(&[
        "bench",
        SQUEEZENET,
        "--iters",
        "1",
        "--warmup",
        "0",
        "--threads",
        "1",
        "--format",
        "json",
    ]));
    let model = cnn_onnx::OnnxModel::load(&root().join(SQUEEZENET)).unwrap();
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), model.nodes.len());
    assert_eq!(layers.len(), 65);
    assert_eq!(v["threads"], 1);
    assert_eq!(v["iters"], 1);
    assert!(v["median_ms"].as_f64().unwrap() > 0.0);
}

// ---------------------------------------------------------------------------------------------
// Bad files
// ---------------------------------------------------------------------------------------------

#[test]
fn a_missing_onnx_file_is_named() {
    for cmd in ["summary", "explain", "bench"] {
        fails_with(
            &cnn(&[cmd, "no/such/model.onnx"]),
            &["no/such/model.onnx", "no such file"],
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    write_npy(&x, &[1, 3, 224, 224]);
    fails_with(
        &cnn(&["run", "no/such/model.onnx", s(&x)]),
        &["no/such/model.onnx", "no such file"],
    );
}

#[test]
fn a_text_file_named_onnx_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("x.onnx");
    std::fs::write(&m, "this is a text file, not a model\n").unwrap();
    for cmd in ["summary", "explain", "bench"] {
        fails_with(&cnn(&[cmd, s(&m)]), &["x.onnx", "not a valid ONNX model"]);
    }
    let empty = dir.path().join("empty.onnx");
    std::fs::write(&empty, "").unwrap();
    fails_with(
        &cnn(&["summary", s(&empty)]),
        &["empty.onnx", "the model has no graph"],
    );
}

#[test]
fn a_truncated_onnx_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(root().join(SQUEEZENET)).unwrap();
    let m = dir.path().join("cut.onnx");
    for cut in [3_000, bytes.len() / 2] {
        std::fs::write(&m, &bytes[..cut]).unwrap();
        fails_with(
            &cnn(&["summary", s(&m)]),
            &["cut.onnx", "not a valid ONNX model"],
        );
    }
}

#[test]
fn a_weight_file_with_an_onnx_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.safetensors");
    std::fs::write(&w, b"not read").unwrap();
    let x = dir.path().join("x.npy");
    write_npy(&x, &[1, 3, 224, 224]);
    for args in [
        vec!["summary", SQUEEZENET, "--weights", s(&w)],
        vec!["run", SQUEEZENET, "--weights", s(&w), s(&x)],
        vec!["bench", SQUEEZENET, "--weights", s(&w)],
    ] {
        fails_with(
            &cnn(&args),
            &[
                "w.safetensors",
                "--weights",
                "an ONNX file carries its own weights",
            ],
        );
    }
}

#[test]
fn init_refuses_an_onnx_model() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.safetensors");
    fails_with(
        &cnn(&["init", SQUEEZENET, "--save", s(&w)]),
        &["model.onnx", "carries its own weights", "cnn init"],
    );
    assert!(!w.exists(), "nothing is written");
}

#[test]
fn run_on_a_picture_or_two_arrays_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("picture.png");
    std::fs::write(&png, b"not even a png").unwrap();
    fails_with(
        &cnn(&["run", SQUEEZENET, s(&png)]),
        &[
            "squeezenet1_0/model.onnx",
            "preprocessing",
            "--preset imagenet",
        ],
    );
    fails_with(
        &cnn(&["run", SQUEEZENET, s(&png), "--preset", "imagenet"]),
        &["picture.png", "not a PNG or JPEG picture"],
    );
    let a = dir.path().join("a.npy");
    let b = dir.path().join("b.npy");
    write_npy(&a, &[1, 3, 224, 224]);
    write_npy(&b, &[1, 3, 224, 224]);
    fails_with(
        &cnn(&["run", SQUEEZENET, s(&a), s(&b)]),
        &["exactly one float32 array", "2 given"],
    );
    fails_with(
        &cnn(&["run", SQUEEZENET, "--input", s(&a), s(&b)]),
        &["2 given"],
    );
    fails_with(&cnn(&["run", SQUEEZENET]), &["nothing to run"]);
}

#[test]
fn an_npy_of_the_wrong_shape_names_the_array_and_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("small.npy");
    write_npy(&x, &[1, 3, 32, 32]);
    fails_with(
        &cnn(&["run", SQUEEZENET, s(&x)]),
        &[
            "small.npy",
            "model.onnx",
            "input 'input'",
            "shape [1, 3, 32, 32] does not fit the declared [1, 3, 224, 224]",
        ],
    );
    write_npy(&x, &[224, 224]);
    fails_with(
        &cnn(&["run", SQUEEZENET, s(&x)]),
        &["small.npy", "input 'input'", "does not fit"],
    );
    // Not float32.
    let d = dir.path().join("double.npy");
    ArrayD::<f64>::from_elem(IxDyn(&[1, 3, 224, 224]), 0.5)
        .write_npy(File::create(&d).unwrap())
        .unwrap();
    fails_with(
        &cnn(&["run", SQUEEZENET, s(&d)]),
        &["double.npy", "float32"],
    );
    // Missing.
    fails_with(
        &cnn(&["run", SQUEEZENET, "--input", "no/such/x.npy"]),
        &["no/such/x.npy", "no such file"],
    );
}

#[test]
fn a_model_over_the_weight_ceiling_is_refused() {
    for cmd in ["summary", "explain", "bench"] {
        fails_with(
            &cnn(&["--max-weight-bytes", "1M", cmd, SQUEEZENET]),
            &[
                "model.onnx",
                "over the 1.00 MiB ceiling",
                "--max-weight-bytes",
            ],
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    write_npy(&x, &[1, 3, 224, 224]);
    fails_with(
        &cnn(&["run", SQUEEZENET, s(&x), "--max-weight-bytes", "1M"]),
        &["model.onnx", "over the 1.00 MiB ceiling"],
    );
}

#[test]
fn bench_with_a_batch_the_model_fixes_is_refused() {
    fails_with(
        &cnn(&["bench", SQUEEZENET, "--batch", "2", "--iters", "1"]),
        &["model.onnx", "input 'input'", "--batch 2"],
    );
}

// ---------------------------------------------------------------------------------------------
// Models the engine cannot run, through the command line
// ---------------------------------------------------------------------------------------------

#[test]
fn a_model_with_two_inputs_is_refused_by_run() {
    // The ONNX node test of Add has inputs x and y.
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    write_npy(&x, &[3, 4, 5]);
    let m = "tests/onnx/node/test_add/model.onnx";
    fails_with(
        &cnn(&["run", m, s(&x)]),
        &[
            "test_add/model.onnx",
            "the model has 2 inputs",
            "exactly one",
        ],
    );
    // summary plans it at its declared shapes.
    let o = cnn(&["summary", m]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_model_with_an_integer_graph_input_is_refused() {
    // The ONNX node tests of Reshape give the target shape as an INT64 graph input.
    let m = "tests/onnx/node/test_reshape_reduced_dims/model.onnx";
    fails_with(
        &cnn(&["summary", m]),
        &[
            "test_reshape_reduced_dims/model.onnx",
            "input 'shape'",
            "INT64",
        ],
    );
}

/// Minimal protobuf encoding (the root crate does not depend on prost).
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_bytes(tag: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(tag << 3 | 2, &mut out);
    varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

fn field_int(tag: u64, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(tag << 3, &mut out);
    varint(v, &mut out);
    out
}

/// `x [1, 4] -> <op> (node "n1") -> y`, opset 13.
fn one_node_model(op: &str) -> Vec<u8> {
    let node = [
        field_bytes(1, b"x"),
        field_bytes(2, b"y"),
        field_bytes(3, b"n1"),
        field_bytes(4, op.as_bytes()),
    ]
    .concat();
    let dims = [
        field_bytes(1, &field_int(1, 1)),
        field_bytes(1, &field_int(1, 4)),
    ]
    .concat();
    let tensor_type = [field_int(1, 1), field_bytes(2, &dims)].concat();
    let input = [
        field_bytes(1, b"x"),
        field_bytes(2, &field_bytes(1, &tensor_type)),
    ]
    .concat();
    let graph = [
        field_bytes(1, &node),
        field_bytes(2, b"one_node"),
        field_bytes(11, &input),
        field_bytes(12, &field_bytes(1, b"y")),
    ]
    .concat();
    [
        field_int(1, 8),
        field_bytes(7, &graph),
        field_bytes(8, &field_int(2, 13)),
    ]
    .concat()
}

#[test]
fn hand_encoded_models_plan_or_fail_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    // The encoder is right: a Relu model plans and runs.
    let ok = dir.path().join("relu.onnx");
    std::fs::write(&ok, one_node_model("Relu")).unwrap();
    let v = json(&cnn(&["summary", s(&ok), "--format", "json"]));
    assert_eq!(v["name"], "one_node");
    assert_eq!(v["total_params"], 0);
    let x = dir.path().join("x.npy");
    ArrayD::from_shape_vec(IxDyn(&[1, 4]), vec![-1.0f32, 2.0, -3.0, 4.0])
        .unwrap()
        .write_npy(File::create(&x).unwrap())
        .unwrap();
    let y = dir.path().join("y.npy");
    let o = cnn(&["run", s(&ok), s(&x), "--save-output", s(&y)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = ArrayD::<f32>::read_npy(File::open(&y).unwrap()).unwrap();
    assert_eq!(
        got.iter().copied().collect::<Vec<_>>(),
        vec![0.0, 2.0, 0.0, 4.0]
    );
    // An unsupported operator: the node, its op and the supported list, on one line.
    let bad = dir.path().join("lstm.onnx");
    std::fs::write(&bad, one_node_model("LSTM")).unwrap();
    for cmd in ["summary", "explain", "bench"] {
        fails_with(
            &cnn(&[cmd, s(&bad)]),
            &[
                "lstm.onnx",
                "node 'n1' (LSTM)",
                "operator 'LSTM' is not supported",
                "supported: Conv",
            ],
        );
    }
    fails_with(
        &cnn(&["run", s(&bad), s(&x)]),
        &["lstm.onnx", "node 'n1' (LSTM)"],
    );
    // A node whose shapes do not fit, found while planning: Softmax is fine, Flatten of a
    // [1, 4] input at axis 1 too; a Conv without weights is not.
    let conv = dir.path().join("conv.onnx");
    std::fs::write(&conv, one_node_model("Conv")).unwrap();
    fails_with(
        &cnn(&["summary", s(&conv)]),
        &["conv.onnx", "node 'n1' (Conv)", "input 1 is required"],
    );
}

#[test]
fn a_pb_tensor_runs_like_the_same_npy_array() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    write_squeezenet_input(&x);
    let pb = root().join("tests/onnx/networks/squeezenet1_0/test_data_set_0/input_0.pb");
    let from_npy = json(&cnn(&[
        "run",
        SQUEEZENET,
        "--input",
        s(&x),
        "--format",
        "json",
    ]));
    let from_pb = json(&cnn(&[
        "run",
        SQUEEZENET,
        "--input",
        pb.to_str().unwrap(),
        "--format",
        "json",
    ]));
    assert_eq!(from_npy["results"][0]["top"], from_pb["results"][0]["top"]);
    let missing = dir.path().join("missing.pb");
    fails_with(
        &cnn(&["run", SQUEEZENET, "--input", s(&missing)]),
        &["missing.pb: no such file"],
    );
    let garbage = dir.path().join("garbage.pb");
    std::fs::write(&garbage, b"\xff\xff\xff\xff not a tensor").unwrap();
    fails_with(
        &cnn(&["run", SQUEEZENET, "--input", s(&garbage)]),
        &["garbage.pb"],
    );
}

#[test]
fn summary_says_when_the_exporter_folded_batchnorm() {
    let m = "tests/onnx/networks/mobilenet_v3_small-dynamo/model.onnx";
    let doc = json(&cnn(&["summary", m, "--format", "json"]));
    let notes = doc["notes"].as_array().expect("notes");
    assert_eq!(notes.len(), 1, "{notes:?}");
    let note = notes[0].as_str().unwrap();
    assert!(
        note.contains("folded BatchNorm into 34 convolutions")
            && note.contains("'features.0.0.weight_bias'"),
        "{note}"
    );
    let text = common::stdout(&cnn(&["summary", m]));
    assert!(
        text.contains("Note: the exporter folded BatchNorm into 34"),
        "{text}"
    );
    // A file that keeps its BatchNorms gets no note.
    let doc = json(&cnn(&["summary", SQUEEZENET, "--format", "json"]));
    assert!(doc.get("notes").is_none(), "{doc}");
}
