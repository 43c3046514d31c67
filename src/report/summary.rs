//! `cnn summary`: a Keras-style table (Layer (type), Output Shape, Param #) extended with the
//! formula behind every count and the layer's MACs, then totals — trainable, non-trainable,
//! bytes — and the number of values actually held in weight buffers. Also as JSON (the
//! contract in `docs/cli.md`) and Markdown.

use super::paren_shape;
use super::table::{Align, Table};
use cnn_graph::Graph;
use cnn_model::format::{group_digits, human_bytes};
use cnn_model::ModelPlan;
use serde::Serialize;

/// Whether weights were allocated, and if not why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocation {
    /// Allocated and verified: the number of values held.
    Held(u64),
    /// Loaded from a weight file and verified: the number of values held, and the file.
    Loaded(u64, String),
    /// The user asked for counting only.
    Skipped,
    /// Over the memory ceiling: not attempted.
    OverCeiling { bytes: u128, ceiling: u128 },
}

impl Allocation {
    pub fn held(&self) -> Option<u64> {
        match self {
            Allocation::Held(n) | Allocation::Loaded(n, _) => Some(*n),
            _ => None,
        }
    }
}

/// One layer in `summary --format json`.
#[derive(Debug, Serialize)]
pub struct LayerJson {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub output_shape: Vec<usize>,
    pub params: u64,
    pub trainable_params: u64,
    pub non_trainable_params: u64,
    pub formula: String,
    pub macs: u64,
    pub inputs: Vec<String>,
}

/// `summary --format json`.
#[derive(Debug, Serialize)]
pub struct SummaryJson {
    pub name: String,
    pub input_shape: Vec<usize>,
    pub layers: Vec<LayerJson>,
    pub total_params: u64,
    pub trainable_params: u64,
    pub non_trainable_params: u64,
    pub allocated_params: Option<u64>,
    /// Where the counted weights came from: `"allocated"` (seeded random), the weight file's
    /// path, or null when nothing was allocated.
    pub weights: Option<String>,
    pub total_macs: u64,
    pub weight_bytes: u128,
    pub path: String,
    /// What the file shows its exporter did to the parameters (ONNX: merged tensors, folded
    /// BatchNorm, dropped biases), one sentence each; absent when nothing was detected.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// What a summary says of a model beyond its graph.
pub struct Meta {
    pub name: String,
    /// The model's file.
    pub path: String,
    /// `input_shape` of the document.
    pub input_shape: Vec<usize>,
    /// Whether layer shapes keep the graph's batch dimension (ONNX: yes; model files print
    /// Keras' per-image shapes).
    pub batch_in_shapes: bool,
}

/// The JSON document of a summary of `graph`.
pub fn graph_json(graph: &Graph, meta: &Meta, alloc: &Allocation) -> SummaryJson {
    let skip = usize::from(!meta.batch_in_shapes);
    SummaryJson {
        name: meta.name.clone(),
        input_shape: meta.input_shape.clone(),
        layers: graph
            .nodes
            .iter()
            .enumerate()
            .map(|(i, l)| LayerJson {
                name: l.name.clone(),
                type_name: l.type_name.clone(),
                output_shape: l.output_shape[skip.min(l.output_shape.len())..].to_vec(),
                params: l.param_count,
                trainable_params: l.trainable,
                non_trainable_params: l.non_trainable,
                formula: l.formula_text(),
                macs: l.macs,
                inputs: graph.input_names(i),
            })
            .collect(),
        total_params: graph.total_params(),
        trainable_params: graph.trainable_params(),
        non_trainable_params: graph.non_trainable_params(),
        allocated_params: alloc.held(),
        weights: match alloc {
            Allocation::Held(_) => Some("allocated".to_string()),
            Allocation::Loaded(_, path) => Some(path.clone()),
            _ => None,
        },
        total_macs: graph.total_macs(),
        weight_bytes: graph.weight_bytes(),
        path: meta.path.clone(),
        notes: Vec::new(),
    }
}

/// The JSON document of a model file's summary.
pub fn to_json(plan: &ModelPlan, alloc: &Allocation) -> SummaryJson {
    let meta = Meta {
        name: plan.name().to_string(),
        path: plan.spec.path.clone(),
        input_shape: plan.input_shape(),
        batch_in_shapes: false,
    };
    graph_json(&plan.graph, &meta, alloc)
}

fn layer_table(doc: &SummaryJson, connected: bool) -> Table {
    let mut headers = vec![
        ("Layer (type)", Align::Left),
        ("Output Shape", Align::Left),
        ("Param #", Align::Right),
        ("Formula", Align::Left),
        ("MACs", Align::Right),
    ];
    if connected {
        headers.push(("Connected to", Align::Left));
    }
    let mut t = Table::new(&headers);
    for l in &doc.layers {
        let mut row = vec![
            format!("{} ({})", l.name, l.type_name),
            paren_shape(&l.output_shape),
            group_digits(l.params as u128),
            l.formula.clone(),
            group_digits(l.macs as u128),
        ];
        if connected {
            row.push(l.inputs.join(", "));
        }
        t.row(row);
    }
    t
}

fn param_line(label: &str, n: u64) -> String {
    format!(
        "{label}: {} ({})",
        group_digits(n as u128),
        human_bytes(n as u128 * 4)
    )
}

fn totals(doc: &SummaryJson, alloc: &Allocation, macs_label: &str) -> Vec<String> {
    let mut lines = vec![
        param_line("Total params", doc.total_params),
        param_line("Trainable params", doc.trainable_params),
        param_line("Non-trainable params", doc.non_trainable_params),
    ];
    lines.push(match alloc {
        Allocation::Held(n) => format!(
            "Allocated params: {} values held in weight buffers, equal to the formulas",
            group_digits(*n as u128)
        ),
        Allocation::Loaded(n, path) => format!(
            "Loaded params: {} values read from {path}, equal to the formulas",
            group_digits(*n as u128)
        ),
        Allocation::Skipped => "Allocated params: not allocated (--no-alloc)".to_string(),
        Allocation::OverCeiling { bytes, ceiling } => format!(
            "Allocated params: not allocated: {} of weights is over the {} ceiling \
             (--max-weight-bytes)",
            human_bytes(*bytes),
            human_bytes(*ceiling)
        ),
    });
    lines.push(format!(
        "{macs_label}: {} (bias additions not counted)",
        group_digits(doc.total_macs as u128)
    ));
    lines.extend(doc.notes.iter().map(|n| format!("Note: {n}")));
    lines
}

fn header(plan: &ModelPlan) -> Vec<String> {
    let mut lines = vec![format!("Model: \"{}\" ({})", plan.name(), plan.spec.path)];
    if let Some(d) = &plan.spec.description {
        lines.push(d.clone());
    }
    lines.push(format!(
        "Input: {} (channels, height, width)",
        paren_shape(&plan.input_shape())
    ));
    lines
}

/// How a summary document is laid out: its header lines, whether layers list their inputs,
/// and what the MACs total counts.
pub struct Layout {
    pub header: Vec<String>,
    pub connected: bool,
    pub macs_label: &'static str,
}

impl Layout {
    /// The layout of a model-file plan.
    pub fn of_plan(plan: &ModelPlan) -> Self {
        Self {
            header: header(plan),
            connected: !plan.graph.is_sequential(),
            macs_label: "MACs per image",
        }
    }
}

/// The terminal table of a summary document.
pub fn render_doc_table(doc: &SummaryJson, alloc: &Allocation, layout: &Layout) -> String {
    let mut out = layout.header.join("\n");
    out.push_str("\n\n");
    out.push_str(&layer_table(doc, layout.connected).render());
    out.push_str(&totals(doc, alloc, layout.macs_label).join("\n"));
    out.push('\n');
    out
}

/// Markdown of a summary document: a heading, the table, the totals as a list.
pub fn render_doc_markdown(doc: &SummaryJson, alloc: &Allocation, layout: &Layout) -> String {
    let h = &layout.header;
    let mut out = format!("### {}\n\n", h[0]);
    for line in &h[1..] {
        out.push_str(line);
        out.push_str("  \n");
    }
    out.push('\n');
    out.push_str(&layer_table(doc, layout.connected).render_markdown());
    out.push('\n');
    for line in totals(doc, alloc, layout.macs_label) {
        out.push_str(&format!("- {line}\n"));
    }
    out
}

/// The terminal table.
pub fn render_table(plan: &ModelPlan, alloc: &Allocation) -> String {
    render_doc_table(&to_json(plan, alloc), alloc, &Layout::of_plan(plan))
}

/// Markdown: a heading, the table, the totals as a list.
pub fn render_markdown(plan: &ModelPlan, alloc: &Allocation) -> String {
    render_doc_markdown(&to_json(plan, alloc), alloc, &Layout::of_plan(plan))
}
