//! Golden outputs of the `cnn` binary, pinned byte for byte: `summary` (table, Markdown and
//! JSON), `explain` (table and JSON) and `run` (JSON) on every shipped model file, the digits
//! model with its trained weights and pictures, `compare` on the seed pairs, and `summary`,
//! `explain` and `run` on both committed ONNX networks. They were recorded before the two front
//! doors were lowered into one graph (`cnn-graph`) and hold its contract: the move changes no
//! number, no formula, no shape and no layout. Timing outputs (`bench`, the demo) are not
//! pinned.
//!
//! The outputs were recorded on the AVX2 kernel build, which every x86-64 machine this is
//! tested on has: the goldens run with `CNN_KERNEL=avx2` there, so an AVX-512 machine (whose
//! 32-wide tiles change the buffer sizes `explain` reports, and may change the last digit of a
//! sum) gives the same bytes. Elsewhere they run on the best build and may differ in those.
//!
//! A deliberate change of an output is recorded with `CNN_GOLDEN_UPDATE=1 cargo test --release
//! --test golden`, and the diff is reviewed like code.

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::WriteNpyExt;
use std::fs::File;
use std::path::{Path, PathBuf};

mod common;
use common::{cnn, cnn_env, stderr};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `models/*.toml`, sorted.
fn model_files() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root().join("models"))
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.ends_with(".toml").then(|| format!("models/{name}"))
        })
        .collect();
    v.sort();
    v
}

const ONNX: [&str; 2] = [
    "tests/onnx/networks/squeezenet1_0/model.onnx",
    "tests/onnx/networks/mobilenet_v2/model.onnx",
];

/// A deterministic, non-trivial float32 array of `shape` (values in [-1, 1]).
fn write_input(path: &Path, shape: &[usize]) {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|i| ((i as f32) * 0.618_034).sin() * ((i % 7) as f32 / 7.0 + 0.2))
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), data)
        .unwrap()
        .write_npy(File::create(path).unwrap())
        .unwrap();
}

/// The model file's input shape `[C, H, W]`, read from its summary.
fn input_shape(model: &str) -> Vec<usize> {
    let o = cnn(&["summary", model, "--no-alloc", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["input_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

/// The name a golden file gets: the arguments, path separators and dots made plain.
fn golden_name(args: &[&str]) -> String {
    let mut s = args
        .iter()
        .map(|a| {
            let a = a
                .trim_start_matches("models/")
                .trim_start_matches("tests/onnx/networks/");
            a.replace(['/', '.', ' '], "_")
        })
        .collect::<Vec<_>>()
        .join("__");
    s.push_str(".txt");
    s
}

/// Runs `args` and compares its stdout (with `replace` substituted, for temporary paths)
/// with the golden file; records it instead under `CNN_GOLDEN_UPDATE=1`. Returns a mismatch
/// description, or `None`.
fn check(args: &[&str], name_args: &[&str], replace: Option<(&str, &str)>) -> Option<String> {
    let avx2 = cnn::conv::isa::cpu_has_avx2_fma();
    let vars: &[(&str, &str)] = if avx2 { &[("CNN_KERNEL", "avx2")] } else { &[] };
    let o = cnn_env(args, vars);
    if !o.status.success() {
        return Some(format!("{args:?} failed: {}", stderr(&o)));
    }
    let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
    if let Some((from, to)) = replace {
        text = text.replace(from, to);
    }
    let file = root().join("tests/golden").join(golden_name(name_args));
    if std::env::var_os("CNN_GOLDEN_UPDATE").is_some() {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, &text).unwrap();
        return None;
    }
    let want = match std::fs::read_to_string(&file) {
        Ok(w) => w,
        Err(e) => return Some(format!("{}: {e}", file.display())),
    };
    if want == text {
        return None;
    }
    let first = want
        .lines()
        .zip(text.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(want.lines().count().min(text.lines().count()));
    Some(format!(
        "{args:?} differs from {} at line {}:\n  want: {:?}\n  got:  {:?}",
        file.display(),
        first + 1,
        want.lines().nth(first).unwrap_or("<end>"),
        text.lines().nth(first).unwrap_or("<end>")
    ))
}

fn assert_all(failures: Vec<String>) {
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn model_file_summaries_and_explanations_are_unchanged() {
    let mut failures = Vec::new();
    for m in model_files() {
        for args in [
            vec!["summary", m.as_str()],
            vec!["summary", m.as_str(), "--format", "json"],
            vec!["summary", m.as_str(), "--format", "markdown"],
            vec!["summary", m.as_str(), "--no-alloc", "--format", "json"],
            vec!["explain", m.as_str()],
            vec!["explain", m.as_str(), "--format", "json"],
        ] {
            failures.extend(check(&args, &args, None));
        }
    }
    let digits = [
        "summary",
        "models/digits.toml",
        "--weights",
        "models/digits.safetensors",
        "--format",
        "json",
    ];
    failures.extend(check(&digits, &digits, None));
    assert_all(failures);
}

#[test]
fn model_file_runs_are_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for m in model_files() {
        // Too large to allocate (10^12) or too slow for a test (10^8 locally connected, and
        // 100 filters of 10x10 on a 1000x1000 picture): counted above, not run here.
        if ["fc_1000x1000", "local_10x10", "shared_10x10_100"]
            .iter()
            .any(|s| m.contains(s))
        {
            continue;
        }
        let mut shape = vec![2];
        shape.extend(input_shape(&m));
        let x = dir.path().join("x.npy");
        write_input(&x, &shape);
        let xs = x.to_str().unwrap();
        let args = ["run", m.as_str(), "--input", xs, "--format", "json"];
        let name = ["run", m.as_str(), "--format", "json"];
        failures.extend(check(&args, &name, Some((xs, "x.npy"))));
    }
    let digits = [
        "run",
        "models/digits.toml",
        "--weights",
        "models/digits.safetensors",
        "models/samples",
        "--top",
        "3",
        "--format",
        "json",
    ];
    failures.extend(check(&digits, &digits, None));
    assert_all(failures);
}

#[test]
fn comparisons_are_unchanged() {
    let mut failures = Vec::new();
    for (a, b) in [
        ("models/vgg1.toml", "models/vgg2.toml"),
        ("models/keras_conv_490.toml", "models/channel_sum_170.toml"),
        (
            "models/mlp_784_2000_2000_10.toml",
            "models/mlp_784_2000_50_2000_10.toml",
        ),
        ("models/blog_4block.toml", "models/blog_3block.toml"),
    ] {
        for args in [
            vec!["compare", a, b],
            vec!["compare", a, b, "--format", "json"],
        ] {
            failures.extend(check(&args, &args, None));
        }
    }
    assert_all(failures);
}

#[test]
fn onnx_summaries_explanations_and_runs_are_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for m in ONNX {
        for args in [
            vec!["summary", m],
            vec!["summary", m, "--format", "json"],
            vec!["explain", m],
            vec!["explain", m, "--format", "json"],
        ] {
            failures.extend(check(&args, &args, None));
        }
        let x = dir.path().join("x.npy");
        write_input(&x, &[1, 3, 224, 224]);
        let xs = x.to_str().unwrap();
        let args = ["run", m, "--input", xs, "--top", "5", "--format", "json"];
        let name = ["run", m, "--format", "json"];
        failures.extend(check(&args, &name, Some((xs, "x.npy"))));
    }
    assert_all(failures);
}
