//! Execution-only rewrites of a planned graph, as inference engines do: a BatchNormalization
//! whose input is a convolution's output (read by nothing else) is folded into that
//! convolution's weights and bias, and a Relu/Sigmoid/Tanh — or a Clip with constant bounds,
//! such as MobileNet's ReLU6 — that is the only reader of a
//! convolution's output — directly or through a folded BatchNormalization — is fused into the
//! convolution's output pass. The folded-away nodes become [`Kernel::Alias`] (their value is
//! the convolution's output, moved, not copied). Last, every convolution whose (folded)
//! weights are constants gets them packed once into the GEMM's panel layout
//! ([`cnn_conv::PackedWeights`]), as a model file's layers do on their first run. Shapes,
//! parameter counts and the summary are those of the graph as written; only the work changes.

use crate::load::OnnxModel;
use crate::plan::{FoldedConv, Kernel, NodePlan, Scalar, UnaryOp};
use cnn_conv::Activation;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

struct Graph<'a> {
    model: &'a OnnxModel,
    readers: HashMap<&'a str, usize>,
    outputs: HashSet<&'a str>,
    producer: HashMap<&'a str, usize>,
}

impl<'a> Graph<'a> {
    fn new(model: &'a OnnxModel) -> Self {
        let mut readers: HashMap<&str, usize> = HashMap::new();
        for n in &model.nodes {
            for i in n.inputs.iter().flatten() {
                *readers.entry(i.as_str()).or_default() += 1;
            }
        }
        Self {
            model,
            readers,
            outputs: model.outputs.iter().map(|s| s.as_str()).collect(),
            producer: model
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.output(), i))
                .collect(),
        }
    }

    /// The node producing node `i`'s first input, if that value is read only by node `i` and
    /// is not a graph output (so it may disappear into the producer).
    fn sole_producer(&self, i: usize) -> Option<usize> {
        let src = self.model.nodes[i].input(0)?;
        if self.readers.get(src) != Some(&1) || self.outputs.contains(src) {
            return None;
        }
        self.producer.get(src).copied()
    }

    fn floats(&self, i: usize, k: usize) -> Option<&'a [f32]> {
        let name = self.model.nodes[i].input(k)?;
        self.model.constant(name)?.as_f32()
    }
}

/// A Clip bound known when planning: `Some(None)` when absent, `Some(Some(v))` for a
/// constant, `None` when it is computed at run time.
fn bound(s: Scalar) -> Option<Option<f32>> {
    match s {
        Scalar::Absent => Some(None),
        Scalar::Const(v) => Some(Some(v)),
        Scalar::Input(_) => None,
    }
}

/// Applies both rewrites to `nodes` (indexed like `model.nodes`).
pub fn fuse(model: &OnnxModel, nodes: &mut [NodePlan]) {
    let g = Graph::new(model);
    // BatchNormalization node -> the convolution it was folded into.
    let mut folded_into: HashMap<usize, usize> = HashMap::new();
    for i in 0..nodes.len() {
        let Kernel::BatchNorm {
            channels, epsilon, ..
        } = nodes[i].kernel
        else {
            continue;
        };
        let Some(j) = g.sole_producer(i) else {
            continue;
        };
        let Kernel::Conv {
            geom,
            act: Activation::Linear,
            folded: None,
            ..
        } = nodes[j].kernel
        else {
            continue;
        };
        let stats = (1..=4).map(|k| g.floats(i, k)).collect::<Option<Vec<_>>>();
        let (Some(stats), Some(w)) = (stats, g.floats(j, 1)) else {
            continue; // statistics or weights computed at run time: nothing to fold
        };
        let bias = match model.nodes[j].input(2) {
            None => None,
            Some(_) => match g.floats(j, 2) {
                Some(b) => Some(b),
                None => continue,
            },
        };
        if geom.out_c != channels || w.len() % channels != 0 {
            continue;
        }
        let per = w.len() / channels;
        let (gamma, beta, mean, var) = (stats[0], stats[1], stats[2], stats[3]);
        let scale: Vec<f32> = (0..channels)
            .map(|c| gamma[c] / (var[c] + epsilon).sqrt())
            .collect();
        let weights = w
            .chunks_exact(per)
            .zip(&scale)
            .flat_map(|(row, &s)| row.iter().map(move |&v| v * s))
            .collect();
        let bias = (0..channels)
            .map(|c| (bias.map_or(0.0, |b| b[c]) - mean[c]) * scale[c] + beta[c])
            .collect();
        if let Kernel::Conv { folded, .. } = &mut nodes[j].kernel {
            *folded = Some(Arc::new(FoldedConv { weights, bias }));
        }
        nodes[i].kernel = Kernel::Alias;
        folded_into.insert(i, j);
    }
    for i in 0..nodes.len() {
        let act = match nodes[i].kernel {
            Kernel::Unary(UnaryOp::Relu) => Activation::Relu,
            Kernel::Unary(UnaryOp::Sigmoid) => Activation::Sigmoid,
            Kernel::Unary(UnaryOp::Tanh) => Activation::Tanh,
            // Bounds known when planning (attributes or constants): ReLU6 and friends.
            Kernel::Clip { min, max } => match (bound(min), bound(max)) {
                (Some(lo), Some(hi)) => Activation::Clip {
                    min: lo.unwrap_or(f32::NEG_INFINITY),
                    max: hi.unwrap_or(f32::INFINITY),
                },
                _ => continue,
            },
            _ => continue,
        };
        let Some(p) = g.sole_producer(i) else {
            continue;
        };
        let conv = folded_into.get(&p).copied().unwrap_or(p);
        if let Kernel::Conv {
            act: a @ Activation::Linear,
            ..
        } = &mut nodes[conv].kernel
        {
            *a = act;
            nodes[i].kernel = Kernel::Alias;
        }
    }
    for (j, node) in nodes.iter_mut().enumerate() {
        if let Kernel::Conv {
            geom,
            folded,
            packed,
            ..
        } = &mut node.kernel
        {
            let weights = match folded {
                Some(f) => Some(f.weights.as_slice()),
                None => g.floats(j, 1),
            };
            // A failure here (memory) leaves the weights unpacked; the run packs them per call
            // and reports the error there.
            *packed = weights
                .and_then(|w| cnn_conv::PackedWeights::new(geom, w).ok())
                .map(Arc::new);
        }
    }
}
