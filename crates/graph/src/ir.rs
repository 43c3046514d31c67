//! The graph IR every front door lowers into, and the plan record it carries.
//!
//! A [`Graph`] is a list of [`Node`]s in a topological order over [`Value`]s. A value is a
//! graph input, a node's output or a named constant (a weight: `conv2d_1.weight` for model
//! files, the initializer's name for ONNX); every value has its shape, **batch as dimension
//! 0**. Each node carries its resolved operation ([`Op`]) and its plan record: the shapes it
//! reads and writes, the parameters it owns (with the trainable split), the formula whose
//! value is its parameter count, and its MACs. One node is one row of a report.
//!
//! A graph is a plan: it holds shapes and counts, never weight data, so a 10^12-parameter model
//! is planned without allocating anything. The data comes in when the graph is compiled
//! ([`crate::compile`]) and run ([`crate::run`]). The front ends build graphs with
//! [`Graph::add_input`], [`Graph::add_constant`] and [`Graph::add_node`]; each computes its
//! formulas in its own style and words its own errors.

use crate::formula::Expr;
use crate::op::Op;

/// A full shape, batch first.
pub type Shape = Vec<usize>;

/// Index of a value in [`Graph::values`].
pub type ValueId = usize;

/// Where a value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// The graph input at this position.
    Input(usize),
    /// The output of the node at this index.
    Node(usize),
    /// A named constant (a weight), whose data is supplied when the graph runs.
    Constant,
}

/// One value of the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueInfo {
    pub name: String,
    pub shape: Shape,
    pub kind: ValueKind,
}

/// A weight tensor a node owns (counted at its first use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The front end's name for it: `weight`, `bias`, `gamma`, … for model files (the weight
    /// file calls it `<layer>.<name>`), the initializer's name for ONNX.
    pub name: String,
    /// The constant holding it.
    pub value: ValueId,
    pub shape: Shape,
    pub trainable: bool,
    /// Keras-style fan-in and fan-out for Glorot initialisation (0 where none applies).
    pub fan_in: usize,
    pub fan_out: usize,
}

impl Param {
    /// Number of elements (checked when the plan is built).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One node: its operation, its connections and its plan record.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    /// The front end's type name (`conv2d`, `Conv`, …), as reports print it.
    pub type_name: String,
    pub op: Op,
    /// The values read, by position (`None`: an optional input left out). The positions are
    /// the op's (see [`Op`]): data first, then weights.
    pub inputs: Vec<Option<ValueId>>,
    pub output: ValueId,
    /// Shapes of the inputs that are not constants, in order.
    pub input_shapes: Vec<Shape>,
    pub output_shape: Shape,
    pub params: Vec<Param>,
    /// The formula whose value is the parameter count (`None` when the node owns nothing).
    pub formula: Option<Expr>,
    pub param_count: u64,
    pub trainable: u64,
    pub non_trainable: u64,
    pub macs: u64,
}

impl Node {
    /// A node with no connections, parameters or counts yet.
    pub fn new(name: impl Into<String>, type_name: impl Into<String>, op: Op) -> Self {
        Node {
            name: name.into(),
            type_name: type_name.into(),
            op,
            inputs: Vec::new(),
            output: usize::MAX,
            input_shapes: Vec::new(),
            output_shape: Vec::new(),
            params: Vec::new(),
            formula: None,
            param_count: 0,
            trainable: 0,
            non_trainable: 0,
            macs: 0,
        }
    }

    /// The formula as text, `-` when the node owns no parameter.
    pub fn formula_text(&self) -> String {
        self.formula
            .as_ref()
            .map(|f| f.to_string())
            .unwrap_or_else(|| "-".to_string())
    }

    /// The value at input position `i`, if present.
    pub fn input(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }
}

/// The trainable and non-trainable element counts of `params`, `None` on overflow.
pub fn trainable_split(params: &[Param]) -> Option<(u64, u64)> {
    let mut trainable = 0u64;
    let mut frozen = 0u64;
    for p in params {
        let len = p
            .shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))?;
        if p.trainable {
            trainable = trainable.checked_add(len)?;
        } else {
            frozen = frozen.checked_add(len)?;
        }
    }
    Some((trainable, frozen))
}

/// A planned graph.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Graph {
    pub name: String,
    pub values: Vec<ValueInfo>,
    /// The graph inputs, in order.
    pub inputs: Vec<ValueId>,
    /// The graph outputs, in order.
    pub outputs: Vec<ValueId>,
    pub nodes: Vec<Node>,
}

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Self {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    /// Adds a graph input.
    pub fn add_input(&mut self, name: impl Into<String>, shape: Shape) -> ValueId {
        let k = self.inputs.len();
        let id = self.push_value(name.into(), shape, ValueKind::Input(k));
        self.inputs.push(id);
        id
    }

    /// Adds a named constant (its data comes when the graph runs).
    pub fn add_constant(&mut self, name: impl Into<String>, shape: Shape) -> ValueId {
        self.push_value(name.into(), shape, ValueKind::Constant)
    }

    /// Appends `node`, creating its output value `output` with the node's output shape.
    pub fn add_node(&mut self, mut node: Node, output: impl Into<String>) -> ValueId {
        let index = self.nodes.len();
        let id = self.push_value(
            output.into(),
            node.output_shape.clone(),
            ValueKind::Node(index),
        );
        node.output = id;
        self.nodes.push(node);
        id
    }

    fn push_value(&mut self, name: String, shape: Shape, kind: ValueKind) -> ValueId {
        self.values.push(ValueInfo { name, shape, kind });
        self.values.len() - 1
    }

    /// True when `v` is a constant.
    pub fn is_constant(&self, v: ValueId) -> bool {
        self.values[v].kind == ValueKind::Constant
    }

    /// The node producing `v`, if a node does.
    pub fn producer(&self, v: ValueId) -> Option<usize> {
        match self.values[v].kind {
            ValueKind::Node(i) => Some(i),
            _ => None,
        }
    }

    /// For each value, how many node inputs read it.
    pub fn reader_counts(&self) -> Vec<usize> {
        let mut readers = vec![0; self.values.len()];
        for n in &self.nodes {
            for v in n.inputs.iter().flatten() {
                readers[*v] += 1;
            }
        }
        readers
    }

    /// The names of what node `i` reads, constants left out: the producing node's name, or
    /// the graph input's.
    pub fn input_names(&self, i: usize) -> Vec<String> {
        self.nodes[i]
            .inputs
            .iter()
            .flatten()
            .filter(|&&v| !self.is_constant(v))
            .map(|&v| match self.values[v].kind {
                ValueKind::Node(j) => self.nodes[j].name.clone(),
                _ => self.values[v].name.clone(),
            })
            .collect()
    }

    /// True when every node reads only the one before it (the first: the first input).
    pub fn is_sequential(&self) -> bool {
        self.nodes.iter().enumerate().all(|(i, n)| {
            let data: Vec<ValueId> = n
                .inputs
                .iter()
                .flatten()
                .copied()
                .filter(|&v| !self.is_constant(v))
                .collect();
            let expected = if i == 0 {
                self.inputs.first().copied()
            } else {
                Some(self.nodes[i - 1].output)
            };
            data.len() == 1 && Some(data[0]) == expected
        })
    }

    /// True when graph output `k` is a softmax's result — the producing node is a softmax or
    /// ends in one, seen through the nodes that only pass values on (flatten, dropout, reshape,
    /// a linear activation) — so its values are probabilities.
    pub fn output_is_softmax(&self, k: usize) -> bool {
        let mut v = self.outputs.get(k).copied();
        while let Some(i) = v.and_then(|v| self.producer(v)) {
            let node = &self.nodes[i];
            match &node.op {
                Op::Softmax { .. } => return true,
                Op::Alias => v = node.input(0),
                op => return op.epilogue().is_some_and(|e| e.softmax),
            }
        }
        false
    }

    /// Parameters counted by the formulas (exact).
    pub fn total_params(&self) -> u64 {
        self.nodes.iter().map(|n| n.param_count).sum()
    }

    /// Trainable parameters.
    pub fn trainable_params(&self) -> u64 {
        self.nodes.iter().map(|n| n.trainable).sum()
    }

    /// Non-trainable parameters (BatchNorm moving statistics).
    pub fn non_trainable_params(&self) -> u64 {
        self.nodes.iter().map(|n| n.non_trainable).sum()
    }

    /// Multiply-accumulates of one run at the planned shapes.
    pub fn total_macs(&self) -> u64 {
        self.nodes.iter().map(|n| n.macs).sum()
    }

    /// Bytes of f32 weights the counted parameters need.
    pub fn weight_bytes(&self) -> u128 {
        self.total_params() as u128 * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Epilogue, UnaryOp};

    fn chain(ops: Vec<Op>) -> Graph {
        let mut g = Graph::new("g");
        let mut v = g.add_input("x", vec![1, 4]);
        for (i, op) in ops.into_iter().enumerate() {
            let mut n = Node::new(format!("n{i}"), "t", op);
            n.inputs = vec![Some(v)];
            n.output_shape = vec![1, 4];
            v = g.add_node(n, format!("v{i}"));
        }
        g.outputs.push(v);
        g
    }

    #[test]
    fn an_output_is_a_softmax_seen_through_the_nodes_that_pass_values_on() {
        let softmax = || Op::Softmax {
            outer: 1,
            axis_len: 4,
            inner: 1,
        };
        let dense = |softmax| Op::Dense {
            m: 1,
            k: 4,
            n: 4,
            epilogue: Epilogue {
                softmax,
                ..Epilogue::default()
            },
        };
        assert!(chain(vec![softmax()]).output_is_softmax(0));
        assert!(chain(vec![softmax(), Op::Alias, Op::Alias]).output_is_softmax(0));
        assert!(chain(vec![dense(true), Op::Alias]).output_is_softmax(0));
        assert!(!chain(vec![dense(false)]).output_is_softmax(0));
        assert!(!chain(vec![softmax(), Op::Unary(UnaryOp::Relu)]).output_is_softmax(0));
        assert!(
            !chain(vec![Op::Alias]).output_is_softmax(0),
            "the input itself"
        );
        assert!(
            !chain(vec![softmax()]).output_is_softmax(1),
            "no such output"
        );
    }
}
