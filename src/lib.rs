//! `cnn`: a CPU inference engine for convolutional networks that shows its arithmetic.
//!
//! This facade re-exports the engine crates — [`tensor`] (the NCHW tensor), [`conv`] (im2col +
//! GEMM and the other kernels), [`graph`] (the one graph IR: plan records, compile passes,
//! executor), [`model`] (the model-file front door) and [`onnx_import`] (the ONNX front door)
//! — and holds what the `cnn` command line needs on top of them: opening a model by its kind
//! ([`front`]), `.npy` input/output ([`npy`]), report rendering ([`report`]) and the demo
//! ([`demo`]).

pub use cnn_conv as conv;
pub use cnn_graph as graph;
pub use cnn_model as model;
pub use cnn_onnx as onnx_import;
pub use cnn_tensor as tensor;

pub use cnn_model::{Model, ModelError, ModelPlan, DEFAULT_MAX_WEIGHT_BYTES};
pub use cnn_tensor::Tensor;

pub mod bench;
pub mod classify;
pub mod demo;
pub mod front;
pub mod npy;
pub mod pictures;
pub mod recipe;
pub mod report;

/// The one-line message for a file that cannot be opened or read: `PATH: no such file`, or
/// `PATH: cannot VERB: why`.
pub fn file_error(path: &std::path::Path, verb: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => format!("{}: no such file", path.display()),
        _ => format!("{}: cannot {verb}: {e}", path.display()),
    }
}

/// `n` seeded uniform values in `[0, 1)` (ChaCha8: the same on every machine), or an error
/// when memory cannot be had.
pub fn random_values(n: usize, seed: u64) -> Result<Vec<f32>, String> {
    use rand::{Rng, SeedableRng};
    let mut v = cnn_tensor::try_zeroed(n, "the random input").map_err(|e| e.to_string())?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    v.iter_mut().for_each(|x| *x = rng.random::<f32>());
    Ok(v)
}

/// A seeded batch of uniform values in `[0, 1)` shaped `[n, C, H, W]` for `plan`'s input.
pub fn random_input(plan: &ModelPlan, n: usize, seed: u64) -> Result<Tensor, String> {
    let mut shape = vec![n];
    shape.extend(plan.input_shape());
    let len = cnn_tensor::element_count(&shape).map_err(|e| e.to_string())?;
    Tensor::from_vec(&shape, random_values(len, seed)?).map_err(|e| e.to_string())
}
