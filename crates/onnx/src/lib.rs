//! ONNX import for the cnn engine: one engine, two front doors.
//!
//! A `.onnx` file is decoded in pure Rust ([`proto`]: hand-declared `prost` messages, no
//! `protoc`), its initializers and constants read ([`constant`]), its nodes resolved into
//! supported operators ([`ops`]) and checked ([`load`]). [`lower`] lowers the graph into the
//! engine's one graph IR (`cnn-graph`) at concrete input shapes: it infers every shape,
//! resolves convolutions to the same `Conv2dGeometry` model files use, and counts each node's
//! parameters from its geometry, in the ONNX formula style. [`run`] compiles and runs that
//! graph on the shared executor (BatchNormalization folded, activations fused, weights packed),
//! wording its errors the ONNX way.

pub mod constant;
pub mod error;
pub mod external;
pub mod load;
pub mod lower;
pub mod ops;
pub mod proto;
pub mod provenance;
pub mod run;

pub use cnn_graph::{Shape, Value};
pub use constant::{read_tensor_file, Constant};
pub use error::OnnxError;
pub use load::{Dim, GraphInput, Node, OnnxModel};
pub use lower::{declared_input_shapes, plan, OnnxPlan};
pub use run::{compile, run, run_compiled, ModelConstants};

/// A declared shape as text, e.g. `[N, 3, 224, 224]`.
pub fn format_dims(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(v) => v.to_string(),
            Dim::Symbolic(s) => s.clone(),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}
