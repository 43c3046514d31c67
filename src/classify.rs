//! Forward passes over many pictures: decoded in parallel, grouped into batches, and the
//! batches run in parallel (rayon), with a progress bar on a terminal when there are more than
//! a handful (one tick per decoded picture, one per picture classified). Outputs come back in
//! input order.

use crate::pictures::load_picture;
use crate::{Model, Tensor};
use cnn_model::ModelSpec;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::io::IsTerminal;
use std::path::PathBuf;

/// Pictures per forward pass.
pub const BATCH: usize = 32;

/// More pictures than this show a progress bar (when stderr is a terminal).
const PROGRESS_THRESHOLD: usize = 16;

/// A progress bar over `pictures` pictures (decoding, then classifying), hidden when there
/// are few or stderr is not a terminal.
pub fn progress(pictures: usize) -> ProgressBar {
    if pictures <= PROGRESS_THRESHOLD || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(2 * pictures as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {bar:40} {percent}% of {msg} pictures decoded and classified, eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(pictures.to_string());
    bar
}

/// Decodes and preprocesses every picture for `spec` (in parallel, in order).
pub fn load_pictures(
    spec: &ModelSpec,
    paths: &[PathBuf],
    bar: &ProgressBar,
) -> Result<Vec<Vec<f32>>, String> {
    paths
        .par_iter()
        .map(|p| {
            let x = load_picture(p, &spec.input, &spec.preprocess);
            bar.inc(1);
            x
        })
        .collect()
}

/// Runs `model` on decoded pictures in batches of [`BATCH`], batches in parallel.
pub fn run_batches(
    model: &Model,
    inputs: &[Vec<f32>],
    bar: &ProgressBar,
) -> Result<Vec<Vec<f32>>, String> {
    let item_shape = model.plan.input_shape();
    let batches: Vec<Vec<Vec<f32>>> = inputs
        .par_chunks(BATCH)
        .map(|chunk| {
            let mut shape = vec![chunk.len()];
            shape.extend_from_slice(&item_shape);
            let data: Vec<f32> = chunk.iter().flatten().copied().collect();
            let x = Tensor::from_vec(&shape, data).map_err(|e| e.to_string())?;
            let y = model.forward(&x).map_err(|e| e.to_string())?;
            bar.inc(chunk.len() as u64);
            let per = y.len() / chunk.len();
            Ok(y.as_slice().chunks(per).map(<[f32]>::to_vec).collect())
        })
        .collect::<Result<_, String>>()?;
    Ok(batches.into_iter().flatten().collect())
}

/// Decodes and runs every picture; returns each picture's output values.
pub fn run_pictures(model: &Model, paths: &[PathBuf]) -> Result<Vec<Vec<f32>>, String> {
    let bar = progress(paths.len());
    let inputs = load_pictures(&model.plan.spec, paths, &bar)?;
    let out = run_batches(model, &inputs, &bar);
    bar.finish_and_clear();
    out
}
