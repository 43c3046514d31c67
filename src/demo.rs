//! `cnn` with no arguments: runs every shipped model file — plans it, allocates seeded weights
//! where they fit under the ceiling, checks the values held against the formulas, and runs a
//! forward pass on a random image — then compares the two models of the first seed question.

use crate::report::{compare, summary};
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
    let layers = plan.layers.len().to_string();
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

/// Runs the demo, returning the text to print.
pub fn run(seed: u64, max_bytes: u128) -> Result<String, String> {
    let dir = models_dir();
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
    for f in &files {
        let row = run_one(f, seed, max_bytes)?;
        t.row(row.cells);
    }
    let mut out = format!(
        "cnn: every shipped model in {} counted from its formulas, allocated (seed {seed}) where \
         it fits under {}, checked against the buffers it holds, and run on one random image.\n\n",
        dir.display(),
        human_bytes(max_bytes)
    );
    out.push_str(&t.render());
    let vgg1 = dir.join("vgg1.toml");
    let vgg2 = dir.join("vgg2.toml");
    if vgg1.is_file() && vgg2.is_file() {
        let a = Model::plan_file(&vgg1).map_err(|e| e.to_string())?;
        let b = Model::plan_file(&vgg2).map_err(|e| e.to_string())?;
        out.push_str("\nWhy is the deeper vgg2 smaller than vgg1? (cnn compare models/vgg1.toml models/vgg2.toml)\n\n");
        out.push_str(&compare::render(&a.plan, &b.plan));
        out.push_str("\nOne model in full (cnn summary models/vgg2.toml):\n\n");
        let mut b = b;
        let alloc = if check_ceiling(&b.plan, max_bytes).is_ok() {
            b.allocate(seed, max_bytes).map_err(|e| e.to_string())?;
            summary::Allocation::Held(b.allocated_params().unwrap_or(0))
        } else {
            summary::Allocation::OverCeiling {
                bytes: b.plan.weight_bytes(),
                ceiling: max_bytes,
            }
        };
        out.push_str(&summary::render_table(&b.plan, alloc));
    }
    out.push_str(
        "\nMore: cnn summary MODEL | cnn explain MODEL | cnn compare A B | cnn run MODEL --input x.npy (cnn --help)\n",
    );
    Ok(out)
}
