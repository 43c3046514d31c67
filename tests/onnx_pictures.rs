//! Pictures into ONNX models (`cnn run model.onnx photo.jpg`): the ImageNet preset, a sidecar
//! file next to the model, the flags, both input layouts, labels and softmax — checked against
//! torchvision's own transforms (`scripts/picture_reference.py` made the references with
//! PIL and torchvision 0.29.2) through Identity models whose output is their input.
//!
//! The bounds are in 8-bit levels: a PNG decodes to the same pixels in PIL and the `image`
//! crate, and the two antialiased bilinear resizes round to 8 bits alike but for one level;
//! JPEG decoders differ (IDCT and chroma upsampling), by a few levels on edges.

use ndarray::ArrayD;
use ndarray_npy::ReadNpyExt;
use std::fs::File;
use std::path::{Path, PathBuf};

mod common;
use common::{cnn, fails_with, stderr, stdout};

const DIR: &str = "tests/fixtures/pictures";

fn fixture(name: &str) -> String {
    format!("{DIR}/{name}")
}

fn read(path: &Path) -> ArrayD<f32> {
    ArrayD::<f32>::read_npy(File::open(path).unwrap()).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Largest and mean difference of `a` against `b`, in 8-bit levels (`std` per channel of the
/// NCHW item undoes the normalisation).
fn levels(a: &[f32], b: &[f32], std: &[f32], plane: usize) -> (f32, f32) {
    assert_eq!(a.len(), b.len());
    let mut max = 0f32;
    let mut sum = 0f64;
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let d = (x - y).abs() * std[i / plane] * 255.0;
        max = max.max(d);
        sum += d as f64;
    }
    (max, (sum / a.len() as f64) as f32)
}

/// The bound for each picture: (largest, mean) difference in levels.
fn bound(name: &str) -> (f32, f32) {
    if name.ends_with(".png") {
        (1.01, 0.5)
    } else {
        (6.0, 1.0)
    }
}

#[test]
fn imagenet_preset_matches_torchvision_in_both_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let std = [0.229, 0.224, 0.225];
    for layout in ["nchw", "nhwc"] {
        let out = dir.path().join(format!("{layout}.npy"));
        let o = cnn(&[
            "run",
            &fixture(&format!("identity_{layout}.onnx")),
            &fixture("photo.jpg"),
            &fixture("photo.png"),
            "--preset",
            "imagenet",
            "--save-output",
            s(&out),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = stdout(&o);
        assert!(
            text.contains("shorter side to 256 (bilinear), centre crop 224x224, RGB")
                && text.contains(&layout.to_uppercase())
                && text.contains("preset imagenet"),
            "{text}"
        );
        let got = read(&out);
        let got = if layout == "nhwc" {
            assert_eq!(got.shape(), [2, 224, 224, 3]);
            got.permuted_axes(vec![0, 3, 1, 2])
        } else {
            got
        };
        assert_eq!(got.shape(), [2, 3, 224, 224]);
        for (i, name) in ["photo.jpg", "photo.png"].iter().enumerate() {
            let want = read(&PathBuf::from(fixture(&format!(
                "imagenet_{}.npy",
                name.replace('.', "_")
            ))));
            let item: Vec<f32> = got
                .index_axis(ndarray::Axis(0), i)
                .iter()
                .copied()
                .collect();
            let (max, mean) = levels(&item, want.as_slice().unwrap(), &std, 224 * 224);
            let (max_bound, mean_bound) = bound(name);
            assert!(
                max <= max_bound && mean <= mean_bound,
                "{layout} {name}: {max} levels at most, {mean} on average"
            );
        }
    }
}

#[test]
fn a_sidecar_next_to_the_model_gives_bgr_crop_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("small.onnx");
    std::fs::copy(fixture("small_nchw.onnx"), &model).unwrap();
    std::fs::write(
        dir.path().join("small.preprocess.toml"),
        "# what the network was trained on\nresize = [30, 40]\ncrop = [24, 32]\n\
         filter = \"bilinear\"\nchannel_order = \"bgr\"\nmean = [0.6, 0.5, 0.4]\n\
         std = [0.3, 0.25, 0.2]\n",
    )
    .unwrap();
    let out = dir.path().join("out.npy");
    let o = cnn(&[
        "run",
        s(&model),
        &fixture("photo.jpg"),
        &fixture("photo.png"),
        "--save-output",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("small.preprocess.toml"),
        "{}",
        stdout(&o)
    );
    let got = read(&out);
    assert_eq!(got.shape(), [2, 3, 24, 32]);
    for (i, name) in ["photo.jpg", "photo.png"].iter().enumerate() {
        let want = read(&PathBuf::from(fixture(&format!(
            "small_{}.npy",
            name.replace('.', "_")
        ))));
        let item: Vec<f32> = got
            .index_axis(ndarray::Axis(0), i)
            .iter()
            .copied()
            .collect();
        let (max, mean) = levels(&item, want.as_slice().unwrap(), &[0.3, 0.25, 0.2], 24 * 32);
        let (max_bound, mean_bound) = bound(name);
        assert!(
            max <= max_bound && mean <= mean_bound,
            "{name}: {max} levels at most, {mean} on average"
        );
    }
    // The flags win over the sidecar: RGB order changes the first plane.
    let rgb = dir.path().join("rgb.npy");
    let o = cnn(&[
        "run",
        s(&model),
        &fixture("photo.png"),
        "--channel-order",
        "rgb",
        "--save-output",
        s(&rgb),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("small.preprocess.toml + the command line"));
    assert_ne!(
        read(&rgb).as_slice(),
        got.index_axis(ndarray::Axis(0), 1).as_slice()
    );
}

/// A one-node ONNX model `y = Flatten(GlobalAveragePool(x))` with `x` [N, 3, 8, 8]: a
/// 3-class "classifier" whose scores are the channel means.
fn channel_mean_classifier(path: &Path) {
    means_model(path, None, "Flatten")
}

/// `y = TAIL(GlobalAveragePool(x))` with `x` [batch, 3, 8, 8] (`None`: symbolic `N`).
fn means_model(path: &Path, batch: Option<i64>, tail: &str) {
    // Built with the prost types of the ONNX crate, no Python needed.
    use cnn_onnx::proto::*;
    use prost::Message;
    let dim = |v: i64| Dimension {
        value: Some(DimensionValue::DimValue(v)),
    };
    let sym = match batch {
        Some(b) => dim(b),
        None => Dimension {
            value: Some(DimensionValue::DimParam("N".into())),
        },
    };
    let info = |name: &str, dims: Vec<Dimension>| ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: 1,
                shape: Some(TensorShapeProto { dim: dims }),
            }),
            ..Default::default()
        }),
    };
    let node = |op: &str, i: &str, o: &str| NodeProto {
        op_type: op.into(),
        input: vec![i.into()],
        output: vec![o.into()],
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            name: "means".into(),
            node: vec![node("GlobalAveragePool", "x", "g"), node(tail, "g", "y")],
            input: vec![info("x", vec![sym, dim(3), dim(8), dim(8)])],
            output: vec![ValueInfoProto {
                name: "y".into(),
                r#type: None,
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    std::fs::write(path, model.encode_to_vec()).unwrap();
}

#[test]
fn labels_and_softmax_rank_the_classes() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("means.onnx");
    channel_mean_classifier(&model);
    // A red picture: the red channel's mean is highest.
    let red = dir.path().join("red.png");
    image::RgbImage::from_pixel(16, 16, image::Rgb([250, 10, 40]))
        .save(&red)
        .unwrap();
    let labels = dir.path().join("colours.txt");
    std::fs::write(&labels, "red\ngreen\nblue\n").unwrap();
    let o = cnn(&[
        "run",
        s(&model),
        s(&red),
        "--scale",
        "0.00392156862745098",
        "--labels",
        s(&labels),
        "--softmax",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &doc["results"][0];
    assert_eq!(r["label"], "red");
    // Softmax of the channel means 250/255, 10/255, 40/255.
    let z: Vec<f64> = [250.0, 10.0, 40.0]
        .iter()
        .map(|v: &f64| (v / 255.0).exp())
        .collect();
    let p = z[0] / z.iter().sum::<f64>();
    let got = r["probability"].as_f64().unwrap();
    assert!((got - p).abs() < 1e-5, "{got} vs {p}");
    assert!(doc["preprocessing"]
        .as_str()
        .unwrap()
        .contains("labels from"));
    // Two labels for three classes is an error naming both counts.
    std::fs::write(&labels, "red\ngreen\n").unwrap();
    fails_with(
        &cnn(&[
            "run",
            s(&model),
            s(&red),
            "--scale",
            "1",
            "--labels",
            s(&labels),
        ]),
        &["means.onnx", "labels name 2 classes", "output has 3"],
    );
}

#[test]
fn bad_recipes_are_one_line_errors() {
    let id = fixture("identity_nchw.onnx");
    let jpg = fixture("photo.jpg");
    fails_with(
        &cnn(&["run", &id, &jpg]),
        &[
            "identity_nchw.onnx",
            "pictures need the model's preprocessing",
        ],
    );
    fails_with(
        &cnn(&["run", &id, &jpg, "--preset", "imagenet", "--crop", "200"]),
        &["200x200", "224x224"],
    );
    fails_with(
        &cnn(&["run", &id, &jpg, "--resize", "256"]),
        &["needs a crop"],
    );
    fails_with(
        &cnn(&["run", &id, &jpg, "--preset", "imagenet", "--mean", "1,2"]),
        &["mean has 2 values", "3 channels"],
    );
    fails_with(
        &cnn(&["run", &id, &jpg, "--preprocess", "no/such.toml"]),
        &["no/such.toml: no such file"],
    );
    // The ImageNet labels do not fit a model whose output is not 1000 classes: an Identity
    // model's output is a picture, so no labels are needed and none are checked.
    let o = cnn(&["run", &id, &jpg, "--preset", "imagenet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A picture too small for its crop.
    let dir = tempfile::tempdir().unwrap();
    let tiny = dir.path().join("tiny.png");
    image::RgbImage::new(4, 4).save(&tiny).unwrap();
    fails_with(
        &cnn(&["run", &id, s(&tiny), "--resize", "100x100", "--crop", "224"]),
        &["tiny.png", "smaller than the 224x224 crop"],
    );
}

#[test]
fn model_files_take_the_flags_too() {
    // The digits model (8x8 gray, its own [input]) with a crop of a 10x10 resize: the sample
    // still runs, and the report says where each key came from.
    let o = cnn(&[
        "run",
        "models/digits.toml",
        "--weights",
        "models/digits.safetensors",
        "models/samples/3_a.png",
        "--resize",
        "10x10",
        "--crop",
        "8",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("resize to 10x10 (area), centre crop 8x8, gray")
            && text.contains("the model file's [input] + the command line"),
        "{text}"
    );
    fails_with(
        &cnn(&[
            "run",
            "models/digits.toml",
            "models/samples/3_a.png",
            "--layout",
            "nhwc",
        ]),
        &["model file's input is channels, height, width"],
    );
}

#[test]
fn squeezenet_classifies_photos_as_onnxruntime_does_on_torchvision_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("logits.npy");
    let o = cnn(&[
        "run",
        "tests/onnx/networks/squeezenet1_0/model.onnx",
        &fixture("photo.jpg"),
        &fixture("photo.png"),
        "--preset",
        "imagenet",
        "--save-output",
        s(&out),
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let got = read(&out);
    assert_eq!(got.shape(), [2, 1000]);
    for (i, name) in ["photo.jpg", "photo.png"].iter().enumerate() {
        let want = read(&PathBuf::from(fixture(&format!(
            "squeezenet_{}.npy",
            name.replace('.', "_")
        ))));
        let want = want.as_slice().unwrap();
        let item: Vec<f32> = got
            .index_axis(ndarray::Axis(0), i)
            .iter()
            .copied()
            .collect();
        let largest = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = item
            .iter()
            .zip(want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        // Inputs differ by the resize's rounding (and JPEG decoding); logits by less than 1%.
        assert!(diff <= 0.01 * largest, "{name}: {diff} against {largest}");
        let mut order: Vec<usize> = (0..1000).collect();
        order.sort_by(|&a, &b| want[b].total_cmp(&want[a]));
        let r = &doc["results"][i];
        assert_eq!(r["class"], order[0], "{name}");
        // The preset's labels and softmax: torchvision's category names, probabilities.
        let label = std::fs::read_to_string("models/imagenet_classes.txt")
            .unwrap()
            .lines()
            .nth(order[0])
            .unwrap()
            .to_string();
        assert_eq!(r["label"], label.as_str());
        let p = r["probability"].as_f64().unwrap();
        assert!(p > 0.0 && p < 1.0, "{p}");
    }
}

#[test]
fn labels_and_softmax_apply_to_an_array_run_too() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("means.onnx");
    channel_mean_classifier(&model);
    let x = dir.path().join("x.npy");
    let mut data = vec![0.1f32; 3 * 64];
    data[64..128].iter_mut().for_each(|v| *v = 0.9); // the green channel is the largest
    use ndarray_npy::WriteNpyExt;
    ndarray::Array::from_shape_vec(vec![1, 3, 8, 8], data)
        .unwrap()
        .write_npy(File::create(&x).unwrap())
        .unwrap();
    let labels = dir.path().join("colours.txt");
    std::fs::write(&labels, "red\ngreen\nblue\n").unwrap();
    let o = cnn(&[
        "run",
        s(&model),
        s(&x),
        "--labels",
        s(&labels),
        "--softmax",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &doc["results"][0];
    assert_eq!(r["label"], "green");
    let total: f64 = r["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["probability"].as_f64().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-5, "{total}");
}

#[test]
fn a_picture_run_refuses_what_it_cannot_split_or_hold() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("p.png");
    image::RgbImage::new(8, 8).save(&png).unwrap();
    // An output without the batch axis (a mean over every axis) cannot be split per picture.
    let model = dir.path().join("scalar.onnx");
    means_model(&model, None, "ReduceMean");
    let o = cnn(&["run", s(&model), s(&png), s(&png), "--scale", "1"]);
    fails_with(&o, &["scalar.onnx", "no batch axis of 2"]);
    // A batch the file fixes at 100 million pictures: refused, not an abort.
    let model = dir.path().join("huge.onnx");
    means_model(&model, Some(100_000_000), "Flatten");
    let o = cnn(&["run", s(&model), s(&png), "--scale", "1"]);
    fails_with(&o, &["huge.onnx"]);
}
