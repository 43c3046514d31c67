//! The command line's one front door: [`open`] is the only place that looks at a model path's
//! kind (the only extension test), and every command then takes one path through [`Front`]:
//! the planned graph, its summary document, its explanations and its benchmark come from the
//! same code for model files and ONNX files. What stays per kind is what differs in substance:
//! a model file's weights are allocated or read from a weight file and it runs on pictures; an
//! ONNX file carries its weights, its shapes include the batch, and it runs on one `.npy`
//! array (`run_onnx`).

use crate::bench::{self, BenchOptions, BenchReport, Network};
use crate::classify;
use crate::recipe::{Layout as InputLayout, Recipe, Target};
use crate::report::run::{self as run_report, RunJson};
use crate::report::summary::{self, Allocation, LayerJson, Layout, Meta, SummaryJson};
use crate::Model;
use cnn_graph::{ConvExplanation, Graph};
use cnn_model::format::human_bytes;
use cnn_onnx::{declared_input_shapes, format_dims, plan, Dim, OnnxModel, OnnxPlan};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// An opened model of either kind.
pub enum Front {
    /// A model file, planned (weights allocated or loaded by the command that needs them).
    ModelFile(Box<Model>),
    /// An ONNX file, read and planned at its declared shapes with batch 1.
    Onnx(Box<OnnxFront>),
}

/// An ONNX file, and its plan at the declared input shapes once asked for (`run` plans at
/// the array's shape instead, so a file declaring symbolic sizes still runs).
pub struct OnnxFront {
    pub model: OnnxModel,
    declared: std::cell::OnceCell<OnnxPlan>,
}

/// The kinds of model file the command line reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A TOML model file (`.toml`, and anything not named otherwise).
    ModelFile,
    /// An ONNX file (`.onnx`).
    Onnx,
}

impl Kind {
    /// The kind of `path`, by its extension: the one place the command line decides it.
    pub fn of(path: &Path) -> Kind {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
        {
            Kind::Onnx
        } else {
            Kind::ModelFile
        }
    }
}

/// Opens `path` by its kind: a model file is planned (nothing allocated); an ONNX file over
/// `max_bytes` is refused before it is read (the weights live in the file), else read.
pub fn open(path: &Path, max_bytes: u128) -> Result<Front, String> {
    if Kind::of(path) == Kind::ModelFile {
        let m = Model::plan_file(path).map_err(|e| e.to_string())?;
        return Ok(Front::ModelFile(Box::new(m)));
    }
    let model = load_onnx(path, max_bytes)?;
    Ok(Front::Onnx(Box::new(OnnxFront {
        model,
        declared: std::cell::OnceCell::new(),
    })))
}

/// Reads `path`, refusing files whose size is over `max_bytes` before reading them.
fn load_onnx(path: &Path, max_bytes: u128) -> Result<OnnxModel, String> {
    let shown = path.display();
    let size = std::fs::metadata(path)
        .map_err(|e| crate::file_error(path, "open", &e))?
        .len() as u128;
    if size > max_bytes {
        return Err(format!(
            "{shown}: the file is {}, over the {} ceiling on weight memory (--max-weight-bytes)",
            human_bytes(size),
            human_bytes(max_bytes)
        ));
    }
    OnnxModel::load_within(path, max_bytes).map_err(|e| e.to_string())
}

/// True for the input files an ONNX model runs on: `.npy` arrays and `.pb` TensorProto files
/// (the ONNX test-data layout).
pub fn is_onnx_input(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy") || e.eq_ignore_ascii_case("pb"))
}

/// A float32 `.npy` array or `.pb` TensorProto: its shape and values.
fn read_input(path: &Path) -> Result<(Vec<usize>, Vec<f32>), String> {
    let is_pb = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("pb"));
    if !is_pb {
        let array = crate::npy::read_array(path)?;
        return Ok((array.shape().to_vec(), array.iter().copied().collect()));
    }
    std::fs::metadata(path).map_err(|e| crate::file_error(path, "open", &e))?;
    let (_, c) = cnn_onnx::read_tensor_file(path).map_err(|e| e.to_string())?;
    match c.as_f32() {
        Some(v) => Ok((c.shape.clone(), v.to_vec())),
        None => Err(format!(
            "{}: a {} tensor; the engine's inputs are FLOAT",
            path.display(),
            c.type_name()
        )),
    }
}

/// Plans `model` at its declared input shapes with batch `batch`.
fn plan_declared(model: &OnnxModel, batch: usize) -> Result<OnnxPlan, String> {
    let shapes =
        declared_input_shapes(model, batch).map_err(|e| e.in_file(&model.path).to_string())?;
    plan(model, &shapes).map_err(|e| e.in_file(&model.path).to_string())
}

impl Front {
    /// The planned graph (at batch 1).
    pub fn graph(&self) -> Result<&Graph, String> {
        match self {
            Front::ModelFile(m) => Ok(&m.plan.graph),
            Front::Onnx(o) => o.plan().map(|p| &p.graph),
        }
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        match self {
            Front::ModelFile(m) => m.name(),
            Front::Onnx(o) => &o.model.name,
        }
    }

    /// The im2col + GEMM explanation of every weighted node (planned only: never compiled).
    pub fn explanations(&self) -> Result<Vec<ConvExplanation>, String> {
        Ok(cnn_graph::explain(self.graph()?))
    }

    /// The summary document and its layout; `alloc` says what became of a model file's
    /// weights (an ONNX file's are the file's).
    pub fn summary(&self, alloc: &Allocation) -> Result<(SummaryJson, Allocation, Layout), String> {
        match self {
            Front::ModelFile(m) => Ok((
                summary::to_json(&m.plan, alloc),
                alloc.clone(),
                Layout::of_plan(&m.plan),
            )),
            Front::Onnx(o) => o.summary(),
        }
    }

    /// Times a forward pass (a model file's weights must be allocated or loaded).
    pub fn bench(&self, opts: BenchOptions) -> Result<BenchReport, String> {
        match self {
            Front::ModelFile(m) => bench::bench(m, opts),
            Front::Onnx(o) => o.bench(opts),
        }
    }
}

impl OnnxFront {
    /// The plan at the declared input shapes, batch 1.
    fn plan(&self) -> Result<&OnnxPlan, String> {
        if let Some(p) = self.declared.get() {
            return Ok(p);
        }
        let p = plan_declared(&self.model, 1)?;
        Ok(self.declared.get_or_init(|| p))
    }

    /// The summary: the graph's rows plus one for float initializers no node reads, checked
    /// against the values the file holds.
    fn summary(&self) -> Result<(SummaryJson, Allocation, Layout), String> {
        let (model, p) = (&self.model, self.plan()?);
        let inputs = p.inputs();
        let loaded = model.initializer_float_elements();
        let alloc = Allocation::Loaded(loaded, model.path.clone());
        let meta = Meta {
            name: model.name.clone(),
            path: model.path.clone(),
            input_shape: inputs.first().map(|(_, s)| s.clone()).unwrap_or_default(),
            batch_in_shapes: true,
        };
        let mut doc = summary::graph_json(&p.graph, &meta, &alloc);
        let unused: u64 = p.unused_initializers.iter().map(|(_, n)| n).sum();
        if !p.unused_initializers.is_empty() {
            let names: Vec<&str> = p
                .unused_initializers
                .iter()
                .map(|(n, _)| n.as_str())
                .collect();
            doc.layers.push(LayerJson {
                name: "(initializers no node reads)".to_string(),
                type_name: names.join(", "),
                output_shape: Vec::new(),
                params: unused,
                trainable_params: unused,
                non_trainable_params: 0,
                formula: p
                    .unused_initializers
                    .iter()
                    .map(|(_, n)| n.to_string())
                    .collect::<Vec<_>>()
                    .join(" + "),
                macs: 0,
                inputs: Vec::new(),
            });
        }
        doc.total_params += unused;
        doc.trainable_params += unused;
        doc.weight_bytes = doc.total_params as u128 * 4;
        if loaded != doc.total_params {
            return Err(format!(
                "{}: the initializers hold {loaded} float values, but the formulas count {}",
                model.path, doc.total_params
            ));
        }
        doc.notes = cnn_onnx::provenance::export_notes(model);
        let mut header = vec![format!("Model: \"{}\" ({})", model.name, model.path)];
        header.push(format!(
            "ONNX opset {}{}; {} nodes, {} initializers",
            model.opset,
            if model.producer.is_empty() {
                String::new()
            } else {
                format!(", exported by {}", model.producer)
            },
            model.nodes.len(),
            model.initializers.len()
        ));
        for (input, (name, shape)) in model.inputs.iter().zip(&inputs) {
            let declared = input
                .dims
                .as_deref()
                .map(format_dims)
                .unwrap_or_else(|| "?".to_string());
            header.push(format!(
                "Input: {name} {shape:?} (declared {declared}; shapes below include the batch)"
            ));
        }
        let layout = Layout {
            header,
            connected: true,
            macs_label: "MACs per run at this batch",
        };
        Ok((doc, alloc, layout))
    }

    /// Per-node medians on a seeded random input at `opts.batch`.
    fn bench(&self, opts: BenchOptions) -> Result<BenchReport, String> {
        let model = &self.model;
        let batch = opts.batch.max(1);
        let p = plan_declared(model, batch)?;
        let inputs = p.inputs();
        if let Some((name, shape)) = inputs.iter().find(|(_, s)| s.first() != Some(&batch)) {
            return Err(format!(
                "{}: input '{}' has a fixed batch dimension ({shape:?}); --batch {} cannot apply",
                cnn_onnx::error::one_line(&model.path),
                cnn_onnx::error::one_line(name),
                opts.batch
            ));
        }
        let mut seed = opts.seed;
        let mut data: Vec<Vec<f32>> = Vec::new();
        for (_, s) in &inputs {
            data.push(crate::random_values(s.iter().product(), seed)?);
            seed = seed.wrapping_add(1);
        }
        let slices: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
        let consts = cnn_onnx::ModelConstants::new(model);
        let compiled = cnn_graph::compile(&p.graph, &consts);
        let net = Network::of_graph(&p.graph, batch);
        bench::measure(&net, opts, |times| {
            cnn_onnx::run_compiled(model, &p, &compiled, &consts, &slices, Some(times))
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    /// The picture target of the model's one input under `recipe` (its layout, channels and
    /// size), and the batch the file fixes (`None`: symbolic).
    pub fn picture_target(&self, recipe: &Recipe) -> Result<(Target, Option<usize>), String> {
        let model = &self.model;
        let at = |e: String| format!("{}: {e}", model.path);
        let [input] = model.inputs.as_slice() else {
            return Err(at(format!(
                "the model has {} inputs; pictures feed exactly one",
                model.inputs.len()
            )));
        };
        let dims = input.dims.as_ref().ok_or_else(|| {
            at(format!(
                "input '{}' declares no shape; pictures need one",
                input.name
            ))
        })?;
        let fixed = |d: &Dim| match d {
            Dim::Fixed(v) => Some(*v),
            Dim::Symbolic(_) => None,
        };
        let Some((batch, item)) = dims.split_first() else {
            return Err(at(format!("input '{}' is a scalar", input.name)));
        };
        let item: Vec<Option<usize>> = item.iter().map(fixed).collect();
        let target = recipe.fit(&item).map_err(at)?;
        Ok((target, fixed(batch)))
    }

    /// `cnn run model.onnx pictures…`: decodes the pictures by `recipe`, runs them in batches
    /// (of 32 when the batch is symbolic, else of the file's batch, the last one padded with
    /// zeros), optionally saves the first output of every picture (stacked, before any
    /// softmax) and ranks each picture's first output.
    pub fn classify(
        &self,
        paths: &[PathBuf],
        recipe: &Recipe,
        save_output: Option<&Path>,
        top: usize,
    ) -> Result<RunJson, String> {
        let model = &self.model;
        let (target, fixed_batch) = self.picture_target(recipe)?;
        let bar = classify::progress(paths.len());
        let inputs = classify::load_pictures(recipe, &target, paths, &bar)?;
        let per_batch = fixed_batch.unwrap_or(classify::BATCH).max(1);
        let item: Vec<usize> = match target.layout {
            InputLayout::Nchw => vec![target.channels, target.height, target.width],
            InputLayout::Nhwc => vec![target.height, target.width, target.channels],
        };
        // One plan per batch size used (the full one and the last), compiled once each.
        let mut sizes: Vec<usize> = inputs.chunks(per_batch).map(|c| c.len()).collect();
        if fixed_batch.is_some() {
            sizes.iter_mut().for_each(|n| *n = per_batch);
        }
        sizes.dedup();
        let consts = cnn_onnx::ModelConstants::new(model);
        let mut plans = Vec::new();
        for &n in &sizes {
            let mut shape = vec![n];
            shape.extend(&item);
            let p = plan(model, &[shape]).map_err(|e| e.in_file(&model.path).to_string())?;
            let compiled = cnn_graph::compile(&p.graph, &consts);
            plans.push((n, p, compiled));
        }
        let item_len: usize = item.iter().product();
        let batches: Vec<Vec<Vec<f32>>> = inputs
            .par_chunks(per_batch)
            .map(|chunk| {
                let n = if fixed_batch.is_some() {
                    per_batch
                } else {
                    chunk.len()
                };
                let (_, p, compiled) = plans
                    .iter()
                    .find(|(size, ..)| *size == n)
                    .ok_or("no plan for this batch size")?;
                // A batch the file fixes may be far larger than the pictures: fallible.
                let len = n.checked_mul(item_len).ok_or("the batch is too large")?;
                let mut data = Vec::new();
                data.try_reserve_exact(len).map_err(|_| {
                    format!(
                        "{}: the file fixes the batch at {n}; a batch of {n} pictures does not \
                         fit in memory",
                        model.path
                    )
                })?;
                chunk.iter().for_each(|x| data.extend_from_slice(x));
                data.resize(len, 0.0);
                let y = cnn_onnx::run_compiled(model, p, compiled, &consts, &[&data], None)
                    .map_err(|e| e.in_file(&model.path).to_string())?;
                let y = y.into_iter().next().ok_or("the model has no output")?;
                bar.inc(chunk.len() as u64);
                // One result per picture only when the output's first axis is the batch.
                let per = y.data.len() / n;
                if y.shape.first() != Some(&n) || per * n != y.data.len() {
                    return Err(format!(
                        "{}: the first output {:?} has no batch axis of {n}: it cannot be \
                         split into one result per picture",
                        model.path, y.shape
                    ));
                }
                Ok(y.data
                    .chunks(per.max(1))
                    .take(chunk.len())
                    .map(<[f32]>::to_vec)
                    .collect())
            })
            .collect::<Result<_, String>>()?;
        bar.finish_and_clear();
        let mut outputs: Vec<Vec<f32>> = batches.into_iter().flatten().collect();
        let (_, p, _) = &plans[0];
        let out_shape = p.graph.values[p.graph.outputs[0]].shape.clone();
        let item_shape = out_shape.get(1..).unwrap_or(&[]).to_vec();
        if let Some(out) = save_output {
            let mut shape = vec![outputs.len()];
            shape.extend(&item_shape);
            let data: Vec<f32> = outputs.iter().flatten().copied().collect();
            let t = cnn_tensor::Tensor::from_vec(&shape, data).map_err(|e| e.to_string())?;
            crate::npy::write_output(out, &t)?;
        }
        let ends_in_softmax = p.graph.output_is_softmax(0);
        let (ranking, apply_softmax) =
            classify::ranking_for(recipe, &item_shape, ends_in_softmax, top)
                .map_err(|e| format!("{}: {e}", model.path))?;
        if apply_softmax {
            outputs.iter_mut().for_each(|v| classify::softmax(v));
        }
        let results = paths
            .iter()
            .zip(&outputs)
            .map(|(path, v)| {
                run_report::result(&path.display().to_string(), 0, v, &item_shape, &ranking)
            })
            .collect();
        Ok(RunJson {
            model: model.name.clone(),
            preprocessing: Some(recipe.describe(&target)),
            results,
        })
    }

    /// `cnn run model.onnx x.npy`: plans at the array's shape (a missing batch axis is added),
    /// runs, optionally saves the first output, and ranks each batch item's output.
    pub fn run(
        &self,
        array_path: &Path,
        recipe: &Recipe,
        save_output: Option<&Path>,
        top: usize,
    ) -> Result<RunJson, String> {
        let model = &self.model;
        if model.inputs.len() != 1 {
            return Err(format!(
                "{}: the model has {} inputs; `cnn run` feeds exactly one",
                model.path,
                model.inputs.len()
            ));
        }
        let (mut shape, data) = read_input(array_path)?;
        let declared_rank = model.inputs[0].dims.as_ref().map(|d| d.len());
        if declared_rank == Some(shape.len() + 1) {
            shape.insert(0, 1);
        }
        let p = plan(model, std::slice::from_ref(&shape))
            .map_err(|e| format!("{}: {}", array_path.display(), e.in_file(&model.path)))?;
        let outputs =
            cnn_onnx::run(model, &p, &[data]).map_err(|e| e.in_file(&model.path).to_string())?;
        let y = outputs.first().ok_or("the model has no output")?;
        if let Some(out) = save_output {
            let t = cnn_tensor::Tensor::from_vec(&y.shape, y.data.clone())
                .map_err(|e| e.to_string())?;
            crate::npy::write_output(out, &t)?;
        }
        let batch = y.shape.first().copied().unwrap_or(1).max(1);
        let item_shape = y.shape.get(1..).unwrap_or(&[]).to_vec();
        // Labels and softmax from the recipe (a sidecar, --labels, --softmax, a preset).
        let (ranking, apply_softmax) =
            classify::ranking_for(recipe, &item_shape, p.graph.output_is_softmax(0), top)
                .map_err(|e| format!("{}: {e}", model.path))?;
        let per = y.data.len() / batch;
        let name = array_path.display().to_string();
        let results = y
            .data
            .chunks(per.max(1))
            .enumerate()
            .map(|(i, v)| {
                let mut v = v.to_vec();
                if apply_softmax {
                    classify::softmax(&mut v);
                }
                run_report::result(&name, i, &v, &item_shape, &ranking)
            })
            .collect();
        Ok(RunJson {
            model: model.name.clone(),
            preprocessing: None,
            results,
        })
    }
}
