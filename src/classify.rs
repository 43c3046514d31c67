//! Forward passes over many inputs: pictures are decoded in parallel, grouped into batches,
//! and the batches run in parallel (rayon), with a progress bar on a terminal when there are
//! more than a handful. Returns one output vector (or map) per input, in input order.

use crate::pictures::load_picture;
use crate::{Model, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::io::IsTerminal;
use std::path::PathBuf;

/// Pictures per forward pass.
pub const BATCH: usize = 32;

/// More inputs than this show a progress bar (when stderr is a terminal).
const PROGRESS_THRESHOLD: usize = 16;

fn progress(len: usize) -> ProgressBar {
    if len <= PROGRESS_THRESHOLD || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} pictures {per_sec} {eta}")
    {
        bar.set_style(style);
    }
    bar
}

/// Runs `model` on every picture; returns each picture's output values.
pub fn run_pictures(model: &Model, paths: &[PathBuf]) -> Result<Vec<Vec<f32>>, String> {
    let spec = &model.plan.spec;
    let bar = progress(paths.len());
    let inputs: Vec<Vec<f32>> = paths
        .par_iter()
        .map(|p| load_picture(p, &spec.input, &spec.preprocess))
        .collect::<Result<_, _>>()?;
    let item_shape = spec.input.shape();
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
    bar.finish_and_clear();
    Ok(batches.into_iter().flatten().collect())
}
