//! The command line's second front door: `summary`, `explain`, `run` and `bench` on `.onnx`
//! files. The graph is read and planned by `cnn-onnx`, runs on the same kernels as model
//! files, and is reported through the same summary, explain, run and bench renderers.
//!
//! ONNX shapes include the batch: the summary plans the declared input shape with a symbolic
//! batch dimension set to 1, `run` plans at the shape of the array it is given.

use crate::bench::{self, BenchOptions, BenchReport, LayerInfo, Network};
use crate::report::run::{self as run_report, Ranking, RunJson};
use crate::report::summary::{Allocation, LayerJson, Layout, SummaryJson};
use cnn_model::format::human_bytes;
use cnn_model::ConvExplanation;
use cnn_onnx::{declared_input_shapes, format_dims, plan, Kernel, OnnxModel, OnnxPlan};
use std::collections::HashMap;
use std::path::Path;

/// True for a path ending in `.onnx`.
pub fn is_onnx(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// Reads `path`, refusing files whose size is over `max_bytes` before reading them (the
/// weights live in the file).
pub fn load(path: &Path, max_bytes: u128) -> Result<OnnxModel, String> {
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
    OnnxModel::load(path).map_err(|e| e.to_string())
}

/// Plans `model` at its declared input shapes with batch `batch`.
pub fn plan_declared(model: &OnnxModel, batch: usize) -> Result<OnnxPlan, String> {
    let shapes =
        declared_input_shapes(model, batch).map_err(|e| e.in_file(&model.path).to_string())?;
    plan(model, &shapes).map_err(|e| e.in_file(&model.path).to_string())
}

/// Value name -> the node that produces it (graph inputs name themselves).
fn producers(model: &OnnxModel) -> HashMap<&str, &str> {
    model
        .nodes
        .iter()
        .flat_map(|n| {
            n.outputs
                .iter()
                .flatten()
                .map(move |o| (o.as_str(), n.name.as_str()))
        })
        .collect()
}

/// The summary document of a planned ONNX model, with its layout.
pub fn summary(
    model: &OnnxModel,
    p: &OnnxPlan,
) -> Result<(SummaryJson, Allocation, Layout), String> {
    let made_by = producers(model);
    let mut layers: Vec<LayerJson> = p
        .nodes
        .iter()
        .map(|n| LayerJson {
            name: n.name.clone(),
            type_name: n.op_type.clone(),
            output_shape: n.output_shape.clone(),
            params: n.param_count,
            trainable_params: n.trainable,
            non_trainable_params: n.non_trainable,
            formula: n.formula_text(),
            macs: n.macs,
            inputs: model.nodes[n.node]
                .inputs
                .iter()
                .flatten()
                .filter(|i| model.constant(i).is_none())
                .map(|i| made_by.get(i.as_str()).map_or(i.clone(), |s| s.to_string()))
                .collect(),
        })
        .collect();
    let unused: u64 = p.unused_initializers.iter().map(|(_, n)| n).sum();
    if !p.unused_initializers.is_empty() {
        let names: Vec<&str> = p
            .unused_initializers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        layers.push(LayerJson {
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
    let total = p.total_params() + unused;
    let loaded = model.initializer_float_elements();
    if loaded != total {
        return Err(format!(
            "{}: the initializers hold {loaded} float values, but the formulas count {total}",
            model.path
        ));
    }
    let first = p.inputs.first().map(|(_, s)| s.clone()).unwrap_or_default();
    let doc = SummaryJson {
        name: model.name.clone(),
        input_shape: first,
        layers,
        total_params: total,
        trainable_params: p.trainable_params() + unused,
        non_trainable_params: p.non_trainable_params(),
        allocated_params: Some(loaded),
        weights: Some(model.path.clone()),
        total_macs: p.total_macs(),
        weight_bytes: total as u128 * 4,
        path: model.path.clone(),
    };
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
    for (input, (name, shape)) in model.inputs.iter().zip(&p.inputs) {
        let declared = input
            .dims
            .as_deref()
            .map(format_dims)
            .unwrap_or_else(|| "?".to_string());
        header.push(format!(
            "Input: {name} {shape:?} (declared {declared}; shapes below include the batch)"
        ));
    }
    let alloc = Allocation::Loaded(loaded, model.path.clone());
    Ok((
        doc,
        alloc,
        Layout {
            header,
            connected: true,
            macs_label: "MACs per run at this batch",
        },
    ))
}

/// The im2col + GEMM explanation of every Conv and every Gemm the dense kernel runs.
pub fn explanations(p: &OnnxPlan) -> Vec<ConvExplanation> {
    p.nodes
        .iter()
        .filter_map(|n| match &n.kernel {
            Kernel::Conv { geom, .. } => Some(cnn_model::explain_conv(&n.name, "Conv", geom)),
            Kernel::Gemm { m, k, n: units, .. } => Some(cnn_model::explain_dense(
                &n.name, "Gemm", *k, *units, *m, n.macs,
            )),
            _ => None,
        })
        .collect()
}

/// `cnn run model.onnx x.npy`: plans at the array's shape (a missing batch axis is added),
/// runs, optionally saves the first output, and ranks each batch item's output.
pub fn run(
    model: &OnnxModel,
    array_path: &Path,
    save_output: Option<&Path>,
    top: usize,
) -> Result<RunJson, String> {
    if model.inputs.len() != 1 {
        return Err(format!(
            "{}: the model has {} inputs; `cnn run` feeds exactly one",
            model.path,
            model.inputs.len()
        ));
    }
    let array = crate::npy::read_array(array_path)?;
    let mut shape = array.shape().to_vec();
    let declared_rank = model.inputs[0].dims.as_ref().map(|d| d.len());
    if declared_rank == Some(shape.len() + 1) {
        shape.insert(0, 1);
    }
    let data: Vec<f32> = array.iter().copied().collect();
    let p = plan(model, std::slice::from_ref(&shape))
        .map_err(|e| format!("{}: {}", array_path.display(), e.in_file(&model.path)))?;
    let outputs =
        cnn_onnx::run(model, &p, &[data]).map_err(|e| e.in_file(&model.path).to_string())?;
    let y = outputs.first().ok_or("the model has no output")?;
    if let Some(out) = save_output {
        let t =
            cnn_tensor::Tensor::from_vec(&y.shape, y.data.clone()).map_err(|e| e.to_string())?;
        crate::npy::write_output(out, &t)?;
    }
    let softmax = p
        .nodes
        .iter()
        .rev()
        .find(|n| Some(model.nodes[n.node].output()) == model.outputs.first().map(|s| s.as_str()))
        .is_some_and(|n| n.op_type == "Softmax");
    let ranking = Ranking {
        k: top,
        probabilities: softmax,
        labels: None,
    };
    let batch = y.shape.first().copied().unwrap_or(1).max(1);
    let item_shape = y.shape.get(1..).unwrap_or(&[]).to_vec();
    let per = y.data.len() / batch;
    let name = array_path.display().to_string();
    let results = y
        .data
        .chunks(per.max(1))
        .enumerate()
        .map(|(i, v)| run_report::result(&name, i, v, &item_shape, &ranking))
        .collect();
    Ok(RunJson {
        model: model.name.clone(),
        results,
    })
}

/// `cnn bench model.onnx`: per-node medians on a seeded random input at `opts.batch`.
pub fn bench(model: &OnnxModel, opts: BenchOptions) -> Result<BenchReport, String> {
    use rand::{Rng, SeedableRng};
    let p = plan_declared(model, opts.batch.max(1))?;
    if let Some((name, shape)) = p
        .inputs
        .iter()
        .find(|(_, s)| s.first() != Some(&opts.batch.max(1)))
    {
        return Err(format!(
            "{}: input '{}' has a fixed batch dimension ({shape:?}); --batch {} cannot apply",
            cnn_onnx::error::one_line(&model.path),
            cnn_onnx::error::one_line(name),
            opts.batch
        ));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    let inputs: Vec<Vec<f32>> = p
        .inputs
        .iter()
        .map(|(_, s)| {
            (0..s.iter().product::<usize>())
                .map(|_| rng.random::<f32>())
                .collect()
        })
        .collect();
    let batch = opts.batch.max(1) as u64;
    let net = Network {
        name: model.name.clone(),
        layers: p
            .nodes
            .iter()
            .map(|n| LayerInfo {
                name: n.name.clone(),
                type_name: n.op_type.clone(),
                macs: n.macs / batch,
            })
            .collect(),
        total_macs: p.total_macs() / batch,
        largest_column_buffer_bytes: explanations(&p)
            .iter()
            .map(|e| e.column_bytes_allocated)
            .max()
            .unwrap_or(0),
    };
    bench::measure(&net, opts, |times| {
        cnn_onnx::run_timed(model, &p, &inputs, Some(times))
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}
