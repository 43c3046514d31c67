//! `cnn run`: the results of a forward pass. A vector output (classifier) gives, per batch
//! item, the top class, its probability and the top K; a feature-map output gives its shape and
//! value range. JSON follows the contract in `docs/cli.md`.

use super::table::{Align, Table};
use cnn_tensor::{format_shape, Tensor};
use serde::Serialize;

/// One ranked class. `probability` when the model ends in softmax, `score` otherwise.
#[derive(Debug, Serialize, Clone)]
pub struct TopJson {
    pub class: usize,
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

impl TopJson {
    /// The value, whichever it is.
    pub fn value(&self) -> f32 {
        self.probability.or(self.score).unwrap_or(f32::NAN)
    }
}

/// One batch item.
#[derive(Debug, Serialize)]
pub struct ResultJson {
    pub input: String,
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<TopJson>,
    pub output_shape: Vec<usize>,
    pub min: f32,
    pub max: f32,
    pub mean: f32,
}

/// `run --format json`.
#[derive(Debug, Serialize)]
pub struct RunJson {
    pub model: String,
    pub results: Vec<ResultJson>,
}

/// The top `k` entries of `values`, highest first (ties keep the lower class first).
pub fn top_k(values: &[f32], k: usize, probabilities: bool) -> Vec<TopJson> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.into_iter()
        .take(k)
        .map(|c| TopJson {
            class: c,
            label: c.to_string(),
            probability: probabilities.then_some(values[c]),
            score: (!probabilities).then_some(values[c]),
        })
        .collect()
}

/// Builds the results for `output` (`[N, …]`) of a run on `input_name`.
/// `probabilities` says whether the outputs are softmax probabilities (else raw scores).
pub fn results(
    model: &str,
    input_name: &str,
    output: &Tensor,
    k: usize,
    probabilities: bool,
) -> RunJson {
    let n = output.batch().max(1);
    let item_shape = output.item_shape().to_vec();
    let per = output.len() / n;
    let vector = item_shape.len() == 1;
    let results = output
        .as_slice()
        .chunks(per.max(1))
        .enumerate()
        .map(|(index, item)| {
            let top = if vector {
                top_k(item, k.max(1), probabilities)
            } else {
                Vec::new()
            };
            let first = top.first().cloned();
            let (min, max, sum) = item.iter().fold(
                (f32::INFINITY, f32::NEG_INFINITY, 0f64),
                |(lo, hi, s), &v| (lo.min(v), hi.max(v), s + v as f64),
            );
            ResultJson {
                input: input_name.to_string(),
                index,
                class: first.as_ref().map(|t| t.class),
                label: first.as_ref().map(|t| t.label.clone()),
                probability: first.as_ref().and_then(|t| t.probability),
                score: first.as_ref().and_then(|t| t.score),
                top,
                output_shape: item_shape.clone(),
                min,
                max,
                mean: (sum / item.len().max(1) as f64) as f32,
            }
        })
        .collect();
    RunJson {
        model: model.to_string(),
        results,
    }
}

/// The terminal table.
pub fn render(run: &RunJson, k: usize) -> String {
    let vector = run.results.first().is_some_and(|r| r.class.is_some());
    let value_name = if run.results.first().is_some_and(|r| r.probability.is_some()) {
        "probability"
    } else {
        "score"
    };
    let mut t = if vector {
        Table::new(&[
            ("input", Align::Left),
            ("item", Align::Right),
            ("class", Align::Right),
            (value_name, Align::Right),
            ("top", Align::Left),
        ])
    } else {
        Table::new(&[
            ("input", Align::Left),
            ("item", Align::Right),
            ("output", Align::Left),
            ("min", Align::Right),
            ("max", Align::Right),
            ("mean", Align::Right),
        ])
    };
    for r in &run.results {
        if vector {
            let top: Vec<String> = r
                .top
                .iter()
                .take(k)
                .map(|t| format!("{} ({:.3})", t.label, t.value()))
                .collect();
            t.row(vec![
                r.input.clone(),
                r.index.to_string(),
                r.label.clone().unwrap_or_default(),
                format!("{:.4}", r.probability.or(r.score).unwrap_or(f32::NAN)),
                top.join(", "),
            ]);
        } else {
            t.row(vec![
                r.input.clone(),
                r.index.to_string(),
                format_shape(&r.output_shape),
                format!("{:.4}", r.min),
                format!("{:.4}", r.max),
                format!("{:.4}", r.mean),
            ]);
        }
    }
    format!("Model \"{}\"\n\n{}", run.model, t.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_by_value() {
        let t = top_k(&[0.1, 0.7, 0.2], 2, true);
        assert_eq!(t.iter().map(|x| x.class).collect::<Vec<_>>(), vec![1, 2]);
    }
}
