//! The one executor: runs a planned, compiled graph. Computed values live in a table indexed by
//! value; each is dropped after its last reader — or moved into it, for ops that only change
//! the shape or work in place — so memory holds the live frontier of the graph, not every
//! activation. The buffers of dropped values are kept (a few, [`Spare`]) and reused for the
//! outputs the kernels overwrite whole (convolutions, pooling, channel sums): such an output is
//! neither allocated nor zero-filled again. The ones left at the end of a run go back to the
//! compiled graph's [`BufferPool`], where the next run of it starts from, so repeated runs
//! (a benchmark, a batch of pictures) allocate and zero-fill their outputs once. An element-wise op writes into an operand no later
//! node reads. The arms per op are in [`node`], the kernels the `cnn-conv` crate has no
//! counterpart for in [`ops`].
//!
//! It knows nothing of files: the caller gives the inputs as flat slices with the planned
//! shapes and the constants through [`Constants`]; errors name the node by index
//! ([`ExecError`]), and the front end words them.

mod node;
mod norm;
pub mod ops;
#[cfg(test)]
mod ops_tests;

use crate::compile::{Compiled, Constants};
use crate::ir::{Graph, Shape, ValueId, ValueKind};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A computed tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub shape: Shape,
    pub data: Vec<f32>,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A kernel rejected its buffers (an engine bug; reported, never a panic).
    #[error("{source}")]
    Kernel {
        node: usize,
        source: cnn_conv::KernelError,
    },
    /// A buffer for the node's output could not be allocated.
    #[error("could not allocate {bytes} bytes for the output")]
    Alloc { node: usize, bytes: u128 },
    /// The compiled form belongs to another graph.
    #[error("the graph was compiled for {compiled} nodes but has {nodes}; compile it again")]
    Stale { compiled: usize, nodes: usize },
    /// Anything else about one node.
    #[error("{message}")]
    Node { node: usize, message: String },
    /// A graph input does not hold its planned number of values.
    #[error("{message}")]
    Input { input: usize, message: String },
    /// The number of inputs given does not match the graph.
    #[error("the model has {expected} input(s), {given} given")]
    InputCount { expected: usize, given: usize },
}

/// Buffers of dropped values kept for reuse: at most [`Spare::KEPT`], the largest.
#[derive(Default)]
pub(crate) struct Spare {
    buffers: Vec<Vec<f32>>,
}

impl Spare {
    const KEPT: usize = 4;

    /// Keeps `data`'s buffer (dropping the smallest one when more than `KEPT` are kept).
    fn keep(&mut self, data: Vec<f32>) {
        self.buffers.push(data);
        if self.buffers.len() > Self::KEPT {
            self.buffers
                .sort_by_key(|v| std::cmp::Reverse(v.capacity()));
            self.buffers.truncate(Self::KEPT);
        }
    }

    /// A kept buffer with room for `len` values, resized to `len` (its old contents left in
    /// place, any part beyond its old length zeroed): the one with the fewest values to zero
    /// (none when its length is already `len` or more), and of those the one with the least
    /// room. Zeroing is the only cost of a kept buffer; a larger one serves a smaller output
    /// as well.
    fn take(&mut self, len: usize) -> Option<Vec<f32>> {
        let fit = (0..self.buffers.len())
            .filter(|&i| self.buffers[i].capacity() >= len)
            .min_by_key(|&i| {
                let b = &self.buffers[i];
                (len.saturating_sub(b.len()), b.capacity())
            })?;
        let mut v = self.buffers.swap_remove(fit);
        v.truncate(len);
        v.resize(len, 0.0);
        Some(v)
    }
}

/// The spare buffers one run of a compiled graph leaves to the next ([`Spare`]'s, at most
/// [`Spare::KEPT`]). Runs of the same compiled graph at once each take what is there when they
/// start (the others start empty). A clone starts empty; two pools always compare equal (they
/// hold scratch, not results).
#[derive(Default)]
pub struct BufferPool(Mutex<Vec<Vec<f32>>>);

impl BufferPool {
    /// Everything kept, taken out.
    fn take_all(&self) -> Vec<Vec<f32>> {
        match self.0.lock() {
            Ok(mut kept) => std::mem::take(&mut *kept),
            Err(_) => Vec::new(),
        }
    }

    /// Keeps `buffers` for the next run (the largest, with what is already kept).
    fn give_back(&self, buffers: Vec<Vec<f32>>) {
        if let Ok(mut kept) = self.0.lock() {
            let mut spare = Spare {
                buffers: std::mem::take(&mut *kept),
            };
            buffers.into_iter().for_each(|b| spare.keep(b));
            *kept = spare.buffers;
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.0.lock().map_or(0, |kept| {
            kept.iter().map(|b| b.capacity() * 4).sum::<usize>()
        })
    }
}

impl Clone for BufferPool {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for BufferPool {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BufferPool({} bytes)", self.bytes())
    }
}

/// The state of one run.
pub(crate) struct Env<'a> {
    graph: &'a Graph,
    consts: &'a dyn Constants,
    /// Computed values (`None`: not computed yet, or dropped).
    values: Vec<Option<Vec<f32>>>,
    /// The caller's input tensors, borrowed (never moved or freed here).
    inputs: &'a [&'a [f32]],
    /// Index of the last node reading each value (graph outputs: never dropped).
    last_use: Vec<usize>,
    spare: Spare,
}

impl<'a> Env<'a> {
    /// The data of value `v`.
    fn get(&self, node: usize, v: ValueId) -> Result<&[f32], ExecError> {
        let value = &self.graph.values[v];
        let missing = |what: &str| ExecError::Node {
            node,
            message: format!("value '{}' {what}", value.name),
        };
        match value.kind {
            ValueKind::Input(k) => self
                .inputs
                .get(k)
                .copied()
                .ok_or_else(|| missing("was not given")),
            ValueKind::Node(_) => self.values[v]
                .as_deref()
                .ok_or_else(|| missing("has not been computed")),
            ValueKind::Constant => self
                .consts
                .constant(&value.name)
                .ok_or_else(|| missing("has no data")),
        }
    }

    /// True when node `node` is the last reader of `v` and `v` is a computed value.
    fn owned(&self, v: ValueId, node: usize) -> bool {
        self.last_use[v] == node && self.values[v].is_some()
    }

    /// Takes `v`'s data out if `node` is its last reader, else copies it.
    fn take(&mut self, v: ValueId, node: usize) -> Result<Vec<f32>, ExecError> {
        if self.last_use[v] == node {
            if let Some(d) = self.values[v].take() {
                return Ok(d);
            }
        }
        self.copied(v, node)
    }

    /// A copy of `v`'s data.
    fn copied(&self, v: ValueId, node: usize) -> Result<Vec<f32>, ExecError> {
        let data = self.get(node, v)?;
        let mut copy = Vec::new();
        if copy.try_reserve_exact(data.len()).is_err() {
            return Err(alloc_error(node, data.len()));
        }
        copy.extend_from_slice(data);
        Ok(copy)
    }

    /// A buffer of `len` values for an output the kernel overwrites whole: a kept one
    /// ([`Spare::take`]), else a new zero-filled one.
    fn overwritable(&mut self, node: usize, len: usize) -> Result<Vec<f32>, ExecError> {
        match self.spare.take(len) {
            Some(v) => Ok(v),
            None => zeroed(node, len),
        }
    }
}

/// A zero-filled output buffer, or an error (not an abort) when memory cannot be had.
fn zeroed(node: usize, len: usize) -> Result<Vec<f32>, ExecError> {
    cnn_tensor::try_zeroed(len, "the output").map_err(|_| alloc_error(node, len))
}

fn alloc_error(node: usize, len: usize) -> ExecError {
    ExecError::Alloc {
        node,
        bytes: len as u128 * 4,
    }
}

/// Makes sure `len` values can be had, before a kernel that allocates its result itself.
fn reserve(node: usize, len: usize) -> Result<(), ExecError> {
    let mut v: Vec<f32> = Vec::new();
    v.try_reserve_exact(len).map_err(|_| alloc_error(node, len))
}

/// Runs `graph` as `compiled` says on `inputs` (one flat tensor per graph input, in order,
/// with the planned shapes; borrowed, not copied), with the constants from `consts`; returns
/// the graph outputs. With `times`, adds each node's wall time to `times[node]`.
pub fn run(
    graph: &Graph,
    compiled: &Compiled,
    consts: &dyn Constants,
    inputs: &[&[f32]],
    mut times: Option<&mut [Duration]>,
) -> Result<Vec<Value>, ExecError> {
    if compiled.nodes.len() != graph.nodes.len() {
        return Err(ExecError::Stale {
            compiled: compiled.nodes.len(),
            nodes: graph.nodes.len(),
        });
    }
    if inputs.len() != graph.inputs.len() {
        return Err(ExecError::InputCount {
            expected: graph.inputs.len(),
            given: inputs.len(),
        });
    }
    for (k, (&v, data)) in graph.inputs.iter().zip(inputs).enumerate() {
        let shape = &graph.values[v].shape;
        let want: usize = shape.iter().product();
        if data.len() != want {
            return Err(ExecError::Input {
                input: k,
                message: format!(
                    "{} values given, the shape {shape:?} needs {want}",
                    data.len()
                ),
            });
        }
    }
    // The residual Adds fused into convolutions no longer read their residual: the
    // convolution does, earlier.
    // `unread[add]`: the skip the fused Add at `add` does not read.
    let mut unread: Vec<Option<ValueId>> = vec![None; graph.nodes.len()];
    for w in &compiled.nodes {
        if let Some((skip, add)) = w.residual {
            unread[add] = Some(skip);
        }
    }
    let mut last_use = vec![0usize; graph.values.len()];
    for (i, n) in graph.nodes.iter().enumerate() {
        for &v in n.inputs.iter().flatten() {
            if unread[i] != Some(v) {
                last_use[v] = i;
            }
        }
    }
    for (t, w) in compiled.nodes.iter().enumerate() {
        if let Some((skip, _)) = w.residual {
            last_use[skip] = last_use[skip].max(t);
        }
    }
    for &o in &graph.outputs {
        last_use[o] = usize::MAX;
    }
    let mut env = Env {
        graph,
        consts,
        values: vec![None; graph.values.len()],
        inputs,
        last_use,
        spare: Spare {
            buffers: compiled.buffers.take_all(),
        },
    };
    for (i, (n, work)) in graph.nodes.iter().zip(&compiled.nodes).enumerate() {
        if work.skip {
            continue; // its one reader does not read its output (compile decided)
        }
        let start = Instant::now();
        let out = node::run_node(&mut env, i, work)?;
        let out_len: usize = n.output_shape.iter().product();
        if out.len() != out_len {
            return Err(ExecError::Node {
                node: i,
                message: format!(
                    "produced {} values for the planned shape {:?}",
                    out.len(),
                    n.output_shape
                ),
            });
        }
        for &v in n.inputs.iter().flatten() {
            if env.last_use[v] == i {
                if let Some(d) = env.values[v].take() {
                    env.spare.keep(d);
                }
            }
        }
        env.values[n.output] = Some(out);
        if let Some(t) = times.as_deref_mut().and_then(|t| t.get_mut(i)) {
            *t += start.elapsed();
        }
    }
    let last = graph.nodes.len().saturating_sub(1);
    let outputs = graph
        .outputs
        .iter()
        .enumerate()
        .map(|(k, &o)| {
            // Moved out unless a later output is the same value.
            let again = graph.outputs[k + 1..].contains(&o);
            let data = match env.values[o].take_if(|_| !again) {
                Some(d) => d,
                None => env.get(last, o)?.to_vec(),
            };
            Ok(Value {
                shape: graph.values[o].shape.clone(),
                data,
            })
        })
        .collect();
    compiled.buffers.give_back(env.spare.buffers);
    outputs
}

#[cfg(test)]
mod tests {
    use super::Spare;

    #[test]
    fn spare_buffers_keep_the_largest_and_give_the_smallest_fit() {
        let mut spare = Spare::default();
        for len in [10, 50, 20, 40, 30] {
            spare.keep(vec![len as f32; len]);
        }
        // Five given, four kept: the 10-value buffer was dropped.
        assert!(spare
            .take(11)
            .is_some_and(|v| v.capacity() == 20 && v == vec![20.0; 11]));
        assert!(spare
            .take(5)
            .is_some_and(|v| v.capacity() == 30 && v.len() == 5));
        // A buffer long enough is preferred to one with less room that would need zeroing.
        spare.keep(vec![7.0; 3]);
        let mut grown = Vec::with_capacity(35);
        grown.extend([1.0f32; 2]);
        spare.keep(grown);
        assert_eq!(spare.take(4).map(|v| v.capacity()), Some(40));
        assert_eq!(spare.take(5).map(|v| v.capacity()), Some(50));
        // Longer than its old length: the old values stay, the new part is zero.
        let v = spare.take(5).unwrap();
        assert_eq!((v.capacity(), &v[..]), (35, &[1.0, 1.0, 0.0, 0.0, 0.0][..]));
        assert!(spare.take(60).is_none());
        assert_eq!(spare.take(1).map(|v| v.capacity()), Some(3));
        assert!(spare.take(1).is_none());
    }
}
