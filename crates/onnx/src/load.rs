//! Reading a `.onnx` file into an [`OnnxModel`]: the graph's inputs (with their declared,
//! possibly symbolic, shapes), its initializers, its nodes with resolved operators, in the
//! file's topological order — checked: every node input must be a graph input, an initializer,
//! a constant or an earlier node's output, and every graph output must be produced.

use crate::constant::{decode_tensor_in, Constant};
use crate::error::OnnxError;
use crate::external::ExternalData;
use crate::ops::{parse_op, Op};
use crate::proto::{data_type, DimensionValue, GraphProto, ModelProto, NodeProto};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// One dimension of a declared input shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    /// A named (`N`, `batch_size`) or unnamed unknown size.
    Symbolic(String),
}

/// A graph input that is not an initializer: data the caller provides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphInput {
    pub name: String,
    /// The declared shape; `None` when the file gives no shape.
    pub dims: Option<Vec<Dim>>,
    /// FLOAT for data; INT64 for a shape operand given as an input, which must be bound to a
    /// constant ([`OnnxModel::bind_constant`]) before planning.
    pub elem_type: i32,
}

/// One node, its operator resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The node's name, or `#<index>` when the file gives none.
    pub name: String,
    pub op_type: String,
    pub op: Op,
    /// Input value names; `None` for an omitted optional input (empty name in the file).
    pub inputs: Vec<Option<String>>,
    /// Output value names; `None` for an omitted optional output.
    pub outputs: Vec<Option<String>>,
}

impl Node {
    /// The `i`-th input's name, if given.
    pub fn input(&self, i: usize) -> Option<&str> {
        self.inputs.get(i).and_then(|x| x.as_deref())
    }

    /// The first output's name (every supported op has one).
    pub fn output(&self) -> &str {
        self.outputs
            .first()
            .and_then(|x| x.as_deref())
            .unwrap_or("")
    }

    /// An error about this node.
    pub fn error(&self, message: impl Into<String>) -> OnnxError {
        OnnxError::Node {
            node: format!("'{}'", self.name),
            op: self.op_type.clone(),
            message: message.into(),
        }
    }
}

/// The default-domain operator sets whose semantics the importer implements: from 7 (numpy
/// broadcasting) to 28, the newest the pinned `onnx` package (1.23.2) defines; its backend
/// node tests of every supported op, at the opsets they are written in (up to 28), pass.
/// Newer opsets are refused until their changes are checked.
pub const OPSETS: std::ops::RangeInclusive<i64> = 7..=28;

/// A loaded ONNX model.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxModel {
    /// The file, for messages.
    pub path: String,
    /// The graph's name (the file stem when the graph has none).
    pub name: String,
    pub producer: String,
    /// The default-domain operator-set version.
    pub opset: i64,
    pub inputs: Vec<GraphInput>,
    pub outputs: Vec<String>,
    /// Initializers in file order: the model's parameters (float) and shape operands (int).
    pub initializers: Vec<(String, Constant)>,
    /// Outputs of `Constant` nodes, folded at import (not parameters).
    pub constants: HashMap<String, Constant>,
    /// The nodes that compute, in execution order (`Constant` nodes folded away).
    pub nodes: Vec<Node>,
}

impl OnnxModel {
    /// Reads and checks `path` (external data from its folder, without a ceiling).
    pub fn load(path: &Path) -> Result<Self, OnnxError> {
        Self::load_within(path, u128::MAX)
    }

    /// Reads and checks `path`, with at most `max_bytes` in the file and its external data
    /// together (the ceiling on weight memory; checked before anything external is read).
    pub fn load_within(path: &Path, max_bytes: u128) -> Result<Self, OnnxError> {
        let shown = path.display().to_string();
        let io = |source| OnnxError::Io {
            path: shown.clone(),
            source,
        };
        let bytes = std::fs::read(path).map_err(io)?;
        let default_name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".to_string());
        let left = max_bytes.saturating_sub(bytes.len() as u128);
        let external = ExternalData::new(path, left).map_err(|e| e.in_file(&shown))?;
        Self::parse(&bytes, &shown, &default_name, Some(&external))
    }

    /// Parses the bytes of a `.onnx` file that holds all its data; `path` is used in messages.
    pub fn from_bytes(bytes: &[u8], path: &str, default_name: &str) -> Result<Self, OnnxError> {
        Self::parse(bytes, path, default_name, None)
    }

    fn parse(
        bytes: &[u8],
        path: &str,
        default_name: &str,
        external: Option<&ExternalData>,
    ) -> Result<Self, OnnxError> {
        let proto = ModelProto::decode(bytes).map_err(|e| OnnxError::Decode {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        import(proto, path, default_name, external).map_err(|e| e.in_file(path))
    }

    /// The constant (initializer or folded `Constant`) called `name`.
    pub fn constant(&self, name: &str) -> Option<&Constant> {
        self.constants.get(name).or_else(|| {
            self.initializers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| c)
        })
    }

    /// Turns graph input `name` into a constant with this value (for integer shape operands
    /// given as inputs, as the ONNX node tests do for Reshape's shape and Pad's pads).
    pub fn bind_constant(&mut self, name: &str, value: Constant) -> Result<(), OnnxError> {
        let i = self
            .inputs
            .iter()
            .position(|x| x.name == name)
            .ok_or_else(|| OnnxError::input(name, "no such graph input"))?;
        self.inputs.remove(i);
        self.constants.insert(name.to_string(), value);
        Ok(())
    }

    /// Float elements held in initializers: what `summary` reports as loaded parameters.
    pub fn initializer_float_elements(&self) -> u64 {
        self.initializers
            .iter()
            .filter(|(_, c)| c.as_f32().is_some())
            .map(|(_, c)| c.len() as u64)
            .sum()
    }
}

/// The node's name for reports (control characters escaped: one row per node in tables).
fn node_label(node: &NodeProto, index: usize) -> String {
    if node.name.is_empty() {
        format!("#{index}")
    } else {
        crate::error::one_line(&node.name)
    }
}

fn optional_names(names: &[String]) -> Vec<Option<String>> {
    names
        .iter()
        .map(|n| (!n.is_empty()).then(|| n.clone()))
        .collect()
}

fn read_inputs(
    graph: &GraphProto,
    initialized: &HashSet<&str>,
) -> Result<Vec<GraphInput>, OnnxError> {
    let mut inputs = Vec::new();
    for vi in &graph.input {
        if initialized.contains(vi.name.as_str()) {
            continue; // an initializer listed as an input (older exporters): a constant
        }
        let Some(ty) = vi.r#type.as_ref() else {
            inputs.push(GraphInput {
                name: vi.name.clone(),
                dims: None,
                elem_type: data_type::FLOAT,
            });
            continue;
        };
        let Some(tensor) = ty.tensor_type.as_ref() else {
            return Err(OnnxError::input(
                &vi.name,
                "only tensor inputs are supported (this one is a sequence, map, optional or sparse value)",
            ));
        };
        let accepted = [data_type::FLOAT, data_type::INT64, data_type::BOOL];
        if !accepted.contains(&tensor.elem_type) {
            return Err(OnnxError::input(
                &vi.name,
                format!(
                    "element type {} is not supported: the engine's inputs are FLOAT (BOOL \
                     given as 0.0 / 1.0)",
                    data_type::name(tensor.elem_type)
                ),
            ));
        }
        let dims = tensor.shape.as_ref().map(|s| {
            s.dim
                .iter()
                .enumerate()
                .map(|(i, d)| match &d.value {
                    Some(DimensionValue::DimValue(v)) if *v >= 0 => Dim::Fixed(*v as usize),
                    Some(DimensionValue::DimParam(p)) if !p.is_empty() => Dim::Symbolic(p.clone()),
                    _ => Dim::Symbolic(format!("dim{i}")),
                })
                .collect()
        });
        inputs.push(GraphInput {
            name: vi.name.clone(),
            dims,
            elem_type: tensor.elem_type,
        });
    }
    Ok(inputs)
}

fn import(
    proto: ModelProto,
    path: &str,
    default_name: &str,
    external: Option<&ExternalData>,
) -> Result<OnnxModel, OnnxError> {
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(1);
    let graph = proto
        .graph
        .ok_or_else(|| OnnxError::graph("the model has no graph"))?;
    if !OPSETS.contains(&opset) {
        return Err(OnnxError::graph(format!(
            "the model uses ONNX opset {opset}; cnn reads opsets {} to {} (re-export with \
             opset_version in that range)",
            OPSETS.start(),
            OPSETS.end()
        )));
    }
    if let Some(s) = graph.sparse_initializer.first() {
        let name = s.values.as_ref().map(|v| v.name.as_str()).unwrap_or("?");
        return Err(OnnxError::tensor(
            name,
            "sparse initializers are not supported",
        ));
    }
    let mut initializers = Vec::with_capacity(graph.initializer.len());
    for t in &graph.initializer {
        if t.name.is_empty() {
            return Err(OnnxError::graph("an initializer has no name"));
        }
        initializers.push((t.name.clone(), decode_tensor_in(&t.name, t, external)?));
    }
    let initialized: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs = read_inputs(&graph, &initialized)?;
    let mut known: HashSet<String> = initialized.iter().map(|s| s.to_string()).collect();
    known.extend(inputs.iter().map(|i| i.name.clone()));
    let mut constants = HashMap::new();
    let mut nodes = Vec::with_capacity(graph.node.len());
    let graph_outputs: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    // `Identity(initializer)`: the legacy exporter's way of sharing one tensor between layers
    // (it merges identical initializers). Readers are pointed at the initializer itself.
    let mut renamed: HashMap<String, String> = HashMap::new();
    for (index, n) in graph.node.iter().enumerate() {
        let name = node_label(n, index);
        let op = parse_op(n, opset).map_err(|message| OnnxError::Node {
            node: format!("'{name}'"),
            op: n.op_type.clone(),
            message,
        })?;
        let mut node = Node {
            name,
            op_type: n.op_type.clone(),
            op,
            inputs: optional_names(&n.input),
            outputs: optional_names(&n.output),
        };
        for input in node.inputs.iter_mut().flatten() {
            if let Some(original) = renamed.get(input.as_str()) {
                *input = original.clone();
            }
        }
        for input in node.inputs.iter().flatten() {
            if !known.contains(input) {
                return Err(node.error(format!(
                    "input '{input}' is not a graph input, an initializer or the output of an \
                     earlier node (nodes must be in topological order)"
                )));
            }
        }
        if node.output().is_empty() {
            return Err(node.error("the node has no output"));
        }
        for out in node.outputs.iter().flatten() {
            if !known.insert(out.clone()) {
                return Err(node.error(format!("output '{out}' is produced twice")));
            }
        }
        if let Op::Constant(value) = &node.op {
            constants.insert(node.output().to_string(), value.clone());
        } else if let (true, Some(source)) = (node.op_type == "Identity", node.input(0)) {
            if initialized.contains(source) && !graph_outputs.contains(node.output()) {
                renamed.insert(node.output().to_string(), source.to_string());
            } else {
                nodes.push(node);
            }
        } else {
            nodes.push(node);
        }
    }
    let outputs: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    if outputs.is_empty() {
        return Err(OnnxError::graph("the graph declares no output"));
    }
    for o in &outputs {
        if !known.contains(o) {
            return Err(OnnxError::graph(format!(
                "graph output '{o}' is not produced by any node"
            )));
        }
    }
    Ok(OnnxModel {
        path: path.to_string(),
        name: if graph.name.is_empty() {
            default_name.to_string()
        } else {
            crate::error::one_line(&graph.name)
        },
        producer: crate::error::one_line(
            &[proto.producer_name, proto.producer_version]
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
        ),
        opset,
        inputs,
        outputs,
        initializers,
        constants,
        nodes,
    })
}
