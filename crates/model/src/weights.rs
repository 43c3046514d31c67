//! Weight buffers: allocation under a memory ceiling, seeded Keras-style initialisation, and the
//! check that the values actually held equal the symbolic count.
//!
//! Before anything is allocated the planned byte size is compared with a ceiling (default
//! [`DEFAULT_MAX_WEIGHT_BYTES`]); a 10^12-parameter model is refused with a message, never
//! attempted. Every buffer is obtained fallibly, so an allocator refusal is an error too.
//! Initialisation follows Keras' defaults: kernels Glorot-uniform (limit
//! `sqrt(6 / (fan_in + fan_out))`), biases and `beta` zero, `gamma` one, moving mean zero,
//! moving variance one — drawn from a ChaCha8 generator seeded by the caller, so a seed always
//! gives the same weights on every machine.

use crate::error::ModelError;
use crate::plan::{LayerPlan, ModelPlan};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The default ceiling on f32 weight memory: 2 GiB.
pub const DEFAULT_MAX_WEIGHT_BYTES: u128 = 2 << 30;

/// One buffer of weights.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The buffers of one layer, in the order of its planned [`crate::plan::ParamTensor`]s.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LayerWeights {
    pub tensors: Vec<WeightTensor>,
}

impl LayerWeights {
    /// The buffer called `name`, if the layer has it.
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.data.as_slice())
    }

    /// The number of values held.
    pub fn held(&self) -> u64 {
        self.tensors.iter().map(|t| t.data.len() as u64).sum()
    }
}

/// All the weights of a model, one entry per layer (empty for parameter-free layers).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Weights {
    pub layers: Vec<LayerWeights>,
}

impl Weights {
    /// The number of f32 values actually held in buffers.
    pub fn held(&self) -> u64 {
        self.layers.iter().map(|l| l.held()).sum()
    }
}

/// Refuses a model whose weights exceed `max_bytes`.
pub fn check_ceiling(plan: &ModelPlan, max_bytes: u128) -> Result<(), ModelError> {
    let bytes = plan.weight_bytes();
    if bytes > max_bytes {
        return Err(ModelError::TooLarge {
            model: plan.name().to_string(),
            params: plan.total_params(),
            bytes,
            ceiling: max_bytes,
        });
    }
    Ok(())
}

/// Allocates and initialises every weight buffer of `plan`, then checks the values held
/// against the symbolic count, layer by layer.
pub fn allocate(plan: &ModelPlan, seed: u64, max_bytes: u128) -> Result<Weights, ModelError> {
    check_ceiling(plan, max_bytes)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut layers = Vec::with_capacity(plan.layers().len());
    for layer in plan.layers() {
        let mut tensors = Vec::with_capacity(layer.params.len());
        for p in &layer.params {
            let what = format!("{}.{} ({} values)", layer.name, p.name, p.len());
            let mut data =
                cnn_tensor::try_zeroed(p.len(), &what).map_err(|source| ModelError::Alloc {
                    model: plan.name().to_string(),
                    source,
                })?;
            initialise(&p.name, p.fan_in, p.fan_out, &mut data, &mut rng);
            tensors.push(WeightTensor {
                name: p.name.clone(),
                shape: p.shape.clone(),
                data,
            });
        }
        layers.push(LayerWeights { tensors });
    }
    let weights = Weights { layers };
    verify(plan, &weights)?;
    Ok(weights)
}

fn initialise(name: &str, fan_in: usize, fan_out: usize, data: &mut [f32], rng: &mut ChaCha8Rng) {
    match name {
        "weight" | "depthwise_weight" | "pointwise_weight" => {
            let limit = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt() as f32;
            for v in data.iter_mut() {
                *v = rng.random_range(-limit..=limit);
            }
        }
        "gamma" | "moving_variance" => data.fill(1.0),
        _ => data.fill(0.0),
    }
}

/// Compares, layer by layer, the values held in `weights` with the planned count (from the
/// formula) and each buffer's length with its planned shape. Returns the total held.
pub fn verify(plan: &ModelPlan, weights: &Weights) -> Result<u64, ModelError> {
    if weights.layers.len() != plan.layers().len() {
        return Err(ModelError::CountMismatch {
            layer: plan.name().to_string(),
            formula: format!("{} layers", plan.layers().len()),
            symbolic: plan.layers().len() as u64,
            allocated: weights.layers.len() as u64,
        });
    }
    for (layer, held) in plan.layers().iter().zip(&weights.layers) {
        verify_layer(layer, held)?;
    }
    Ok(weights.held())
}

fn verify_layer(layer: &LayerPlan, held: &LayerWeights) -> Result<(), ModelError> {
    let mismatch = || ModelError::CountMismatch {
        layer: layer.name.clone(),
        formula: layer.formula_text(),
        symbolic: layer.param_count,
        allocated: held.held(),
    };
    if held.held() != layer.param_count || held.tensors.len() != layer.params.len() {
        return Err(mismatch());
    }
    for (planned, buffer) in layer.params.iter().zip(&held.tensors) {
        if planned.name != buffer.name
            || planned.shape != buffer.shape
            || planned.len() != buffer.data.len()
        {
            return Err(mismatch());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_model;
    use crate::plan::plan;

    fn small() -> ModelPlan {
        let text = "name = \"s\"\n[input]\nchannels = 3\nheight = 8\nwidth = 8\n\
                    [[layers]]\ntype = \"conv2d\"\nfilters = 4\nkernel = 3\n\
                    [[layers]]\ntype = \"batchnorm\"\n\
                    [[layers]]\ntype = \"flatten\"\n\
                    [[layers]]\ntype = \"dense\"\nunits = 2\n";
        plan(&parse_model(text, "s.toml").unwrap()).unwrap()
    }

    #[test]
    fn allocation_matches_the_formulas() {
        let p = small();
        let w = allocate(&p, 7, DEFAULT_MAX_WEIGHT_BYTES).unwrap();
        // (3*3*3+1)*4 + 4*4 + (144+1)*2 = 112 + 16 + 290.
        assert_eq!(w.held(), 418);
        assert_eq!(p.total_params(), 418);
    }

    #[test]
    fn same_seed_same_weights_and_glorot_limit_holds() {
        let p = small();
        let a = allocate(&p, 3, DEFAULT_MAX_WEIGHT_BYTES).unwrap();
        let b = allocate(&p, 3, DEFAULT_MAX_WEIGHT_BYTES).unwrap();
        let c = allocate(&p, 4, DEFAULT_MAX_WEIGHT_BYTES).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let conv = a.layers[0].get("weight").unwrap();
        let limit = (6.0f32 / (27.0 + 36.0)).sqrt();
        assert!(conv.iter().all(|v| v.abs() <= limit));
        assert!(conv.iter().any(|v| v.abs() > limit / 2.0));
        assert!(a.layers[1].get("gamma").unwrap().iter().all(|&v| v == 1.0));
    }

    #[test]
    fn ceiling_refuses_before_allocating() {
        let p = small();
        let e = allocate(&p, 0, 1000).unwrap_err().to_string();
        assert_eq!(
            e,
            "model `s` needs 418 parameters = 1.63 KiB of f32 weights, over the 1000 B \
             ceiling; raise it with --max-weight-bytes (`cnn summary --no-alloc` counts a model of \
             any size)"
        );
    }

    #[test]
    fn a_tampered_buffer_is_a_count_mismatch() {
        let p = small();
        let mut w = allocate(&p, 0, DEFAULT_MAX_WEIGHT_BYTES).unwrap();
        w.layers[3].tensors[0].data.pop();
        let e = verify(&p, &w).unwrap_err().to_string();
        assert_eq!(
            e,
            "layer `dense_1`: allocated 289 weights but the formula (144+1)*2 gives 290"
        );
    }
}
