//! What an exporter did to a model's parameters, detected from the file — so that `summary`
//! can say why its totals differ from the framework's count instead of leaving the user to
//! wonder. Three facts are looked for, each from the file's own contents, never guessed:
//!
//! - **Shared initializers**: one float tensor read by several nodes (the legacy PyTorch
//!   exporter merges identical tensors — all-zero biases, say — and reads them through
//!   `Identity`). It is counted once; the note gives what one copy per reader would add.
//! - **Folded BatchNorm**: convolutions whose weights or biases are tensors the exporter
//!   computed rather than module parameters — named `onnx::Conv_*` (the legacy exporter's
//!   constant folding, `TrainingMode.EVAL`) or `<weight>_bias` (the default exporter's
//!   BatchNorm fold) — in a graph with no BatchNormalization left on them.
//! - **Convolutions and Gemms without a bias** that feed no BatchNormalization, the shape
//!   exporters leave when they drop all-zero biases (or fold a BatchNorm whose shift is zero,
//!   as an untrained one's is, and then drop that bias).
//!
//! It does not change any count: the totals are always those of the file.

use crate::load::OnnxModel;
use crate::ops::Op;
use cnn_graph::formula::group_digits;
use std::collections::{HashMap, HashSet};

/// One line per detected fact (empty when the file shows none).
pub fn export_notes(model: &OnnxModel) -> Vec<String> {
    let index = Index::new(model);
    [
        shared_initializers(&index),
        folded_batchnorm(&index),
        missing_biases(&index),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// What the rules look up, built once (a file may hold many thousands of nodes).
struct Index<'a> {
    model: &'a OnnxModel,
    /// Float initializers' shapes.
    shapes: HashMap<&'a str, &'a [usize]>,
    /// The node producing each value, and the nodes reading it.
    producer: HashMap<&'a str, usize>,
    consumers: HashMap<&'a str, Vec<usize>>,
    /// Values a BatchNormalization normalises.
    normalised: HashSet<&'a str>,
}

impl<'a> Index<'a> {
    fn new(model: &'a OnnxModel) -> Self {
        let mut index = Index {
            model,
            shapes: model
                .initializers
                .iter()
                .filter(|(_, c)| c.as_f32().is_some())
                .map(|(n, c)| (n.as_str(), c.shape.as_slice()))
                .collect(),
            producer: HashMap::new(),
            consumers: HashMap::new(),
            normalised: HashSet::new(),
        };
        for (i, node) in model.nodes.iter().enumerate() {
            index.producer.insert(node.output(), i);
            for input in node.inputs.iter().flatten() {
                index.consumers.entry(input.as_str()).or_default().push(i);
            }
            if let (Op::BatchNormalization { .. }, Some(x)) = (&node.op, node.input(0)) {
                index.normalised.insert(x);
            }
        }
        index
    }

    /// True when `name` is a float initializer, a folded constant, or (to `depth` levels) a
    /// layout op over one — a reshaped bias.
    fn is_constant(&self, name: &str, depth: usize) -> bool {
        if self.shapes.contains_key(name) || self.model.constants.contains_key(name) {
            return true;
        }
        let Some(&p) = self.producer.get(name) else {
            return false;
        };
        let n = &self.model.nodes[p];
        depth > 0
            && matches!(
                n.op_type.as_str(),
                "Reshape" | "Unsqueeze" | "Squeeze" | "Cast" | "Identity" | "Transpose"
            )
            && n.input(0).is_some_and(|i| self.is_constant(i, depth - 1))
    }

    /// True when `value`, through ops that only move or retype it, meets an Add or Sub with a
    /// constant operand (a bias added separately, as Keras exports do, or a BatchNorm written
    /// as arithmetic), a BatchNormalization, or another convolution.
    fn shifted_after(&self, value: &str) -> bool {
        let mut current = value;
        for _ in 0..8 {
            let Some([next]) = self.consumers.get(current).map(Vec::as_slice) else {
                return false;
            };
            let node = &self.model.nodes[*next];
            match node.op_type.as_str() {
                "BatchNormalization" => return true,
                "Add" | "Sub" => {
                    let other = node.inputs.iter().flatten().find(|i| i.as_str() != current);
                    return other.is_some_and(|o| self.is_constant(o, 8));
                }
                // Straight into another convolution (a separable convolution's depthwise
                // half): a bias there would be absorbed by the next layer's.
                "Conv" => return true,
                "Transpose" | "Cast" | "Identity" | "Reshape" | "Squeeze" | "Unsqueeze" => {
                    current = node.output();
                }
                _ => return false,
            }
        }
        false
    }
}

fn shared_initializers(index: &Index) -> Option<String> {
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for node in &index.model.nodes {
        let mut seen: HashSet<&str> = HashSet::new();
        for input in node.inputs.iter().flatten() {
            if index.shapes.contains_key(input.as_str()) && seen.insert(input) {
                *readers.entry(input).or_default() += 1;
            }
        }
    }
    let shared: Vec<(&str, usize)> = readers.into_iter().filter(|&(_, r)| r > 1).collect();
    if shared.is_empty() {
        return None;
    }
    let extra: u64 = shared
        .iter()
        .map(|&(n, r)| (r as u64 - 1) * index.shapes[n].iter().product::<usize>() as u64)
        .sum();
    let reads: usize = shared.iter().map(|&(_, r)| r).sum();
    Some(format!(
        "{} float initializers are read by several nodes ({reads} reads): each is counted once, \
         at its first reader; a copy per reader would add {} parameters (exporters merge \
         identical tensors, such as all-zero biases)",
        shared.len(),
        group_digits(extra as u128)
    ))
}

/// True for a tensor name the exporter made rather than a module parameter's.
fn computed_by_exporter(name: &str, weight: &str) -> bool {
    name.starts_with("onnx::Conv_") || name == format!("{weight}_bias")
}

fn folded_batchnorm(index: &Index) -> Option<String> {
    let mut folded = Vec::new();
    for node in &index.model.nodes {
        let (Op::Conv { .. }, Some(weight)) = (&node.op, node.input(1)) else {
            continue;
        };
        if !index.shapes.contains_key(weight) || index.normalised.contains(node.output()) {
            continue;
        }
        // A fold writes a new bias (the BatchNorm's shift); an exporter-made weight alone may
        // be a layout change (Keras' HWIO kernels transposed to OIHW), not a fold.
        let bias = node.input(2).filter(|b| index.shapes.contains_key(b));
        if let Some(b) = bias.filter(|b| computed_by_exporter(b, weight)) {
            folded.push(b);
        }
    }
    let first = folded.first()?;
    Some(format!(
        "the exporter folded BatchNorm into {} convolutions (their weights or biases are tensors \
         it computed, such as '{first}', and no BatchNormalization follows them): the counts \
         are the file's, one bias per channel where the framework counts the BatchNorm's 4",
        folded.len()
    ))
}

fn missing_biases(index: &Index) -> Option<String> {
    let (mut convs, mut gemms, mut conv_total, mut gemm_total) = (0, 0, 0, 0);
    let mut channels = 0u64;
    for node in &index.model.nodes {
        let Some(shape) = node.input(1).and_then(|w| index.shapes.get(w)) else {
            continue;
        };
        // Output channels: Conv's first weight dimension; Gemm's N.
        let (is_conv, outputs) = match node.op {
            Op::Conv { .. } => (true, shape.first()),
            Op::Gemm { trans_b, .. } => (false, shape.get(usize::from(!trans_b))),
            _ => continue,
        };
        if is_conv {
            conv_total += 1;
        } else {
            gemm_total += 1;
        }
        let unbiased = node.input(2).is_none()
            && !index.normalised.contains(node.output())
            && !index.shifted_after(node.output());
        if unbiased {
            channels += outputs.copied().unwrap_or(0) as u64;
            if is_conv {
                convs += 1;
            } else {
                gemms += 1;
            }
        }
    }
    if convs + gemms == 0 {
        return None;
    }
    Some(format!(
        "{convs} of {conv_total} Conv and {gemms} of {gemm_total} Gemm nodes have no bias and \
         feed no BatchNormalization: if the model they came from has a bias or a BatchNorm \
         there, the exporter dropped or folded it (exporters fold BatchNorm and drop all-zero \
         biases; one bias per output channel would hold {} values)",
        group_digits(channels as u128)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exporter_made_names() {
        assert!(computed_by_exporter("onnx::Conv_193", "onnx::Conv_193"));
        assert!(computed_by_exporter("conv1.weight_bias", "conv1.weight"));
        assert!(!computed_by_exporter("conv1.bias", "conv1.weight"));
    }
}
