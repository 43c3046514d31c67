//! `cnn run`: the results of a forward pass. A vector output (classifier) gives, per input, the
//! top class with its label, its probability (or raw score when the model does not end in
//! softmax) and the top K; a feature-map output gives its shape and value range. JSON follows
//! the contract in `docs/cli.md`.

use super::table::{Align, Table};
use cnn_tensor::format_shape;
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

/// One input (a picture, or one batch item of an array).
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
    /// What was done to each picture (resize, crop, channels, arithmetic, layout, and where
    /// the recipe came from); absent when no picture was run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preprocessing: Option<String>,
    pub results: Vec<ResultJson>,
}

/// How to name and rank classes.
pub struct Ranking<'a> {
    /// How many classes to list.
    pub k: usize,
    /// True when outputs are softmax probabilities (else raw scores).
    pub probabilities: bool,
    /// Class names from the model file.
    pub labels: Option<&'a [String]>,
}

impl Ranking<'_> {
    /// The top `k` entries of `values`, highest first (ties keep the lower class first).
    pub fn top(&self, values: &[f32]) -> Vec<TopJson> {
        let mut idx: Vec<usize> = (0..values.len()).collect();
        idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
        idx.into_iter()
            .take(self.k.max(1))
            .map(|c| TopJson {
                class: c,
                label: cnn_model::spec::class_label(self.labels, c),
                probability: self.probabilities.then_some(values[c]),
                score: (!self.probabilities).then_some(values[c]),
            })
            .collect()
    }
}

/// The result for one input's output values (`item_shape` without the batch).
pub fn result(
    input: &str,
    index: usize,
    values: &[f32],
    item_shape: &[usize],
    ranking: &Ranking<'_>,
) -> ResultJson {
    let top = if item_shape.len() == 1 {
        ranking.top(values)
    } else {
        Vec::new()
    };
    let first = top.first().cloned();
    let (min, max, sum) = values.iter().fold(
        (f32::INFINITY, f32::NEG_INFINITY, 0f64),
        |(lo, hi, s), &v| (lo.min(v), hi.max(v), s + v as f64),
    );
    ResultJson {
        input: input.to_string(),
        index,
        class: first.as_ref().map(|t| t.class),
        label: first.as_ref().map(|t| t.label.clone()),
        probability: first.as_ref().and_then(|t| t.probability),
        score: first.as_ref().and_then(|t| t.score),
        top,
        output_shape: item_shape.to_vec(),
        min,
        max,
        mean: (sum / values.len().max(1) as f64) as f32,
    }
}

/// The terminal table.
pub fn render(run: &RunJson, k: usize) -> String {
    let vector = run.results.first().is_some_and(|r| r.class.is_some());
    let batched = run.results.iter().any(|r| r.index > 0);
    let value_name = if run.results.first().is_some_and(|r| r.probability.is_some()) {
        "probability"
    } else {
        "score"
    };
    let mut headers = vec![("input", Align::Left)];
    if batched {
        headers.push(("item", Align::Right));
    }
    if vector {
        headers.extend([
            ("predicted", Align::Right),
            (value_name, Align::Right),
            ("top", Align::Left),
        ]);
    } else {
        headers.extend([
            ("output", Align::Left),
            ("min", Align::Right),
            ("max", Align::Right),
            ("mean", Align::Right),
        ]);
    }
    let mut t = Table::new(&headers);
    for r in &run.results {
        let mut row = vec![r.input.clone()];
        if batched {
            row.push(r.index.to_string());
        }
        if vector {
            let top: Vec<String> = r
                .top
                .iter()
                .take(k)
                .map(|t| format!("{} ({:.3})", t.label, t.value()))
                .collect();
            row.extend([
                r.label.clone().unwrap_or_default(),
                format!("{:.4}", r.probability.or(r.score).unwrap_or(f32::NAN)),
                top.join(", "),
            ]);
        } else {
            row.extend([
                format_shape(&r.output_shape),
                format!("{:.4}", r.min),
                format!("{:.4}", r.max),
                format!("{:.4}", r.mean),
            ]);
        }
        t.row(row);
    }
    let pictures = run
        .preprocessing
        .as_ref()
        .map(|p| format!("Pictures: {p}\n"))
        .unwrap_or_default();
    format!("Model \"{}\"\n{pictures}\n{}", run.model, t.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_by_value_and_uses_labels() {
        let labels = vec!["cat".to_string(), "dog".to_string(), "owl".to_string()];
        let r = Ranking {
            k: 2,
            probabilities: true,
            labels: Some(&labels),
        };
        let t = r.top(&[0.1, 0.7, 0.2]);
        assert_eq!(
            t.iter().map(|x| x.label.as_str()).collect::<Vec<_>>(),
            ["dog", "owl"]
        );
    }
}
