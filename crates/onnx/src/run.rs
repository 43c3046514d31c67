//! Running a lowered ONNX graph: the model's float initializers and folded constants as the
//! graph's [`Constants`], compile (BatchNorm folding, activation fusion, packing) and the
//! graph executor, with its errors worded the ONNX way (the node's name and op).

use crate::error::OnnxError;
use crate::load::OnnxModel;
use crate::lower::OnnxPlan;
use cnn_graph::{Compiled, Constants, ExecError, Value};
use std::collections::HashMap;
use std::time::Duration;

/// The float constants of a model, by name (built once per run, or kept by a caller that
/// runs many times).
pub struct ModelConstants<'a> {
    by_name: HashMap<&'a str, &'a [f32]>,
}

impl<'a> ModelConstants<'a> {
    /// Indexes the float initializers and folded constants of `model`.
    pub fn new(model: &'a OnnxModel) -> Self {
        let by_name = model
            .initializers
            .iter()
            .map(|(n, c)| (n, c))
            .chain(model.constants.iter())
            .filter_map(|(n, c)| Some((n.as_str(), c.as_f32()?)))
            .collect();
        ModelConstants { by_name }
    }
}

impl Constants for ModelConstants<'_> {
    fn constant(&self, name: &str) -> Option<&[f32]> {
        self.by_name.get(name).copied()
    }
}

/// Compiles `plan` with `model`'s weights.
pub fn compile(model: &OnnxModel, plan: &OnnxPlan) -> Compiled {
    cnn_graph::compile(&plan.graph, &ModelConstants::new(model))
}

/// Compiles and runs `plan` on `inputs` (one flat tensor per graph input, in order, with the
/// planned shapes); returns the graph outputs.
pub fn run<I: AsRef<[f32]>>(
    model: &OnnxModel,
    plan: &OnnxPlan,
    inputs: &[I],
) -> Result<Vec<Value>, OnnxError> {
    let consts = ModelConstants::new(model);
    let compiled = cnn_graph::compile(&plan.graph, &consts);
    let inputs: Vec<&[f32]> = inputs.iter().map(|i| i.as_ref()).collect();
    run_compiled(model, plan, &compiled, &consts, &inputs, None)
}

/// Runs a compiled plan; with `times`, adds each node's time to `times[node]`.
pub fn run_compiled(
    model: &OnnxModel,
    plan: &OnnxPlan,
    compiled: &Compiled,
    consts: &ModelConstants<'_>,
    inputs: &[&[f32]],
    times: Option<&mut [Duration]>,
) -> Result<Vec<Value>, OnnxError> {
    cnn_graph::run(&plan.graph, compiled, consts, inputs, times)
        .map_err(|e| exec_error(model, plan, e))
}

/// An executor error in the ONNX wording.
fn exec_error(model: &OnnxModel, plan: &OnnxPlan, e: ExecError) -> OnnxError {
    let at = |i: usize, message: String| match plan.origin.get(i).and_then(|&o| model.nodes.get(o))
    {
        Some(node) => node.error(message),
        None => OnnxError::graph(message),
    };
    match e {
        ExecError::Kernel { node, source } => at(node, source.to_string()),
        e @ ExecError::Alloc { node, .. } => at(node, e.to_string()),
        ExecError::Node { node, message } => at(node, message),
        ExecError::Input { input, message } => {
            let name = plan
                .inputs()
                .get(input)
                .map(|(n, _)| n.clone())
                .unwrap_or_default();
            OnnxError::input(&name, message)
        }
        e @ (ExecError::InputCount { .. } | ExecError::Stale { .. }) => {
            OnnxError::graph(e.to_string())
        }
    }
}
