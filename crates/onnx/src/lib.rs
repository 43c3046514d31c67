//! ONNX import for the cnn engine: one engine, two front doors.
//!
//! A `.onnx` file is decoded in pure Rust ([`proto`]: hand-declared `prost` messages, no
//! `protoc`), its initializers and constants read ([`constant`]), its nodes resolved into
//! supported operators ([`ops`]) and checked ([`load`]). [`plan`] infers every shape at
//! concrete input shapes, resolves convolutions to the same `Conv2dGeometry` model files use,
//! and counts each node's parameters from its geometry; [`exec`] runs the graph on the
//! `cnn-conv` kernels (im2col + GEMM for every convolution) plus [`kernels`] for the ops model
//! files do not have, after [`fuse`] has folded BatchNormalization and activations into the
//! convolutions before them.

pub mod constant;
pub mod error;
pub mod exec;
pub mod fuse;
pub mod kernels;
pub mod load;
pub mod ops;
pub mod plan;
pub mod proto;

pub use constant::{read_tensor_file, Constant};
pub use error::OnnxError;
pub use exec::{run, run_timed, Value};
pub use load::{Dim, GraphInput, Node, OnnxModel};
pub use plan::{declared_input_shapes, plan, Kernel, NodePlan, OnnxPlan, Shape};

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
