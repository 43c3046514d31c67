//! Layers, the model graph, shape inference, parameter accounting and the TOML model format.
//!
//! Data flow: model file → [`ModelSpec`] ([`parse`]) → [`ModelPlan`] ([`plan`]: shapes, resolved
//! operations, exact parameter counts from printed formulas, MACs — no allocation) →
//! optionally [`Weights`] ([`weights`]: seeded allocation under a memory ceiling, then the
//! values held are checked against the formulas) → [`forward`] passes.
//!
//! This crate knows nothing of the command line; every error is a [`ModelError`] that renders
//! as one line naming the file, line or layer.

pub mod error;
pub mod explain;
pub mod format;
pub mod formula;
pub mod forward;
pub mod parse;
pub mod plan;
pub mod spec;
pub mod weights;
pub mod weights_file;

pub use error::ModelError;
pub use explain::{explain, explain_conv, explain_dense, ConvExplanation, KernelPath};
pub use forward::{forward, forward_profiled};
pub use parse::{load_model_file, parse_model};
pub use plan::{plan, LayerPlan, ModelPlan, Op, ParamTensor, Shape};
pub use spec::{ActivationKind, InputSpec, LayerKind, LayerSpec, ModelSpec, Preprocess, Source};
pub use weights::{allocate, verify, Weights, DEFAULT_MAX_WEIGHT_BYTES};
pub use weights_file::{load_weights, save_weights, WeightFileError};

use cnn_tensor::Tensor;
use std::path::Path;

/// A planned model, with its weights once allocated or loaded.
#[derive(Debug, Clone)]
pub struct Model {
    pub plan: ModelPlan,
    pub weights: Option<Weights>,
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
        self.weights = Some(allocate(&self.plan, seed, max_weight_bytes)?);
        Ok(())
    }

    /// Loads weights from a safetensors file (checked tensor by tensor, then counted).
    pub fn load_weights(&mut self, path: &Path, max_weight_bytes: u128) -> Result<(), ModelError> {
        self.weights = Some(load_weights(&self.plan, path, max_weight_bytes)?);
        Ok(())
    }

    /// The number of f32 values held in weight buffers (`None` before allocation).
    pub fn allocated_params(&self) -> Option<u64> {
        self.weights.as_ref().map(|w| w.held())
    }

    /// Runs a forward pass on `[N, C, H, W]`.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor, ModelError> {
        let weights = self.weights.as_ref().ok_or_else(|| ModelError::NoWeights {
            model: self.plan.name().to_string(),
        })?;
        forward(&self.plan, weights, input)
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        self.plan.name()
    }
}
