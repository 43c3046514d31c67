//! The one graph behind every front door of the cnn engine.
//!
//! Model files (`cnn-model`) and ONNX files (`cnn-onnx`) each lower into the same [`Graph`]:
//! nodes over values, every value with its shape (batch as dimension 0), weights as named
//! constants, and per node the plan record — shapes, parameters with the trainable split, the
//! formula [`Expr`] whose value is the count, MACs. From there one path serves both:
//!
//! ```text
//! front end ──lower──▶ Graph (plan: shapes + accounting, no allocation)
//!                        │         └──▶ explain, reports (never compile)
//!                        ▼
//!            compile(graph, constants) ──▶ Compiled (BatchNorm folded, activations fused,
//!                        │                            aliases, weights packed)
//!                        ▼
//!            run(graph, compiled, constants, inputs) ──▶ outputs (cnn-conv kernels)
//! ```
//!
//! [`shape`] holds the shape rules the front ends share (broadcasting, same padding, pooling
//! output with ceil mode); [`formula`] the expression type of parameter formulas; [`explain`]
//! the im2col + GEMM view of every weighted node. This crate knows nothing of files and words
//! no front-end error: the lowerings validate and word their own.

pub mod compile;
pub mod exec;
pub mod explain;
pub mod formula;
pub mod ir;
pub mod op;
pub mod shape;

pub use compile::{compile, Compiled, Constants, FoldedConv, NodeWork};
pub use exec::{run, ExecError, Value};
pub use explain::{explain, explain_conv, explain_dense, ConvExplanation, KernelPath};
pub use formula::Expr;
pub use ir::{trainable_split, Graph, Node, Param, Shape, ValueId, ValueInfo, ValueKind};
pub use op::{BinaryOp, Epilogue, Op, PoolGeometry, ReduceOp, Scalar, UnaryOp};
