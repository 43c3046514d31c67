//! The trained digits model against a framework nobody here wrote. Fixtures come from
//! `scripts/train_digits.py` (PyTorch 2.15.0, scikit-learn 1.9.1 `load_digits`,
//! `train_test_split(test_size=0.2, random_state=0, stratify=y)`, seed 0; PyTorch's held-out
//! accuracy 98.06 %, 353/360 — see `tests/fixtures/digits/README.md`).

use cnn::model::{parse_model, Model};
use ndarray::{ArrayD, Axis};
use ndarray_npy::ReadNpyExt;
use std::fs::File;
use std::path::{Path, PathBuf};

mod common;
use common::{cnn, fails_with};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture<T: ndarray_npy::ReadableElement>(name: &str) -> ArrayD<T> {
    let path = root().join("tests/fixtures/digits").join(name);
    ArrayD::<T>::read_npy(File::open(&path).unwrap()).unwrap()
}

fn digits() -> Model {
    let mut m = Model::plan_file(&root().join("models/digits.toml")).unwrap();
    m.load_weights(
        &root().join("models/digits.safetensors"),
        cnn::DEFAULT_MAX_WEIGHT_BYTES,
    )
    .unwrap();
    m
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
        .unwrap_or(0)
}

#[test]
fn logits_match_pytorch_within_1e_4() {
    // The model file ends in softmax; the logits are the output of the layer before it.
    let text = std::fs::read_to_string(root().join("models/digits.toml")).unwrap();
    let mut spec = parse_model(&text, "models/digits.toml").unwrap();
    assert_eq!(spec.layers.pop().unwrap().name, "activation_1");
    let mut m = Model::plan_spec(&spec).unwrap();
    m.load_weights(
        &root().join("models/digits.safetensors"),
        cnn::DEFAULT_MAX_WEIGHT_BYTES,
    )
    .unwrap();
    let x = cnn::Tensor::from_array(fixture::<f32>("x_test.npy"));
    assert_eq!(x.shape(), &[360, 1, 8, 8]);
    let y = m.forward(&x).unwrap();
    let expected = fixture::<f32>("logits.npy");
    assert_eq!(y.shape(), expected.shape());
    let max_diff = y
        .as_slice()
        .iter()
        .zip(expected.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("max |engine - PyTorch| logit difference over 360 images: {max_diff:e}");
    assert!(max_diff < 1e-4, "max abs logit difference {max_diff}");

    // And the probabilities of the full model match PyTorch's softmax.
    let p = digits().forward(&x).unwrap();
    let probs = fixture::<f32>("probs.npy");
    let max_p = p
        .as_slice()
        .iter()
        .zip(probs.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max_p < 1e-5, "max abs probability difference {max_p}");
}

#[test]
fn held_out_accuracy_at_least_97_percent() {
    let x = cnn::Tensor::from_array(fixture::<f32>("x_test.npy"));
    let labels = fixture::<i64>("y_test.npy");
    let y = digits().forward(&x).unwrap();
    let right = y
        .as_slice()
        .chunks(10)
        .zip(labels.iter())
        .filter(|(row, &l)| argmax(row) as i64 == l)
        .count();
    println!("engine held-out accuracy: {right}/360");
    assert!(right * 100 >= 97 * 360, "{right}/360");
}

#[test]
fn every_sample_picture_is_what_its_name_says() {
    let m = digits();
    let samples = cnn::pictures::expand_inputs(&[root().join("models/samples")]).unwrap();
    assert!(samples.len() >= 10);
    let outputs = cnn::classify::run_pictures(&m, &samples).unwrap();
    let mut classes = std::collections::BTreeSet::new();
    for (path, out) in samples.iter().zip(&outputs) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let want: usize = name[..1].parse().unwrap();
        assert_eq!(argmax(out), want, "{name}");
        classes.insert(want);
    }
    assert_eq!(classes.len(), 10, "one sample per class at least");
}

/// Writes the held-out digits as dark-on-light PNGs of `size` x `size`, named
/// `<index>_label<l>.png`; returns the folder.
fn render_held_out(dir: &Path, size: u32) -> PathBuf {
    let pixels = fixture::<u8>("pixels_test.npy");
    let labels = fixture::<i64>("y_test.npy");
    let folder = dir.join(format!("png{size}"));
    std::fs::create_dir_all(&folder).unwrap();
    let scale = size / 8;
    for (i, (img, label)) in pixels.axis_iter(Axis(0)).zip(labels.iter()).enumerate() {
        let picture = image::GrayImage::from_fn(size, size, |x, y| {
            image::Luma([img[[(y / scale) as usize, (x / scale) as usize]]])
        });
        picture
            .save(folder.join(format!("{i:03}_label{label}.png")))
            .unwrap();
    }
    folder
}

#[test]
fn held_out_pictures_at_8_and_64_pixels_through_cnn_run() {
    let dir = tempfile::tempdir().unwrap();
    for size in [8, 64] {
        let folder = render_held_out(dir.path(), size);
        let o = cnn(&[
            "run",
            "models/digits.toml",
            "--weights",
            "models/digits.safetensors",
            folder.to_str().unwrap(),
            "--format",
            "json",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 360);
        let right = results
            .iter()
            .filter(|r| {
                let input = r["input"].as_str().unwrap();
                let want = input
                    .rsplit("_label")
                    .next()
                    .unwrap()
                    .trim_end_matches(".png");
                r["label"].as_str() == Some(want)
            })
            .count();
        println!("{size}x{size} pictures through `cnn run`: {right}/360");
        assert!(right * 100 >= 97 * 360, "{size}x{size}: {right}/360");
        let p = results[0]["probability"].as_f64().unwrap();
        assert!(p > 0.0 && p <= 1.0);
    }
}

#[test]
fn a_jpeg_photo_of_a_digit_runs() {
    let dir = tempfile::tempdir().unwrap();
    let png = image::open(root().join("models/samples/3_a.png")).unwrap();
    let jpg = dir.path().join("three.jpg");
    png.to_rgb8().save(&jpg).unwrap();
    let o = cnn(&[
        "run",
        "models/digits.toml",
        "--weights",
        "models/digits.safetensors",
        jpg.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["results"][0]["label"], "3");
}

#[test]
fn bad_pictures_and_folders_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake.png");
    std::fs::write(&fake, b"this is text, not a picture").unwrap();
    let run = |p: &Path| {
        cnn(&[
            "run",
            "models/digits.toml",
            "--weights",
            "models/digits.safetensors",
            p.to_str().unwrap(),
        ])
    };
    fails_with(&run(&fake), &["fake.png", "not a PNG or JPEG"]);
    let broken = dir.path().join("broken.png");
    let good = std::fs::read(root().join("models/samples/3_a.png")).unwrap();
    std::fs::write(&broken, &good[..good.len() / 2]).unwrap();
    fails_with(&run(&broken), &["broken.png", "corrupt picture"]);
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    fails_with(&run(&empty), &["empty", "holds no PNG or JPEG"]);
    fails_with(
        &run(&dir.path().join("missing.png")),
        &["missing.png", "no such file"],
    );
    let rgb_model = dir.path().join("rgb.toml");
    std::fs::write(
        &rgb_model,
        "name = \"rgb\"\n[input]\nchannels = 2\nheight = 8\nwidth = 8\n[[layers]]\ntype = \"flatten\"\n",
    )
    .unwrap();
    fails_with(
        &cnn(&[
            "run",
            rgb_model.to_str().unwrap(),
            root().join("models/samples/3_a.png").to_str().unwrap(),
        ]),
        &["rgb.toml", "takes 2 channels", "1 (gray) or 3"],
    );
}

#[test]
fn weights_for_another_model_or_a_broken_file_are_refused() {
    let o = cnn(&[
        "run",
        "models/vgg2.toml",
        "--weights",
        "models/digits.safetensors",
        "models/samples/3_a.png",
    ]);
    fails_with(
        &o,
        &["models/digits.safetensors", "tensor `conv2d_1.weight`"],
    );
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.safetensors");
    let bytes = std::fs::read(root().join("models/digits.safetensors")).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    fails_with(
        &cnn(&[
            "summary",
            "models/digits.toml",
            "--weights",
            cut.to_str().unwrap(),
        ]),
        &["cut.safetensors", "not a valid safetensors file"],
    );
    fails_with(
        &cnn(&[
            "summary",
            "models/digits.toml",
            "--weights",
            "nope.safetensors",
        ]),
        &["nope.safetensors", "no such file"],
    );
}

#[test]
fn init_writes_weights_that_summary_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("vgg2.safetensors");
    let o = cnn(&[
        "init",
        "models/vgg2.toml",
        "--seed",
        "7",
        "--save",
        w.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = cnn(&[
        "summary",
        "models/vgg2.toml",
        "--weights",
        w.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["allocated_params"], 336_387);
    // The same seed gives the same file.
    let w2 = dir.path().join("again.safetensors");
    cnn(&[
        "init",
        "models/vgg2.toml",
        "--seed",
        "7",
        "--save",
        w2.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&w).unwrap(), std::fs::read(&w2).unwrap());
}

#[test]
fn inputs_keep_their_command_line_order_and_bad_pictures_fail_before_weights() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let a = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[2, 1, 8, 8]));
    ndarray_npy::WriteNpyExt::write_npy(&a, File::create(&x).unwrap()).unwrap();
    let o = cnn(&[
        "run",
        "models/digits.toml",
        "--weights",
        "models/digits.safetensors",
        "models/samples/7_a.png",
        x.to_str().unwrap(),
        "models/samples/1_b.png",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let order: Vec<(String, u64)> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let input = r["input"].as_str().unwrap();
            let short = Path::new(input)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (short, r["index"].as_u64().unwrap())
        })
        .collect();
    let expected: Vec<(String, u64)> = [("7_a.png", 0), ("x.npy", 0), ("x.npy", 1), ("1_b.png", 0)]
        .iter()
        .map(|(n, i)| (n.to_string(), *i))
        .collect();
    assert_eq!(order, expected);
    // A bad picture is reported even when the weights could not be loaded.
    let fake = dir.path().join("fake.png");
    std::fs::write(&fake, b"text").unwrap();
    fails_with(
        &cnn(&[
            "run",
            "models/digits.toml",
            "--weights",
            "nope.safetensors",
            fake.to_str().unwrap(),
        ]),
        &["fake.png"],
    );
}

#[test]
fn labels_must_match_and_summary_says_where_weights_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("models/digits.toml"))
        .unwrap()
        .replace("labels = [\"0\", \"1\",", "labels = [");
    let bad = dir.path().join("labels.toml");
    std::fs::write(&bad, text).unwrap();
    fails_with(
        &cnn(&["summary", bad.to_str().unwrap()]),
        &["`labels` names 8 classes but the model's output is 10"],
    );
    let o = cnn(&[
        "summary",
        "models/digits.toml",
        "--weights",
        "models/digits.safetensors",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["weights"], "models/digits.safetensors");
    assert_eq!(v["allocated_params"], 13_706);
    let o = cnn(&["run", "models/digits.toml", "models/samples", "--top", "0"]);
    fails_with(&o, &["--top", "must be at least 1"]);
}
