//! Weight files in the safetensors format: one `F32` tensor per layer parameter, named
//! `<layer>.<param>` (`conv2d_1.weight` `[k, c/groups, kh, kw]`, `conv2d_1.bias`,
//! `batchnorm_1.moving_mean`, …; layouts in `docs/weights.md`).
//!
//! Loading is strict: every tensor the plan expects must be present with exactly its shape and
//! dtype, and no other tensor may be present — a missing, extra, mis-shaped or mis-typed tensor,
//! or a truncated or corrupt file, is one error naming the file and the tensor (expected vs
//! found). The loaded values are then counted against the formulas like an allocation.

use crate::error::ModelError;
use crate::format::shape_text;
use crate::plan::ModelPlan;
use crate::weights::{check_ceiling, verify, LayerWeights, WeightTensor, Weights};
use safetensors::tensor::{Dtype, SafeTensorError, TensorView};
use safetensors::SafeTensors;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// Why a weight file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WeightFileError {
    #[error("{path}: cannot read the weight file: {reason}")]
    Io { path: String, reason: String },
    #[error("{path}: not a valid safetensors file: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("{path}: tensor `{tensor}` is missing (model `{model}` expects {expected} f32)")]
    Missing {
        path: String,
        model: String,
        tensor: String,
        expected: String,
    },
    #[error("{path}: tensor `{tensor}` is not a parameter of model `{model}` (it has {known}); was the file written for another model?")]
    Extra {
        path: String,
        model: String,
        tensor: String,
        known: String,
    },
    #[error("{path}: tensor `{tensor}` has shape {found}, expected {expected}")]
    Shape {
        path: String,
        tensor: String,
        expected: String,
        found: String,
    },
    #[error("{path}: tensor `{tensor}` has dtype {found}, expected F32")]
    Dtype {
        path: String,
        tensor: String,
        found: String,
    },
    #[error("{path}: cannot write: {reason}")]
    Write { path: String, reason: String },
}

impl From<WeightFileError> for ModelError {
    fn from(e: WeightFileError) -> Self {
        ModelError::WeightFile(Box::new(e))
    }
}

fn corrupt(path: &str, e: SafeTensorError) -> WeightFileError {
    let reason = match e {
        SafeTensorError::HeaderTooSmall => "truncated: too short to hold a header".to_string(),
        SafeTensorError::MetadataIncompleteBuffer => {
            "its size disagrees with its header; it is truncated, or has bytes appended".to_string()
        }
        SafeTensorError::TensorInvalidInfo | SafeTensorError::InvalidTensorView(..) => {
            "a tensor's shape, dtype and byte range disagree".to_string()
        }
        SafeTensorError::InvalidHeaderDeserialization(_)
        | SafeTensorError::InvalidHeader(_)
        | SafeTensorError::InvalidHeaderLength
        | SafeTensorError::HeaderTooLarge => {
            "its header is not valid; the file is cut inside the header, or is something else"
                .to_string()
        }
        SafeTensorError::InvalidOffset(t) | SafeTensorError::TensorNotFound(t) => {
            format!("the data of tensor `{t}` is not where the header says")
        }
        other => other.to_string(),
    };
    WeightFileError::Corrupt {
        path: path.to_string(),
        reason,
    }
}

/// Reads `path` and returns the weights of `plan`, checked tensor by tensor and then counted
/// against the formulas. Refuses models over `max_bytes` before reading.
pub fn load_weights(plan: &ModelPlan, path: &Path, max_bytes: u128) -> Result<Weights, ModelError> {
    check_ceiling(plan, max_bytes)?;
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| WeightFileError::Io {
        path: shown.clone(),
        reason: match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            _ => e.to_string(),
        },
    })?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(&shown, e))?;
    let present: HashMap<String, TensorView<'_>> = file
        .iter()
        .map(|(name, view)| (name.to_string(), view))
        .collect();

    let mut expected_names = BTreeSet::new();
    let mut layers = Vec::with_capacity(plan.layers().len());
    for layer in plan.layers() {
        let mut tensors = Vec::with_capacity(layer.params.len());
        for p in &layer.params {
            let name = format!("{}.{}", layer.name, p.name);
            let view = present.get(&name).ok_or_else(|| WeightFileError::Missing {
                path: shown.clone(),
                model: plan.name().to_string(),
                tensor: name.clone(),
                expected: shape_text(&p.shape),
            })?;
            if view.dtype() != Dtype::F32 {
                return Err(WeightFileError::Dtype {
                    path: shown.clone(),
                    tensor: name,
                    found: format!("{:?}", view.dtype()),
                }
                .into());
            }
            if view.shape() != p.shape.as_slice() {
                return Err(WeightFileError::Shape {
                    path: shown.clone(),
                    tensor: name,
                    expected: shape_text(&p.shape),
                    found: shape_text(view.shape()),
                }
                .into());
            }
            let what = format!("{name} ({} values)", p.len());
            let mut data =
                cnn_tensor::try_zeroed(p.len(), &what).map_err(|source| ModelError::Alloc {
                    model: plan.name().to_string(),
                    source,
                })?;
            // safetensors stores little-endian values; the slice may be unaligned for f32.
            for (v, b) in data.iter_mut().zip(view.data().chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            tensors.push(WeightTensor {
                name: p.name.clone(),
                shape: p.shape.clone(),
                data,
            });
            expected_names.insert(name);
        }
        layers.push(LayerWeights { tensors });
    }
    let mut extra: Vec<&String> = present
        .keys()
        .filter(|n| !expected_names.contains(*n))
        .collect();
    extra.sort();
    if let Some(first) = extra.first() {
        let known: Vec<&str> = expected_names.iter().map(String::as_str).collect();
        return Err(WeightFileError::Extra {
            path: shown,
            model: plan.name().to_string(),
            tensor: first.to_string(),
            known: if known.is_empty() {
                "no parameters".to_string()
            } else {
                known.join(", ")
            },
        }
        .into());
    }
    let weights = Weights { layers };
    verify(plan, &weights)?;
    Ok(weights)
}

/// Writes `weights` of `plan` to `path` as safetensors, with the model name as metadata.
pub fn save_weights(plan: &ModelPlan, weights: &Weights, path: &Path) -> Result<(), ModelError> {
    verify(plan, weights)?;
    let shown = path.display().to_string();
    let write_err = |reason: String| WeightFileError::Write {
        path: shown.clone(),
        reason,
    };
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (layer, held) in plan.layers().iter().zip(&weights.layers) {
        for t in &held.tensors {
            let bytes: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            buffers.push((format!("{}.{}", layer.name, t.name), t.shape.clone(), bytes));
        }
    }
    let mut views = Vec::with_capacity(buffers.len());
    for (name, shape, bytes) in &buffers {
        let view = TensorView::new(Dtype::F32, shape.clone(), bytes)
            .map_err(|e| write_err(e.to_string()))?;
        views.push((name.clone(), view));
    }
    // One metadata entry only: a HashMap of several would serialise in a random order, and the
    // same seed must give the same bytes.
    let metadata = HashMap::from([("model".to_string(), plan.name().to_string())]);
    // Serialise in memory and write with the user's umask (serialize_to_file goes through a
    // temporary file whose name would show in errors and whose mode would be 0600).
    let bytes =
        safetensors::serialize(views, Some(metadata)).map_err(|e| write_err(e.to_string()))?;
    std::fs::write(path, bytes).map_err(|e| write_err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_model;
    use crate::plan::plan;
    use crate::weights::{allocate, DEFAULT_MAX_WEIGHT_BYTES};

    fn small() -> ModelPlan {
        let text = "name = \"s\"\n[input]\nchannels = 2\nheight = 6\nwidth = 6\n\
                    [[layers]]\ntype = \"conv2d\"\nfilters = 3\nkernel = 3\n\
                    [[layers]]\ntype = \"batchnorm\"\n\
                    [[layers]]\ntype = \"flatten\"\n\
                    [[layers]]\ntype = \"dense\"\nunits = 2\n";
        plan(&parse_model(text, "s.toml").unwrap()).unwrap()
    }

    /// Writes a safetensors file with the given (name, dtype, shape, bytes).
    fn write(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None, path).unwrap();
    }

    fn f32_bytes(n: usize) -> Vec<u8> {
        (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
    }

    fn all_tensors(p: &ModelPlan) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
        p.layers()
            .iter()
            .flat_map(|l| {
                l.params.iter().map(move |t| {
                    (
                        format!("{}.{}", l.name, t.name),
                        Dtype::F32,
                        t.shape.clone(),
                        f32_bytes(t.len()),
                    )
                })
            })
            .collect()
    }

    fn write_owned(path: &Path, t: &[(String, Dtype, Vec<usize>, Vec<u8>)]) {
        let borrowed: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = t
            .iter()
            .map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone()))
            .collect();
        write(path, &borrowed);
    }

    #[test]
    fn round_trip() {
        let p = small();
        let w = allocate(&p, 4, DEFAULT_MAX_WEIGHT_BYTES).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.safetensors");
        save_weights(&p, &w, &f).unwrap();
        let back = load_weights(&p, &f, DEFAULT_MAX_WEIGHT_BYTES).unwrap();
        assert_eq!(back, w);
    }

    #[test]
    fn every_defect_names_the_tensor() {
        let p = small();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.safetensors");
        let load = || {
            load_weights(&p, &f, DEFAULT_MAX_WEIGHT_BYTES)
                .unwrap_err()
                .to_string()
        };

        let mut t = all_tensors(&p);
        t.retain(|x| x.0 != "batchnorm_1.moving_mean");
        write_owned(&f, &t);
        assert!(
            load().contains("tensor `batchnorm_1.moving_mean` is missing"),
            "{}",
            load()
        );

        let mut t = all_tensors(&p);
        t.push(("dense_9.weight".into(), Dtype::F32, vec![2], f32_bytes(2)));
        write_owned(&f, &t);
        assert!(
            load().contains("tensor `dense_9.weight` is not a parameter of model `s`"),
            "{}",
            load()
        );

        let mut t = all_tensors(&p);
        t[0].2 = vec![3, 2, 9];
        write_owned(&f, &t);
        assert!(
            load().contains("`conv2d_1.weight` has shape 3x2x9, expected 3x2x3x3"),
            "{}",
            load()
        );

        let mut t = all_tensors(&p);
        t[1] = (
            t[1].0.clone(),
            Dtype::F64,
            vec![3],
            (0..24).map(|_| 0u8).collect(),
        );
        write_owned(&f, &t);
        assert!(
            load().contains("`conv2d_1.bias` has dtype F64, expected F32"),
            "{}",
            load()
        );

        write_owned(&f, &all_tensors(&p));
        let bytes = std::fs::read(&f).unwrap();
        std::fs::write(&f, &bytes[..bytes.len() - 7]).unwrap();
        assert!(
            load().contains("not a valid safetensors file"),
            "{}",
            load()
        );
        std::fs::write(&f, b"garbage").unwrap();
        assert!(
            load().contains("not a valid safetensors file"),
            "{}",
            load()
        );
        std::fs::remove_file(&f).unwrap();
        assert!(load().contains("no such file"), "{}", load());
    }
}
