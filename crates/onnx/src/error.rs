//! Errors of ONNX import and execution. Every message names where the problem is — the file,
//! the node (its name, or its index and first output when unnamed) and its op, the tensor or
//! the input — so the command line can print it as one line.

/// Why an ONNX model cannot be read, planned or run. Names in a message come from the file
/// (node, tensor and input names, op types, attribute strings): their control characters are
/// escaped when the error is displayed, so that it stays one line whatever the file holds.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("{}: {source}", one_line(.path))]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{}: not a valid ONNX model: {}", one_line(.path), one_line(.message))]
    Decode { path: String, message: String },
    #[error("{}: {source}", one_line(.path))]
    InFile {
        path: String,
        source: Box<OnnxError>,
    },
    #[error("{}", one_line(.message))]
    Graph { message: String },
    #[error("node {} ({}): {}", one_line(.node), one_line(.op), one_line(.message))]
    Node {
        node: String,
        op: String,
        message: String,
    },
    #[error("tensor '{}': {}", one_line(.tensor), one_line(.message))]
    Tensor { tensor: String, message: String },
    #[error("input '{}': {}", one_line(.input), one_line(.message))]
    Input { input: String, message: String },
    #[error(
        "the weights need {bytes} bytes, over the {ceiling} byte ceiling (--max-weight-bytes)"
    )]
    OverCeiling { bytes: u128, ceiling: u128 },
}

/// `text` with control characters (newlines, tabs, escapes) written as Rust escapes (`\n`).
pub fn one_line(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
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
