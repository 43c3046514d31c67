//! External data (`external_data`: `location`, `offset`, `length`, as PyTorch's default
//! exporter writes it): a model whose weights sit in `model.onnx.data` loads, counts and runs
//! exactly as the same model with the weights inside the file; a location that leaves the
//! model's folder (absolute, `..`, a symbolic link out), a missing or short file, a bad offset
//! and data over the ceiling on weight memory are each one error naming the tensor.

use cnn_onnx::constant::encode_f32;
use cnn_onnx::proto::{
    attribute_type, data_type, AttributeProto, Dimension, DimensionValue, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto,
    TypeProto, TypeProtoTensor, ValueInfoProto,
};
use cnn_onnx::{plan, run, OnnxModel};
use prost::Message;
use std::path::{Path, PathBuf};

const W_SHAPE: [usize; 4] = [4, 2, 3, 3];

fn weights() -> (Vec<f32>, Vec<f32>) {
    let w = (0..72)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 10.0)
        .collect();
    let b = vec![0.5, -0.25, 0.125, 1.0];
    (w, b)
}

fn input_info() -> ValueInfoProto {
    ValueInfoProto {
        name: "x".into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: [1i64, 2, 5, 5]
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(DimensionValue::DimValue(d)),
                        })
                        .collect(),
                }),
            }),
            ..Default::default()
        }),
    }
}

fn model(initializers: Vec<TensorProto>) -> Vec<u8> {
    let conv = NodeProto {
        input: vec!["x".into(), "w".into(), "b".into()],
        output: vec!["y".into()],
        name: "conv".into(),
        op_type: "Conv".into(),
        attribute: vec![AttributeProto {
            name: "pads".into(),
            r#type: attribute_type::INTS,
            ints: vec![1, 1, 1, 1],
            ..Default::default()
        }],
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 18,
        }],
        graph: Some(GraphProto {
            node: vec![conv],
            name: "ext".into(),
            initializer: initializers,
            input: vec![input_info()],
            output: vec![ValueInfoProto {
                name: "y".into(),
                r#type: None,
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// A tensor whose data is at `offset` (and `length`, if given) of `location`.
fn external(
    name: &str,
    shape: &[usize],
    location: &str,
    offset: u64,
    length: Option<u64>,
) -> TensorProto {
    let mut entries = vec![
        StringStringEntryProto {
            key: "location".into(),
            value: location.into(),
        },
        StringStringEntryProto {
            key: "offset".into(),
            value: offset.to_string(),
        },
    ];
    if let Some(l) = length {
        entries.push(StringStringEntryProto {
            key: "length".into(),
            value: l.to_string(),
        });
    }
    TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: data_type::FLOAT,
        name: name.into(),
        external_data: entries,
        data_location: 1,
        ..Default::default()
    }
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes `model.onnx` (w at offset 0 with its length, b at 4096 without) and
/// `model.onnx.data` into `dir`; returns the model's path.
fn write_external(dir: &Path, location: &str) -> PathBuf {
    let (w, b) = weights();
    let mut data = le_bytes(&w);
    data.resize(4096, 0);
    data.extend(le_bytes(&b));
    std::fs::write(dir.join("model.onnx.data"), data).unwrap();
    let inits = vec![
        external("w", &W_SHAPE, location, 0, Some(288)),
        external("b", &[4], location, 4096, None),
    ];
    let path = dir.join("model.onnx");
    std::fs::write(&path, model(inits)).unwrap();
    path
}

fn x() -> Vec<f32> {
    (0..50).map(|i| (i as f32 * 0.37).sin()).collect()
}

#[test]
fn external_weights_load_count_and_run_as_inside_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_external(dir.path(), "model.onnx.data");
    let ext = OnnxModel::load(&path).unwrap();
    let (w, b) = weights();
    let inside = OnnxModel::from_bytes(
        &model(vec![
            encode_f32("w", &W_SHAPE, &w),
            encode_f32("b", &[4], &b),
        ]),
        "inside.onnx",
        "inside",
    )
    .unwrap();
    assert_eq!(ext.initializer_float_elements(), 76);
    let pe = plan(&ext, &[vec![1, 2, 5, 5]]).unwrap();
    let pi = plan(&inside, &[vec![1, 2, 5, 5]]).unwrap();
    assert_eq!(pe.graph.total_params(), 76);
    assert_eq!(pe.graph.total_params(), pi.graph.total_params());
    let ye = run(&ext, &pe, &[x()]).unwrap().remove(0);
    let yi = run(&inside, &pi, &[x()]).unwrap().remove(0);
    assert_eq!(ye, yi);
    // `./` in front of the location is the same file.
    let dir2 = tempfile::tempdir().unwrap();
    let p2 = write_external(dir2.path(), "./model.onnx.data");
    assert!(OnnxModel::load(&p2).is_ok());
}

fn load_error(path: &Path, max: u128) -> String {
    OnnxModel::load_within(path, max).unwrap_err().to_string()
}

#[test]
fn locations_outside_the_folder_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.data"), vec![0u8; 8192]).unwrap();
    for (location, why) in [
        ("/etc/hostname", "is an absolute path"),
        ("../secret.data", "leaves the folder ('..')"),
        ("sub/../../secret.data", "leaves the folder ('..')"),
        ("", "is empty"),
    ] {
        let p = write_external(dir.path(), location);
        let e = load_error(&p, u128::MAX);
        assert!(e.contains("tensor 'w'"), "{e}");
        assert!(e.contains(why), "{location}: {e}");
        assert!(e.contains("it must be a file in the model's folder"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(
            outside.path().join("secret.data"),
            dir.path().join("link.data"),
        )
        .unwrap();
        let p = write_external(dir.path(), "link.data");
        let e = load_error(&p, u128::MAX);
        assert!(
            e.contains("leads out of the folder through a symbolic link"),
            "{e}"
        );
        // A link that stays inside the folder is fine.
        std::os::unix::fs::symlink(
            dir.path().join("model.onnx.data"),
            dir.path().join("in.data"),
        )
        .unwrap();
        let p = write_external(dir.path(), "in.data");
        assert!(OnnxModel::load(&p).is_ok());
        // A FIFO (its open would block) and a directory are not data files.
        let fifo = dir.path().join("pipe.data");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let p = write_external(dir.path(), "pipe.data");
            let e = load_error(&p, u128::MAX);
            assert!(e.contains("is not a regular file"), "{e}");
        }
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let p = write_external(dir.path(), "sub");
        assert!(load_error(&p, u128::MAX).contains("is not a regular file"));
    }
}

#[test]
fn missing_short_and_oversized_data_are_errors_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_external(dir.path(), "nope.data");
    let e = load_error(&p, u128::MAX);
    assert!(
        e.contains("model.onnx: tensor 'w': external data file 'nope.data' does not exist"),
        "{e}"
    );

    let p = write_external(dir.path(), "model.onnx.data");
    std::fs::write(dir.path().join("model.onnx.data"), vec![0u8; 100]).unwrap();
    let e = load_error(&p, u128::MAX);
    assert!(
        e.contains("tensor 'w': needs bytes 0..288 of 'model.onnx.data', which holds 100"),
        "{e}"
    );

    // A length that disagrees with the dims.
    let (w, _) = weights();
    std::fs::write(dir.path().join("model.onnx.data"), le_bytes(&w)).unwrap();
    let inits = vec![external("w", &W_SHAPE, "model.onnx.data", 0, Some(284))];
    std::fs::write(&p, model(inits)).unwrap();
    let e = load_error(&p, u128::MAX);
    assert!(
        e.contains(
            "tensor 'w': its external data holds 284 bytes, but 72 elements of 4 bytes need 288"
        ),
        "{e}"
    );

    // An offset that is not a number.
    let mut t = external("w", &W_SHAPE, "model.onnx.data", 0, None);
    t.external_data[1].value = "-4".into();
    std::fs::write(&p, model(vec![t])).unwrap();
    let e = load_error(&p, u128::MAX);
    assert!(
        e.contains("tensor 'w': external data offset '-4' is not a whole number of bytes"),
        "{e}"
    );

    // Over the ceiling: refused before the data is read.
    let p = write_external(dir.path(), "model.onnx.data");
    let file = std::fs::metadata(&p).unwrap().len() as u128;
    let e = load_error(&p, file + 100);
    assert!(
        e.contains(
            "tensor 'w': its 288 bytes of external data ('model.onnx.data', as held in memory) \
             are over"
        ),
        "{e}"
    );
    assert!(OnnxModel::load_within(&p, file + 288 + 16).is_ok());
    assert!(OnnxModel::load_within(&p, file + 288 + 15).is_err());

    // Read from bytes, with no folder to look in.
    let bytes = std::fs::read(&p).unwrap();
    let e = OnnxModel::from_bytes(&bytes, "mem.onnx", "mem")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("external file ('model.onnx.data'), which is read from the model's folder"),
        "{e}"
    );
}

#[test]
fn external_integers_count_at_the_size_they_are_held() {
    // 100 INT32 values: 400 bytes in the file, 800 once widened to i64.
    let dir = tempfile::tempdir().unwrap();
    let (w, b) = weights();
    let mut data = le_bytes(&w);
    data.extend(le_bytes(&b));
    let ints_at = data.len() as u64;
    data.extend((0..100i32).flat_map(|v| v.to_le_bytes()));
    std::fs::write(dir.path().join("model.onnx.data"), data).unwrap();
    let mut n = external("n", &[100], "model.onnx.data", ints_at, Some(400));
    n.data_type = data_type::INT32;
    let inits = vec![
        external("w", &W_SHAPE, "model.onnx.data", 0, Some(288)),
        external("b", &[4], "model.onnx.data", 288, Some(16)),
        n,
    ];
    let p = dir.path().join("model.onnx");
    std::fs::write(&p, model(inits)).unwrap();
    let file = std::fs::metadata(&p).unwrap().len() as u128;
    assert!(OnnxModel::load_within(&p, file + 288 + 16 + 800).is_ok());
    let e = load_error(&p, file + 288 + 16 + 799);
    assert!(e.contains("tensor 'n': its 800 bytes"), "{e}");
}
