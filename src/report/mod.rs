//! Renders what the model crate computed — plans, explanations, comparisons, forward-pass
//! results — as terminal tables, Markdown or JSON. Nothing here computes a count; it only
//! formats numbers the engine derived.

pub mod compare;
pub mod explain;
pub mod run;
pub mod summary;
pub mod table;

use cnn_model::{ModelPlan, Source};

/// `[32, 26, 26]` -> `(32, 26, 26)`, Keras' way of printing shapes (without the batch).
pub fn paren_shape(shape: &[usize]) -> String {
    let inner: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    if inner.len() == 1 {
        format!("({},)", inner[0])
    } else {
        format!("({})", inner.join(", "))
    }
}

/// The names a layer reads from (`input` for the model input).
pub fn input_names(plan: &ModelPlan, inputs: &[Source]) -> Vec<String> {
    inputs
        .iter()
        .map(|s| match s {
            Source::Input => "input".to_string(),
            Source::Layer(i) => plan.layers[*i].name.clone(),
        })
        .collect()
}

/// True when every layer reads the one before it (then "Connected to" is noise).
pub fn is_sequential(plan: &ModelPlan) -> bool {
    plan.layers.iter().enumerate().all(|(i, l)| {
        let expected = if i == 0 {
            Source::Input
        } else {
            Source::Layer(i - 1)
        };
        l.inputs == [expected]
    })
}
