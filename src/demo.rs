//! `cnn` with no arguments: the trained digits model's summary (weights read from
//! `models/digits.safetensors` and counted against the formulas), the shipped sample pictures
//! classified, then every seed model — planned, allocated with seeded weights where it fits
//! under the ceiling, checked against the formulas, run on a random image — the comparison
//! that answers the first seed question, and the shipped ONNX networks checked against
//! onnxruntime.

use crate::report::{compare, run, summary};
use crate::{random_input, Model};
use cnn_model::format::{group_digits, human_bytes};
use cnn_model::weights::check_ceiling;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where the shipped models are: `./models`, else the source tree's `models/`.
pub fn models_dir() -> PathBuf {
    let local = PathBuf::from("models");
    if local.is_dir() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
    }
}

/// One row of the demo table.
struct Row {
    cells: Vec<String>,
}

fn run_one(path: &Path, seed: u64, max_bytes: u128) -> Result<Row, String> {
    let mut model = Model::plan_file(path).map_err(|e| e.to_string())?;
    let plan = &model.plan;
    let name = plan.name().to_string();
    let params = group_digits(plan.total_params() as u128);
    let macs = group_digits(plan.total_macs() as u128);
    let layers = plan.layers().len().to_string();
    if check_ceiling(plan, max_bytes).is_err() {
        return Ok(Row {
            cells: vec![
                name,
                layers,
                params,
                format!("not allocated ({})", human_bytes(plan.weight_bytes())),
                macs,
                "-".into(),
                "-".into(),
            ],
        });
    }
    model.allocate(seed, max_bytes).map_err(|e| e.to_string())?;
    let held = model.allocated_params().unwrap_or(0);
    let input = random_input(&model.plan, 1, seed)?;
    let start = Instant::now();
    let out = model.forward(&input).map_err(|e| e.to_string())?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let mut check = cnn_tensor::format_shape(out.item_shape());
    if model.plan.output_shape().len() == 1 {
        let s: f64 = out.as_slice().iter().map(|&v| v as f64).sum();
        check.push_str(&format!(", sum {s:.4}"));
    }
    Ok(Row {
        cells: vec![
            name,
            layers,
            params,
            format!("{} (equal)", group_digits(held as u128)),
            macs,
            format!("{ms:.1}"),
            check,
        ],
    })
}

/// The digits model: its summary with the loaded weights, then the samples classified.
fn digits(dir: &Path, max_bytes: u128) -> Result<String, String> {
    let model_file = dir.join("digits.toml");
    let weights = dir.join("digits.safetensors");
    let samples = dir.join("samples");
    let mut m = Model::plan_file(&model_file).map_err(|e| e.to_string())?;
    if check_ceiling(&m.plan, max_bytes).is_err() {
        let alloc = summary::Allocation::OverCeiling {
            bytes: m.plan.weight_bytes(),
            ceiling: max_bytes,
        };
        return Ok(format!(
            "{}(the samples are not classified: the weights are over the ceiling)\n",
            summary::render_table(&m.plan, &alloc)
        ));
    }
    m.load_weights(&weights, max_bytes)
        .map_err(|e| e.to_string())?;
    let alloc = summary::Allocation::Loaded(
        m.allocated_params().unwrap_or(0),
        weights.display().to_string(),
    );
    let mut out = format!(
        "$ cnn summary {} --weights {}\n\n",
        model_file.display(),
        weights.display()
    );
    out.push_str(&summary::render_table(&m.plan, &alloc));
    let pictures = crate::pictures::expand_inputs(std::slice::from_ref(&samples))?;
    let start = Instant::now();
    let outputs = crate::classify::run_pictures(&m, &pictures)?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let ranking = run::Ranking {
        k: 3,
        probabilities: m.plan.ends_in_softmax(),
        labels: m.plan.spec.labels.as_deref(),
    };
    let shape = m.plan.output_shape().to_vec();
    let results: Vec<_> = pictures
        .iter()
        .zip(&outputs)
        .map(|(p, v)| run::result(&p.display().to_string(), 0, v, &shape, &ranking))
        .collect();
    let right = results
        .iter()
        .zip(&pictures)
        .filter(|(r, p)| {
            let stem = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            r.label
                .as_deref()
                .is_some_and(|l| stem.starts_with(&format!("{l}_")))
        })
        .count();
    out.push_str(&format!(
        "\n$ cnn run {} --weights {} {}/ --top 3\n\n",
        model_file.display(),
        weights.display(),
        samples.display()
    ));
    let (recipe, target) = crate::classify::model_file_recipe(&m);
    let doc = run::RunJson {
        model: m.name().to_string(),
        preprocessing: Some(recipe.describe(&target)),
        results,
    };
    out.push_str(&run::render(&doc, 3));
    out.push_str(&format!(
        "{right} of {} pictures classified as their file names say ({ms:.1} ms for all of them).\n",
        pictures.len()
    ));
    Ok(out)
}

/// Runs the demo, returning the text to print.
pub fn run(seed: u64, max_bytes: u128) -> Result<String, String> {
    let dir = models_dir();
    let mut out = String::new();
    if dir.join("digits.toml").is_file() {
        out.push_str(&digits(&dir, max_bytes)?);
        out.push('\n');
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: cannot list the shipped models: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut t = crate::report::table::Table::new(&[
        ("model", crate::report::table::Align::Left),
        ("layers", crate::report::table::Align::Right),
        ("params (formulas)", crate::report::table::Align::Right),
        ("allocated", crate::report::table::Align::Right),
        ("MACs", crate::report::table::Align::Right),
        ("forward ms", crate::report::table::Align::Right),
        ("output", crate::report::table::Align::Left),
    ]);
    for f in files.iter().filter(|f| !f.ends_with("digits.toml")) {
        let row = run_one(f, seed, max_bytes)?;
        t.row(row.cells);
    }
    out.push_str(&format!(
        "The seed models in {}: counted from their formulas, allocated (seed {seed}) where they \
         fit under {}, checked against the buffers held, and run on one random image.\n\n",
        dir.display(),
        human_bytes(max_bytes)
    ));
    out.push_str(&t.render());
    let vgg1 = dir.join("vgg1.toml");
    let vgg2 = dir.join("vgg2.toml");
    if vgg1.is_file() && vgg2.is_file() {
        let a = Model::plan_file(&vgg1).map_err(|e| e.to_string())?;
        let b = Model::plan_file(&vgg2).map_err(|e| e.to_string())?;
        out.push_str("\nWhy is the deeper vgg2 smaller than vgg1? (cnn compare models/vgg1.toml models/vgg2.toml)\n\n");
        out.push_str(&compare::render(&a.plan, &b.plan));
    }
    out.push_str(&onnx_networks(max_bytes)?);
    out.push_str(
        "\nMore: cnn summary MODEL | cnn explain MODEL | cnn compare A B | \
         cnn run MODEL [--weights FILE] PICTURES... | cnn init MODEL --save FILE | \
         MODEL may be .onnx for summary, explain, run, bench (cnn --help)\n",
    );
    Ok(out)
}

/// The shipped ONNX networks (`tests/onnx/networks/`): counted, their initializers checked
/// against the formulas, run on the saved input and compared with onnxruntime's saved output.
fn onnx_networks(max_bytes: u128) -> Result<String, String> {
    use crate::report::table::{Align, Table};
    let local = PathBuf::from("tests/onnx/networks");
    let dir = if local.is_dir() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx/networks")
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(String::new());
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    dirs.sort();
    let mut t = Table::new(&[
        ("network", Align::Left),
        ("nodes", Align::Right),
        ("params (formulas)", Align::Right),
        ("in the file", Align::Right),
        ("non-trainable", Align::Right),
        ("MACs", Align::Right),
        ("forward ms", Align::Right),
        ("max |cnn - onnxruntime|", Align::Right),
    ]);
    for d in &dirs {
        let name = d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = d.join("model.onnx");
        let size = std::fs::metadata(&file).map_or(0, |m| m.len() as u128);
        if size > max_bytes {
            let why = format!(
                "not loaded: {} file over the {} ceiling",
                human_bytes(size),
                human_bytes(max_bytes)
            );
            t.row(vec![name, String::new(), String::new(), why]);
            continue;
        }
        let m = cnn_onnx::OnnxModel::load(&file).map_err(|e| e.to_string())?;
        let data = d.join("test_data_set_0");
        let (_, x) =
            cnn_onnx::read_tensor_file(&data.join("input_0.pb")).map_err(|e| e.to_string())?;
        let (_, want) =
            cnn_onnx::read_tensor_file(&data.join("output_0.pb")).map_err(|e| e.to_string())?;
        let p = cnn_onnx::plan(&m, std::slice::from_ref(&x.shape)).map_err(|e| e.to_string())?;
        let input = x.as_f32().ok_or("the saved input is not FLOAT")?.to_vec();
        let start = Instant::now();
        let y = cnn_onnx::run(&m, &p, &[input]).map_err(|e| e.to_string())?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let want = want.as_f32().ok_or("the saved output is not FLOAT")?;
        let diff = y[0]
            .data
            .iter()
            .zip(want)
            .fold(0.0f32, |acc, (a, b)| acc.max((a - b).abs()));
        t.row(vec![
            name,
            m.nodes.len().to_string(),
            group_digits(p.graph.total_params() as u128),
            group_digits(m.initializer_float_elements() as u128),
            group_digits(p.graph.non_trainable_params() as u128),
            group_digits(p.graph.total_macs() as u128),
            format!("{ms:.1}"),
            format!("{diff:.1e}"),
        ]);
    }
    if dirs.is_empty() {
        return Ok(String::new());
    }
    Ok(format!(
        "\nONNX networks exported from torchvision ({}): parameters counted per node from the \
         geometry and checked against the initializers in the file, one forward pass on the \
         saved input, compared with onnxruntime's saved output (docs/onnx.md).\n\n{}",
        dir.display(),
        t.render()
    ))
}
