//! The error type of the model crate. Every variant renders as one line that says what went
//! wrong and where (file, line and column, or layer name), so the command line can print it as
//! is. Nothing in this crate panics on user input; it returns one of these.

use crate::format::{group_digits, human_bytes};

/// Anything that can go wrong between a model file and a forward pass.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model file could not be read.
    #[error("{path}: cannot read the model file: {reason}")]
    Io { path: String, reason: String },

    /// The model file is not valid TOML or does not fit the model format at a known position.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },

    /// A layer's keys are wrong (unknown key, bad value, missing key, bad `inputs`).
    #[error("{path}:{line}: layer `{layer}` ({kind}): {message}")]
    Layer {
        path: String,
        line: usize,
        layer: String,
        kind: String,
        message: String,
    },

    /// The shapes cannot work: named layer, its input shape, and why.
    #[error("{0}")]
    Shape(Box<ShapeError>),

    /// The weights would exceed the configured ceiling, so they are not allocated.
    #[error(
        "model `{model}` needs {} parameters = {} of f32 weights, over the {} ceiling; \
         raise it with --max-weight-bytes (`cnn summary --no-alloc` counts a model of any size)",
        group_digits(*params as u128),
        human_bytes(*bytes),
        human_bytes(*ceiling)
    )]
    TooLarge {
        model: String,
        params: u64,
        bytes: u128,
        ceiling: u128,
    },

    /// The allocator refused a buffer.
    #[error("model `{model}`: {source}")]
    Alloc {
        model: String,
        source: cnn_tensor::TensorError,
    },

    /// The allocated buffers do not hold the number of values the formulas say: a bug, never
    /// ignored.
    #[error(
        "layer `{layer}`: allocated {allocated} weights but the formula {formula} gives {symbolic}"
    )]
    CountMismatch {
        layer: String,
        formula: String,
        symbolic: u64,
        allocated: u64,
    },

    /// The array handed to a forward pass does not fit the model's input.
    #[error("model `{model}` expects input {expected} (batch first), got {found}")]
    Input {
        model: String,
        expected: String,
        found: String,
    },

    /// The forward pass needs weights but the model was planned without them.
    #[error(
        "model `{model}` has no weights allocated; allocate or load weights before a forward pass"
    )]
    NoWeights { model: String },

    /// A weight file that does not fit the model.
    #[error("{0}")]
    WeightFile(Box<crate::weights_file::WeightFileError>),

    /// A forward pass failed at a layer for another reason (an engine bug or memory).
    #[error("layer `{layer}`: {message}")]
    Run { layer: String, message: String },

    /// A kernel rejected its buffers (an engine bug; reported, never a panic).
    #[error("layer `{layer}`: {source}")]
    Kernel {
        layer: String,
        source: cnn_conv::KernelError,
    },
}

/// A layer whose shapes cannot work (boxed inside [`ModelError::Shape`] to keep results small).
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}: layer `{layer}` ({kind}) on input {input}: {message}")]
pub struct ShapeError {
    pub path: String,
    pub line: usize,
    pub layer: String,
    pub kind: String,
    pub input: String,
    pub message: String,
}
