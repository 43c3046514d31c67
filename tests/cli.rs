//! End-to-end tests of the `cnn` binary: the subcommands' output contracts (JSON keys of
//! `docs/cli.md`), and every kind of bad input a user can give — each must produce exactly one
//! line on stderr, a non-zero exit status, and no panic.

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::WriteNpyExt;
use std::fs::File;
use std::path::{Path, PathBuf};
mod common;
use common::{cnn, fails_with, stderr, stdout};

fn write_model(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn write_npy_f32(path: &Path, shape: &[usize], value: f32) {
    let a = ArrayD::<f32>::from_elem(IxDyn(shape), value);
    a.write_npy(File::create(path).unwrap()).unwrap();
}

const HEAD: &str = "name = \"t\"\n[input]\nchannels = 1\nheight = 8\nwidth = 8\n";

#[test]
fn summary_json_follows_the_contract() {
    let o = cnn(&["summary", "models/vgg2.toml", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["name"], "vgg2");
    assert_eq!(v["input_shape"], serde_json::json!([1, 28, 28]));
    assert_eq!(v["total_params"], 336_387);
    assert_eq!(v["trainable_params"], 336_387);
    assert_eq!(v["non_trainable_params"], 0);
    assert_eq!(v["allocated_params"], 336_387);
    let l0 = &v["layers"][0];
    assert_eq!(l0["name"], "conv2d_1");
    assert_eq!(l0["type"], "conv2d");
    assert_eq!(l0["output_shape"], serde_json::json!([32, 26, 26]));
    assert_eq!(l0["params"], 320);
    assert_eq!(l0["trainable_params"], 320);
    assert_eq!(l0["formula"], "(3*3*1+1)*32");
    assert_eq!(l0["macs"], 194_688);
}

#[test]
fn summary_of_a_model_too_large_to_allocate_still_counts() {
    let o = cnn(&["summary", "models/fc_1000x1000.toml", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["total_params"], 1_000_000_000_000u64);
    assert!(v["allocated_params"].is_null());
    let t = stdout(&cnn(&["summary", "models/fc_1000x1000.toml"]));
    assert!(
        t.contains("Total params: 1,000,000,000,000 (3.64 TiB)"),
        "{t}"
    );
    assert!(t.contains("not allocated"), "{t}");
}

#[test]
fn summary_no_alloc_and_markdown() {
    let o = cnn(&[
        "summary",
        "models/vgg1.toml",
        "--no-alloc",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["allocated_params"].is_null());
    let md = stdout(&cnn(&[
        "summary",
        "models/vgg1.toml",
        "--format",
        "markdown",
    ]));
    assert!(
        md.contains("| Layer (type) | Output Shape | Param # | Formula | MACs |"),
        "{md}"
    );
    assert!(
        md.contains("| dense_1 (dense) | (128,) | 589,952 | (4608+1)*128 |"),
        "{md}"
    );
}

#[test]
fn explain_shows_the_im2col_matrix_and_gemm() {
    let t = stdout(&cnn(&["explain", "models/lasagne_mnist.toml"]));
    assert!(t.contains("cols [25 x 576]"), "{t}");
    assert!(t.contains("M x K x N = 32 x 25 x 576"), "{t}");
    let o = cnn(&["explain", "models/vgg2.toml", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["model"], "vgg2");
    let l = &v["layers"][1];
    assert_eq!(l["layer"], "conv2d_2");
    assert_eq!(l["im2col_shape"], serde_json::json!([288, 576]));
    assert_eq!(l["gemm_mkn"], serde_json::json!([32, 288, 576]));
    assert_eq!(l["column_bytes_full"], 288 * 576 * 4);
    // 32 channels in and out, 3x3 on 26x26 -> 24x24 (36 tiles of 4x4): Winograd F(4x4, 3x3),
    // the same GEMM shown first; the first layer (1 channel) unfolds into panels; the third
    // (32 -> 64 on 12x12, 9 tiles) reads the matrix in place from the 12 x 12 x 32
    // channels-last copy.
    assert_eq!(
        l["path"],
        "Winograd F(4x4, 3x3): 36 GEMMs on transformed tiles"
    );
    assert_eq!(l["channels_last_copy_bytes"], 0);
    assert_eq!(v["layers"][0]["channels_last_copy_bytes"], 0);
    assert_eq!(v["layers"][2]["channels_last_copy_bytes"], 12 * 12 * 32 * 4);
    let t = stdout(&cnn(&["explain", "models/vgg2.toml"]));
    assert!(
        t.contains("36 GEMMs U[32 x 32] x V[32 x 36]")
            && t.contains("1,327,104 multiplies instead of 5,308,416"),
        "{t}"
    );
    assert!(
        t.contains("never unfolded, the GEMM reads it in place from a zero-padded channels-last copy of the input (18.0 KiB)"),
        "{t}"
    );
}

#[test]
fn compare_marks_the_heaviest_layer_and_explains() {
    let t = stdout(&cnn(&["compare", "models/vgg1.toml", "models/vgg2.toml"]));
    assert!(t.contains("589,952  <- most"), "{t}");
    assert!(t.contains("262,400  <- most"), "{t}");
    assert!(
        t.contains("vgg2 has 4 more layers yet 267,648 fewer parameters"),
        "{t}"
    );
    let o = cnn(&[
        "compare",
        "models/vgg1.toml",
        "models/vgg2.toml",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["heaviest_a"], "dense_1");
    assert_eq!(v["a"]["total_params"], 604_035);
}

#[test]
fn run_on_npy_saves_softmax_output() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let y = dir.path().join("y.npy");
    write_npy_f32(&x, &[3, 1, 28, 28], 0.5);
    let o = cnn(&[
        "run",
        "models/vgg2.toml",
        "--input",
        x.to_str().unwrap(),
        "--save-output",
        y.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["model"], "vgg2");
    assert_eq!(v["results"].as_array().unwrap().len(), 3);
    assert_eq!(v["results"][0]["top"].as_array().unwrap().len(), 5);
    use ndarray_npy::ReadNpyExt;
    let out = ArrayD::<f32>::read_npy(File::open(&y).unwrap()).unwrap();
    assert_eq!(out.shape(), &[3, 35]);
    for row in out.rows() {
        let s: f32 = row.sum();
        assert!((s - 1.0).abs() < 1e-5, "{s}");
    }
    // A CHW array is one image.
    write_npy_f32(&x, &[1, 28, 28], 0.5);
    let o = cnn(&["run", "models/vgg2.toml", "--input", x.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("x.npy"), "{}", stdout(&o));
}

#[test]
fn malformed_toml_reports_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_model(
        dir.path(),
        "bad.toml",
        &format!("{HEAD}[[layers]]\ntype = \"conv2d\nfilters = 3\n"),
    );
    let o = cnn(&["summary", p.to_str().unwrap()]);
    fails_with(&o, &["bad.toml:7:"]);
}

#[test]
fn unknown_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_model(
        dir.path(),
        "typo.toml",
        &format!("{HEAD}[[layers]]\ntype = \"conv2d\"\nfilter = 3\nkernel = 3\n"),
    );
    fails_with(
        &cnn(&["summary", p.to_str().unwrap()]),
        &["typo.toml:8:", "unknown key `filter`", "conv2d"],
    );
}

#[test]
fn unknown_layer_type_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_model(
        dir.path(),
        "ty.toml",
        &format!("{HEAD}[[layers]]\ntype = \"lstm\"\n"),
    );
    fails_with(
        &cnn(&["explain", p.to_str().unwrap()]),
        &["ty.toml:7:", "unknown layer type `lstm`"],
    );
}

#[test]
fn impossible_shapes_name_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_model(
        dir.path(),
        "big_kernel.toml",
        &format!("{HEAD}[[layers]]\ntype = \"conv2d\"\nfilters = 2\nkernel = 9\n"),
    );
    fails_with(
        &cnn(&["summary", p.to_str().unwrap()]),
        &[
            "layer `conv2d_1` (conv2d)",
            "larger than the padded 8x8 input",
        ],
    );
    let p = write_model(
        dir.path(),
        "dense_on_map.toml",
        &format!("{HEAD}[[layers]]\ntype = \"dense\"\nunits = 2\n"),
    );
    fails_with(
        &cnn(&["summary", p.to_str().unwrap()]),
        &["layer `dense_1` (dense)", "add a `flatten`"],
    );
}

#[test]
fn missing_model_file() {
    fails_with(
        &cnn(&["summary", "models/no_such_model.toml"]),
        &["models/no_such_model.toml", "no such file"],
    );
}

#[test]
fn model_over_the_memory_ceiling_is_refused_by_run() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    write_npy_f32(&x, &[1, 28, 28], 0.0);
    fails_with(
        &cnn(&[
            "run",
            "models/vgg2.toml",
            "--input",
            x.to_str().unwrap(),
            "--max-weight-bytes",
            "1M",
        ]),
        &[
            "336,387 parameters",
            "over the 1.00 MiB ceiling",
            "--max-weight-bytes",
        ],
    );
    let big = dir.path().join("big.npy");
    write_npy_f32(&big, &[1, 1000, 1000], 0.0);
    fails_with(
        &cnn(&[
            "run",
            "models/fc_1000x1000.toml",
            "--input",
            big.to_str().unwrap(),
        ]),
        &["1,000,000,000,000 parameters = 3.64 TiB"],
    );
}

#[test]
fn npy_of_the_wrong_shape_or_dtype_or_content() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("wrong_shape.npy");
    write_npy_f32(&x, &[1, 3, 28, 28], 0.0);
    fails_with(
        &cnn(&["run", "models/vgg2.toml", "--input", x.to_str().unwrap()]),
        &["wrong_shape.npy", "1x3x28x28", "1x28x28"],
    );
    let x = dir.path().join("f64.npy");
    ArrayD::<f64>::zeros(IxDyn(&[1, 28, 28]))
        .write_npy(File::create(&x).unwrap())
        .unwrap();
    fails_with(
        &cnn(&["run", "models/vgg2.toml", "--input", x.to_str().unwrap()]),
        &["f64.npy", "<f8", "float32"],
    );
    let x = dir.path().join("garbage.npy");
    std::fs::write(&x, b"this is not an npy file at all").unwrap();
    fails_with(
        &cnn(&["run", "models/vgg2.toml", "--input", x.to_str().unwrap()]),
        &["garbage.npy", "not a valid .npy"],
    );
    let x = dir.path().join("truncated.npy");
    write_npy_f32(&x, &[1, 28, 28], 1.0);
    let bytes = std::fs::read(&x).unwrap();
    std::fs::write(&x, &bytes[..bytes.len() - 100]).unwrap();
    fails_with(
        &cnn(&["run", "models/vgg2.toml", "--input", x.to_str().unwrap()]),
        &["truncated.npy", "truncated"],
    );
    fails_with(
        &cnn(&["run", "models/vgg2.toml", "--input", "nope.npy"]),
        &["nope.npy", "no such file"],
    );
}

#[test]
fn usage_errors_are_one_line() {
    let o = cnn(&["summary"]);
    fails_with(&o, &["MODEL"]);
    assert_eq!(o.status.code(), Some(2));
    fails_with(&cnn(&["frobnicate"]), &["frobnicate"]);
    let o = cnn(&["summary", "models/vgg2.toml", "--max-weight-bytes", "lots"]);
    fails_with(&o, &["--max-weight-bytes", "lots"]);
    assert_eq!(o.status.code(), Some(2));
    fails_with(
        &cnn(&["run", "models/vgg2.toml", "--input", "x.npy", "--top", "0"]),
        &["--top"],
    );
}

#[test]
fn bench_reports_every_layer_in_json() {
    let o = cnn(&[
        "bench",
        "models/vgg2.toml",
        "--threads",
        "1",
        "--iters",
        "3",
        "--warmup",
        "1",
        "--batch",
        "2",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["model"], "vgg2");
    assert_eq!(
        (
            v["threads"].as_u64(),
            v["batch"].as_u64(),
            v["iters"].as_u64()
        ),
        (Some(1), Some(2), Some(3))
    );
    assert!(v["median_ms"].as_f64().unwrap() > 0.0);
    assert!(v["images_per_s"].as_f64().unwrap() > 0.0);
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 12);
    assert_eq!(layers[1]["name"], "conv2d_2");
    assert!(layers[1]["gflops"].as_f64().unwrap() > 0.0);
    // The roofline: the kernel build, its measured peak, each layer's share of it.
    assert!(["avx2", "portable"].contains(&v["kernel"].as_str().unwrap()));
    assert_eq!(v["kernel_chosen_by"], "cpu");
    let peak = v["fma_peak_gflops"].as_f64().unwrap();
    let g = layers[1]["gflops"].as_f64().unwrap();
    assert!(peak > 0.0 && (layers[1]["peak_share"].as_f64().unwrap() - g / peak).abs() < 1e-9);
    let share: f64 = layers.iter().map(|l| l["share"].as_f64().unwrap()).sum();
    assert!((share - 1.0).abs() < 1e-6, "{share}");
    assert!(v["largest_column_buffer_bytes"].as_u64().unwrap() > 0);
    fails_with(
        &cnn(&["bench", "models/vgg2.toml", "--threads", "0"]),
        &["--threads"],
    );
    fails_with(&cnn(&["bench", "models/fc_1000x1000.toml"]), &["3.64 TiB"]);
}

#[test]
fn demo_runs_and_respects_a_tiny_ceiling() {
    let o = cnn(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = stdout(&o);
    assert!(t.contains("604,035") && t.contains("336,387"), "{t}");
    assert!(t.contains("not allocated (3.64 TiB)"), "{t}");
    // The shipped ONNX networks, counted and checked against onnxruntime.
    assert!(
        t.contains("max |cnn - onnxruntime|") && t.contains("3,538,984"),
        "{t}"
    );
    let o = cnn(&["--max-weight-bytes", "1K"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = stdout(&o);
    assert!(t.contains("Allocated params: not allocated"), "{t}");
    assert!(
        t.contains("not loaded: 4.78 MiB file over the 1.00 KiB ceiling"),
        "{t}"
    );
}

#[test]
fn outputs_without_softmax_are_scores_not_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_model(
        dir.path(),
        "tanh.toml",
        &format!("{HEAD}[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 3\nactivation = \"tanh\"\n"),
    );
    let x = dir.path().join("x.npy");
    write_npy_f32(&x, &[1, 8, 8], 0.3);
    let o = cnn(&[
        "run",
        p.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &v["results"][0];
    assert!(
        r.get("probability").is_none() && r["score"].is_number(),
        "{r}"
    );
    assert!(r["top"][0].get("probability").is_none(), "{r}");
    let t = stdout(&cnn(&[
        "run",
        p.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
    ]));
    assert!(t.contains("score") && !t.contains("probability"), "{t}");
}

#[test]
fn pooling_padding_and_name_collisions_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_model(
        dir.path(),
        "pool.toml",
        &format!("{HEAD}[[layers]]\ntype = \"maxpool2d\"\npool = 2\npadding = 2\n"),
    );
    fails_with(
        &cnn(&["summary", p.to_str().unwrap()]),
        &[
            "pool.toml:6:",
            "maxpool2d_1",
            "padding 2 is not smaller than the 2x2 pool window",
        ],
    );
    let p = write_model(
        dir.path(),
        "names.toml",
        &format!(
            "{HEAD}[[layers]]\ntype = \"flatten\"\nname = \"flatten_1\"\n[[layers]]\ntype = \"flatten\"\n"
        ),
    );
    let o = cnn(&["summary", p.to_str().unwrap(), "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["layers"][1]["name"], "flatten_2");
}

/// Runs `cnn` with `CNN_KERNEL` set to `kernel`.
fn cnn_with_kernel(kernel: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cnn"))
        .args(args)
        .env("CNN_KERNEL", kernel)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the cnn binary runs")
}

#[test]
fn every_kernel_build_the_cpu_runs_gives_the_same_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let model = "tests/onnx/networks/squeezenet1_0/model.onnx";
    let input = "tests/onnx/networks/squeezenet1_0/test_data_set_0/input_0.pb";
    let mut outputs = Vec::new();
    for isa in cnn::conv::isa::available() {
        let out = dir.path().join(format!("{}.npy", isa.name()));
        let o = cnn_with_kernel(
            isa.name(),
            &[
                "run",
                model,
                "--input",
                input,
                "--save-output",
                out.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}: {}", isa.name(), stderr(&o));
        let e = cnn_with_kernel(isa.name(), &["explain", model]);
        assert!(stdout(&e).contains(&format!("GEMM kernels: {}", isa.name())));
        use ndarray_npy::ReadNpyExt;
        let y = ndarray::ArrayD::<f32>::read_npy(File::open(&out).unwrap()).unwrap();
        outputs.push((isa.name(), y.into_raw_vec_and_offset().0));
    }
    let (first, reference) = &outputs[0];
    let largest = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (name, y) in &outputs[1..] {
        let diff = y
            .iter()
            .zip(reference)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            diff <= 1e-5 * largest,
            "{name} vs {first}: {diff} of {largest}"
        );
    }
}

#[test]
fn a_kernel_build_the_cpu_cannot_run_is_refused() {
    // The builds this CPU lacks (AVX-512 on an AVX2 machine), and names of none.
    let lacking = cnn::conv::isa::Isa::ALL
        .into_iter()
        .filter(|i| !i.supported())
        .map(|i| i.name());
    for value in lacking {
        let o = cnn_with_kernel(value, &["bench", "models/vgg1.toml", "--iters", "1"]);
        let lacks = format!("this CPU has no {value}");
        fails_with(&o, &[&format!("CNN_KERNEL={value}"), &lacks, "portable"]);
    }
    for value in ["sse", "avx-512"] {
        let o = cnn_with_kernel(value, &["bench", "models/vgg1.toml", "--iters", "1"]);
        fails_with(
            &o,
            &[&format!("CNN_KERNEL={value}"), "this CPU runs:", "portable"],
        );
    }
    let o = cnn_with_kernel(
        "portable",
        &[
            "bench",
            "models/vgg1.toml",
            "--iters",
            "1",
            "--format",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["kernel"].as_str(), v["kernel_chosen_by"].as_str()),
        (Some("portable"), Some("CNN_KERNEL"))
    );
}

#[test]
fn arrays_need_no_picture_recipe_and_take_softmax() {
    // Two input channels: no picture fits, but an array does; --softmax ranks probabilities.
    let dir = tempfile::tempdir().unwrap();
    let m = write_model(
        dir.path(),
        "two.toml",
        "name = \"two\"\n[input]\nchannels = 2\nheight = 2\nwidth = 2\n\
         [[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 3\n",
    );
    let x = dir.path().join("x.npy");
    write_npy_f32(&x, &[2, 2, 2], 0.5);
    let o = cnn(&[
        "run",
        m.to_str().unwrap(),
        x.to_str().unwrap(),
        "--softmax",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let top = v["results"][0]["top"].as_array().unwrap();
    let total: f64 = top.iter().map(|t| t["probability"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-5, "{total}");
}
