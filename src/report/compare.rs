//! `cnn compare A B`: two models side by side, layer by layer, with each model's heaviest layer
//! marked and a closing paragraph that says where the parameters are — so "why does the deeper
//! vgg2 have fewer parameters than vgg1?" answers itself.

use super::paren_shape;
use super::table::{Align, Table};
use cnn_model::format::group_digits;
use cnn_model::{LayerPlan, ModelPlan};
use serde::Serialize;

const MARK: &str = "<- most";

fn heaviest(plan: &ModelPlan) -> Option<&LayerPlan> {
    plan.layers()
        .iter()
        .filter(|l| l.param_count > 0)
        .max_by_key(|l| l.param_count)
}

fn share(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        100.0 * part as f64 / total as f64
    }
}

/// What a layer reads, described for the explanation ("the 4,608-value flatten of 32x12x12").
fn reads(plan: &ModelPlan, layer: &LayerPlan) -> String {
    // Shapes without the batch, as model files print them.
    let input = &layer.input_shapes[0][1..];
    let values: u128 = input.iter().map(|&d| d as u128).product();
    if let Some(i) = layer.input(0).and_then(|v| plan.graph.producer(v)) {
        let src = &plan.layers()[i];
        if src.type_name == "flatten" {
            return format!(
                "the {}-value flatten of a {} map",
                group_digits(values),
                cnn_tensor::format_shape(&src.input_shapes[0][1..])
            );
        }
    }
    format!(
        "a {} input ({} values)",
        cnn_tensor::format_shape(input),
        group_digits(values)
    )
}

fn describe(plan: &ModelPlan) -> String {
    let total = plan.total_params();
    match heaviest(plan) {
        Some(h) => format!(
            "{}: {} parameters in {} layer{}; {} holds {} ({:.1}%) = {}, reading {}.",
            plan.name(),
            group_digits(total as u128),
            plan.layers().len(),
            if plan.layers().len() == 1 { "" } else { "s" },
            h.name,
            group_digits(h.param_count as u128),
            share(h.param_count, total),
            h.formula_text(),
            reads(plan, h)
        ),
        None => format!("{}: no parameters.", plan.name()),
    }
}

fn verdict(a: &ModelPlan, b: &ModelPlan) -> String {
    let (ta, tb) = (a.total_params(), b.total_params());
    let (la, lb) = (a.layers().len(), b.layers().len());
    let (deep, shallow) = if lb >= la { (b, a) } else { (a, b) };
    let (td, ts) = (deep.total_params(), shallow.total_params());
    if ta == tb {
        return format!("Both have {} parameters.", group_digits(ta as u128));
    }
    let mut s = if deep.layers().len() != shallow.layers().len() && td < ts {
        format!(
            "{} has {} more layers yet {} fewer parameters ({:.2}x).",
            deep.name(),
            deep.layers().len() - shallow.layers().len(),
            group_digits((ts - td) as u128),
            td as f64 / ts as f64
        )
    } else {
        let (big, small) = if ta > tb { (a, b) } else { (b, a) };
        format!(
            "{} has {} more parameters than {} ({:.2}x).",
            big.name(),
            group_digits((big.total_params() - small.total_params()) as u128),
            small.name(),
            big.total_params() as f64 / small.total_params().max(1) as f64
        )
    };
    if let (Some(hd), Some(hs)) = (heaviest(deep), heaviest(shallow)) {
        let vd: u128 = hd.input_shapes[0][1..].iter().map(|&d| d as u128).product();
        let vs: u128 = hs.input_shapes[0][1..].iter().map(|&d| d as u128).product();
        if vd != vs {
            s.push_str(&format!(
                " The heaviest layer decides it: {}'s {} reads {} values, {}'s {} reads {}.",
                deep.name(),
                hd.name,
                group_digits(vd),
                shallow.name(),
                hs.name,
                group_digits(vs)
            ));
            if td < ts && deep.layers().len() > shallow.layers().len() {
                s.push_str(
                    " The extra convolution and pooling stages shrink the map before it is \
                     flattened, and that costs far fewer weights than they add.",
                );
            }
        }
    }
    s
}

/// The terminal report.
pub fn render(a: &ModelPlan, b: &ModelPlan) -> String {
    let mut t = Table::new(&[
        ("#", Align::Right),
        ("A: layer (type)", Align::Left),
        ("output", Align::Left),
        ("params", Align::Right),
        ("", Align::Left),
        ("B: layer (type)", Align::Left),
        ("output", Align::Left),
        ("params", Align::Right),
        (" ", Align::Left),
    ]);
    let (ha, hb) = (heaviest(a).map(|l| &l.name), heaviest(b).map(|l| &l.name));
    let side = |plan: &ModelPlan, i: usize, h: Option<&String>| -> [String; 4] {
        match plan.layers().get(i) {
            Some(l) => [
                format!("{} ({})", l.name, l.type_name),
                paren_shape(&l.output_shape[1..]),
                group_digits(l.param_count as u128),
                if Some(&l.name) == h {
                    MARK.to_string()
                } else {
                    String::new()
                },
            ],
            None => Default::default(),
        }
    };
    for i in 0..a.layers().len().max(b.layers().len()) {
        let [n1, o1, p1, m1] = side(a, i, ha);
        let [n2, o2, p2, m2] = side(b, i, hb);
        t.row(vec![(i + 1).to_string(), n1, o1, p1, m1, n2, o2, p2, m2]);
    }
    t.row(vec![
        String::new(),
        format!("total ({})", a.name()),
        String::new(),
        group_digits(a.total_params() as u128),
        String::new(),
        format!("total ({})", b.name()),
        String::new(),
        group_digits(b.total_params() as u128),
    ]);
    format!(
        "A = {} ({}), B = {} ({})\n\n{}\n{}\n{}\n{}\n",
        a.name(),
        a.spec.path,
        b.name(),
        b.spec.path,
        t.render(),
        describe(a),
        describe(b),
        verdict(a, b)
    )
}

/// `compare --format json`.
#[derive(Debug, Serialize)]
pub struct CompareJson {
    pub a: super::summary::SummaryJson,
    pub b: super::summary::SummaryJson,
    pub heaviest_a: Option<String>,
    pub heaviest_b: Option<String>,
    pub explanation: String,
}

/// The JSON document.
pub fn to_json(a: &ModelPlan, b: &ModelPlan) -> CompareJson {
    use super::summary::{to_json, Allocation};
    CompareJson {
        a: to_json(a, &Allocation::Skipped),
        b: to_json(b, &Allocation::Skipped),
        heaviest_a: heaviest(a).map(|l| l.name.clone()),
        heaviest_b: heaviest(b).map(|l| l.name.clone()),
        explanation: format!("{} {} {}", describe(a), describe(b), verdict(a, b)),
    }
}
