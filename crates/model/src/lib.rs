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
pub use forward::{forward, forward_profiled, pack_convolutions, PackedConvs};
pub use parse::{load_model_file, parse_model};
pub use plan::{plan, LayerPlan, ModelPlan, Op, ParamTensor, Shape};
pub use spec::{ActivationKind, InputSpec, LayerKind, LayerSpec, ModelSpec, Preprocess, Source};
pub use weights::{allocate, verify, Weights, DEFAULT_MAX_WEIGHT_BYTES};
pub use weights_file::{load_weights, save_weights, WeightFileError};

use cnn_tensor::Tensor;
use std::path::Path;
use std::sync::OnceLock;

/// A planned model, with its weights once allocated or loaded.
///
/// The convolution weights are packed into the GEMM's panel layout on the first forward pass
/// and kept for later ones ([`PackedConvs`]); they are dropped whenever the weights change
/// ([`Model::weights_mut`], [`Model::allocate`], [`Model::load_weights`]).
#[derive(Debug, Clone)]
pub struct Model {
    pub plan: ModelPlan,
    weights: Option<Weights>,
    packed: OnceLock<PackedConvs>,
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
            packed: OnceLock::new(),
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
        self.packed = OnceLock::new();
    }

    /// The weights, once allocated or loaded.
    pub fn weights(&self) -> Option<&Weights> {
        self.weights.as_ref()
    }

    /// The weights for changing in place; the packed convolution weights are rebuilt from them
    /// on the next forward pass.
    pub fn weights_mut(&mut self) -> Option<&mut Weights> {
        self.packed = OnceLock::new();
        self.weights.as_mut()
    }

    /// The number of f32 values held in weight buffers (`None` before allocation).
    pub fn allocated_params(&self) -> Option<u64> {
        self.weights.as_ref().map(|w| w.held())
    }

    /// Runs a forward pass on `[N, C, H, W]`.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor, ModelError> {
        let (weights, packed) = self.ready()?;
        forward::forward_packed(&self.plan, weights, packed, input, None)
    }

    /// Like [`Model::forward`], and adds each layer's wall time to `layer_times` (one slot per
    /// layer).
    pub fn forward_profiled(
        &self,
        input: &Tensor,
        layer_times: &mut [std::time::Duration],
    ) -> Result<Tensor, ModelError> {
        let (weights, packed) = self.ready()?;
        forward::forward_packed(&self.plan, weights, packed, input, Some(layer_times))
    }

    /// The weights and their packed convolutions (packed now if they are not yet).
    fn ready(&self) -> Result<(&Weights, &PackedConvs), ModelError> {
        let weights = self.weights.as_ref().ok_or_else(|| ModelError::NoWeights {
            model: self.plan.name().to_string(),
        })?;
        if let Some(p) = self.packed.get() {
            return Ok((weights, p));
        }
        let packed = pack_convolutions(&self.plan, weights)?;
        Ok((weights, self.packed.get_or_init(|| packed)))
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        self.plan.name()
    }
}
