//! Forward passes over many pictures: decoded in parallel, grouped into batches, and the
//! batches run in parallel (rayon), with a progress bar on a terminal when there are more than
//! a handful (one tick per decoded picture, one per picture classified). Outputs come back in
//! input order.

use crate::pictures::load_picture;
use crate::recipe::{Layout, Recipe, Target};
use crate::{Model, Tensor};
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

/// Decodes and preprocesses every picture into `target` (in parallel, in order).
pub fn load_pictures(
    recipe: &Recipe,
    target: &Target,
    paths: &[PathBuf],
    bar: &ProgressBar,
) -> Result<Vec<Vec<f32>>, String> {
    paths
        .par_iter()
        .map(|p| {
            let x = load_picture(p, recipe, target);
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

/// A model file's recipe (its `[input]` table and labels) and where its pictures must end.
pub fn model_file_recipe(model: &Model) -> (Recipe, Target) {
    let spec = &model.plan.spec;
    let recipe = Recipe::of_model_file(&spec.preprocess, spec.labels.as_deref());
    (recipe, model_file_target(model))
}

/// A model file's input as a picture target (always NCHW).
pub fn model_file_target(model: &Model) -> Target {
    let input = &model.plan.spec.input;
    Target {
        channels: input.channels,
        height: input.height,
        width: input.width,
        layout: Layout::Nchw,
    }
}

/// Decodes and runs every picture with the model file's own recipe; returns each picture's
/// output values.
pub fn run_pictures(model: &Model, paths: &[PathBuf]) -> Result<Vec<Vec<f32>>, String> {
    let bar = progress(paths.len());
    let (recipe, target) = model_file_recipe(model);
    let inputs = load_pictures(&recipe, &target, paths, &bar)?;
    let out = run_batches(model, &inputs, &bar);
    bar.finish_and_clear();
    out
}

/// Softmax of one output vector in place (the kernels' softmax over one channel axis).
pub fn softmax(values: &mut [f32]) {
    let n = values.len();
    cnn_conv::softmax_channels(values, 1, n, 1);
}

/// How outputs are ranked for `recipe`: the recipe's labels, which must name every class of a
/// vector output, and softmax probabilities when the model ends in softmax or the recipe asks
/// for them. The second value says whether the caller must apply [`softmax`] to each item's
/// output values first (the recipe asked and the model does not end in one).
pub fn ranking_for<'a>(
    recipe: &'a Recipe,
    item_shape: &[usize],
    ends_in_softmax: bool,
    k: usize,
) -> Result<(crate::report::run::Ranking<'a>, bool), String> {
    let vector = item_shape.len() == 1;
    if let (Some(labels), true) = (&recipe.labels, vector) {
        if labels.len() != item_shape[0] {
            return Err(format!(
                "the labels name {} classes but the model's output has {} (from {})",
                labels.len(),
                item_shape[0],
                recipe.sources.join(" + ")
            ));
        }
    }
    let apply_softmax = recipe.softmax && vector && !ends_in_softmax;
    let ranking = crate::report::run::Ranking {
        k,
        probabilities: ends_in_softmax || apply_softmax,
        labels: recipe.labels.as_deref(),
    };
    Ok((ranking, apply_softmax))
}
