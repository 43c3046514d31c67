//! Errors of ONNX import and execution. Every message names where the problem is — the file,
//! the node (its name, or its index and first output when unnamed) and its op, the tensor or
//! the input — so the command line can print it as one line.

/// Why an ONNX model cannot be read, planned or run.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a valid ONNX model: {message}")]
    Decode { path: String, message: String },
    #[error("{path}: {source}")]
    InFile {
        path: String,
        source: Box<OnnxError>,
    },
    #[error("{message}")]
    Graph { message: String },
    #[error("node {node} ({op}): {message}")]
    Node {
        node: String,
        op: String,
        message: String,
    },
    #[error("tensor '{tensor}': {message}")]
    Tensor { tensor: String, message: String },
    #[error("input '{input}': {message}")]
    Input { input: String, message: String },
    #[error(
        "the weights need {bytes} bytes, over the {ceiling} byte ceiling (--max-weight-bytes)"
    )]
    OverCeiling { bytes: u128, ceiling: u128 },
}

impl OnnxError {
    /// A graph-level error.
    pub fn graph(message: impl Into<String>) -> Self {
        OnnxError::Graph {
            message: message.into(),
        }
    }

    /// An error about a tensor (initializer, constant or test-data file).
    pub fn tensor(tensor: &str, message: impl Into<String>) -> Self {
        OnnxError::Tensor {
            tensor: tensor.to_string(),
            message: message.into(),
        }
    }

    /// An error about a graph input.
    pub fn input(input: &str, message: impl Into<String>) -> Self {
        OnnxError::Input {
            input: input.to_string(),
            message: message.into(),
        }
    }

    /// Wraps `self` with the file it concerns (unless it already names one).
    pub fn in_file(self, path: &str) -> Self {
        match self {
            OnnxError::Io { .. } | OnnxError::Decode { .. } | OnnxError::InFile { .. } => self,
            other => OnnxError::InFile {
                path: path.to_string(),
                source: Box::new(other),
            },
        }
    }
}
