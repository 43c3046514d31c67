//! The model-file front door: the TOML model format, its layers, and their lowering into the
//! engine's one graph (`cnn-graph`).
//!
//! Data flow: model file → [`ModelSpec`] ([`parse`]) → [`ModelPlan`] ([`plan`], by
//! [`lower`]: the graph with shapes, resolved operations, exact parameter counts from printed
//! Keras-style formulas, MACs — no allocation) → optionally [`Weights`] ([`weights`]: seeded
//! allocation under a memory ceiling, or a safetensors file, then the values held are checked
//! against the formulas) → forward passes on the graph executor ([`Model::forward`]), compiled
//! once per weight set (BatchNorm folded, activations fused, weights packed).
//!
//! This crate knows nothing of the command line; every error is a [`ModelError`] that renders
//! as one line naming the file, line or layer.

pub mod error;
pub mod format;
mod lower;
pub mod parse;
pub mod plan;
pub mod spec;
pub mod weights;
pub mod weights_file;

pub use cnn_graph::formula;
pub use cnn_graph::{explain_conv, explain_dense, ConvExplanation, KernelPath};
pub use error::ModelError;
pub use parse::{load_model_file, parse_model};
pub use plan::{plan, LayerPlan, ModelPlan, ParamTensor, Shape};
pub use spec::{ActivationKind, InputSpec, LayerKind, LayerSpec, ModelSpec, Preprocess, Source};
pub use weights::{allocate, verify, Weights, DEFAULT_MAX_WEIGHT_BYTES};
pub use weights_file::{load_weights, save_weights, WeightFileError};

use cnn_graph::{Compiled, Constants, ExecError};
use cnn_tensor::Tensor;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

/// The im2col + GEMM explanation of every convolution-like and dense layer of `plan`.
pub fn explain(plan: &ModelPlan) -> Vec<ConvExplanation> {
    cnn_graph::explain(&plan.graph)
}

/// A planned model, with its weights once allocated or loaded.
///
/// The graph is compiled for the weights — BatchNorm folded into the convolution before it,
/// activations fused, convolution weights packed into the GEMM's panel layout — on the first
/// forward pass and kept for later ones; the compiled form is dropped whenever the weights
/// change ([`Model::weights_mut`], [`Model::allocate`], [`Model::load_weights`]).
#[derive(Debug, Clone)]
pub struct Model {
    pub plan: ModelPlan,
    weights: Option<Weights>,
    compiled: OnceLock<Ready>,
}

/// A model's compiled graph and where each weight constant lives in its [`Weights`].
#[derive(Debug, Clone)]
struct Ready {
    compiled: Compiled,
    /// Constant name (`layer.param`) -> (layer, tensor).
    index: HashMap<String, (usize, usize)>,
}

/// The weights of a model as the graph's named constants.
struct Bound<'a> {
    index: &'a HashMap<String, (usize, usize)>,
    weights: &'a Weights,
}

impl Constants for Bound<'_> {
    fn constant(&self, name: &str) -> Option<&[f32]> {
        let &(layer, tensor) = self.index.get(name)?;
        let t = self.weights.layers.get(layer)?.tensors.get(tensor)?;
        Some(t.data.as_slice())
    }
}

impl Model {
    /// Parses and plans a model file without allocating anything.
    pub fn plan_file(path: &Path) -> Result<Self, ModelError> {
        let spec = load_model_file(path)?;
        Self::plan_spec(&spec)
    }

    /// Plans a parsed spec without allocating anything.
    pub fn plan_spec(spec: &ModelSpec) -> Result<Self, ModelError> {
        Ok(Self {
            plan: plan(spec)?,
            weights: None,
            compiled: OnceLock::new(),
        })
    }

    /// Parses, plans and allocates seeded random weights (refused above `max_weight_bytes`).
    pub fn load_file(path: &Path, seed: u64, max_weight_bytes: u128) -> Result<Self, ModelError> {
        let mut m = Self::plan_file(path)?;
        m.allocate(seed, max_weight_bytes)?;
        Ok(m)
    }

    /// Allocates seeded random weights; fails above `max_weight_bytes` or on a count mismatch.
    pub fn allocate(&mut self, seed: u64, max_weight_bytes: u128) -> Result<(), ModelError> {
        self.set_weights(allocate(&self.plan, seed, max_weight_bytes)?);
        Ok(())
    }

    /// Loads weights from a safetensors file (checked tensor by tensor, then counted).
    pub fn load_weights(&mut self, path: &Path, max_weight_bytes: u128) -> Result<(), ModelError> {
        self.set_weights(load_weights(&self.plan, path, max_weight_bytes)?);
        Ok(())
    }

    fn set_weights(&mut self, weights: Weights) {
        self.weights = Some(weights);
        self.compiled = OnceLock::new();
    }

    /// The weights, once allocated or loaded.
    pub fn weights(&self) -> Option<&Weights> {
        self.weights.as_ref()
    }

    /// The weights for changing in place; the graph is compiled again from them on the next
    /// forward pass.
    pub fn weights_mut(&mut self) -> Option<&mut Weights> {
        self.compiled = OnceLock::new();
        self.weights.as_mut()
    }

    /// The number of f32 values held in weight buffers (`None` before allocation).
    pub fn allocated_params(&self) -> Option<u64> {
        self.weights.as_ref().map(|w| w.held())
    }

    /// Runs a forward pass on `[N, C, H, W]`; returns the last layer's output `[N, …]`.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor, ModelError> {
        self.forward_timed(input, None)
    }

    /// Like [`Model::forward`], and adds each layer's wall time to `layer_times` (one slot per
    /// layer).
    pub fn forward_profiled(
        &self,
        input: &Tensor,
        layer_times: &mut [std::time::Duration],
    ) -> Result<Tensor, ModelError> {
        self.forward_timed(input, Some(layer_times))
    }

    fn forward_timed(
        &self,
        input: &Tensor,
        times: Option<&mut [std::time::Duration]>,
    ) -> Result<Tensor, ModelError> {
        let (weights, ready) = self.ready()?;
        self.check_input(input)?;
        let graph = match input.batch() {
            1 => Cow::Borrowed(&self.plan.graph),
            n => Cow::Owned(self.plan.at_batch(n)?),
        };
        let consts = Bound {
            index: &ready.index,
            weights,
        };
        let mut outputs =
            cnn_graph::run(&graph, &ready.compiled, &consts, &[input.as_slice()], times)
                .map_err(|e| self.exec_error(&graph, e))?;
        let y = outputs.pop().ok_or_else(|| ModelError::NoWeights {
            model: self.name().to_string(),
        })?;
        Tensor::from_vec(&y.shape, y.data).map_err(|source| ModelError::Alloc {
            model: self.name().to_string(),
            source,
        })
    }

    fn check_input(&self, input: &Tensor) -> Result<(), ModelError> {
        let expected = self.plan.input_shape();
        let s = input.shape();
        if s.len() != 4 || s[0] == 0 || s[1..] != expected[..] {
            return Err(ModelError::Input {
                model: self.name().to_string(),
                expected: format!("Nx{}", format::shape_text(&expected)),
                found: format::shape_text(s),
            });
        }
        Ok(())
    }

    /// An executor error in the model-file wording (naming the layer).
    fn exec_error(&self, graph: &cnn_graph::Graph, e: ExecError) -> ModelError {
        let layer = |i: usize| {
            self.plan
                .layers()
                .get(i)
                .map_or_else(|| self.name().to_string(), |l| l.name.clone())
        };
        match e {
            ExecError::Kernel { node, source } => ModelError::Kernel {
                layer: layer(node),
                source,
            },
            ExecError::Alloc { node, bytes } => ModelError::Alloc {
                model: layer(node),
                source: cnn_tensor::TensorError::Alloc {
                    what: format!(
                        "a {} tensor",
                        graph.nodes.get(node).map_or_else(String::new, |n| {
                            cnn_tensor::format_shape(&n.output_shape)
                        })
                    ),
                    bytes,
                },
            },
            ExecError::Node { node, message } => ModelError::Run {
                layer: layer(node),
                message,
            },
            e @ (ExecError::Input { .. }
            | ExecError::InputCount { .. }
            | ExecError::Stale { .. }) => ModelError::Run {
                layer: self.name().to_string(),
                message: e.to_string(),
            },
        }
    }

    /// The weights and the graph compiled for them (compiled now if it is not yet).
    fn ready(&self) -> Result<(&Weights, &Ready), ModelError> {
        let weights = self.weights.as_ref().ok_or_else(|| ModelError::NoWeights {
            model: self.plan.name().to_string(),
        })?;
        if let Some(r) = self.compiled.get() {
            return Ok((weights, r));
        }
        weights::verify(&self.plan, weights)?;
        let mut index = HashMap::new();
        for (i, layer) in self.plan.layers().iter().enumerate() {
            for (j, p) in layer.params.iter().enumerate() {
                index.insert(self.plan.graph.values[p.value].name.clone(), (i, j));
            }
        }
        let compiled = cnn_graph::compile(
            &self.plan.graph,
            &Bound {
                index: &index,
                weights,
            },
        );
        Ok((
            weights,
            self.compiled.get_or_init(|| Ready { compiled, index }),
        ))
    }

    /// The compiled graph (BatchNorm folded, activations fused, weights packed), once a forward
    /// pass has run with the current weights.
    pub fn compiled(&self) -> Option<&Compiled> {
        self.compiled.get().map(|r| &r.compiled)
    }

    /// Bytes held by the compiled form's packed weights (0 before the first forward pass).
    pub fn packed_bytes(&self) -> usize {
        self.compiled.get().map_or(0, |r| r.compiled.packed_bytes())
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        self.plan.name()
    }
}
