//! Reads a model file (TOML, format in `docs/model-format.md`) into a [`ModelSpec`].
//!
//! TOML syntax errors are reported with file, line and column. Each `[[layers]]` table is then
//! checked by hand against the keys its `type` allows, so a typo (`filter = 32`) is an error
//! naming the key, the layer and its line, never silently ignored. Defaults follow Keras (stride
//! 1, "valid" padding, dilation 1, groups 1, bias on, no activation). This module does not know
//! shapes: a kernel larger than its input is found later, by `plan`.

use crate::error::ModelError;
use crate::spec::{InputSpec, LayerSpec, ModelSpec, Preprocess};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use toml::{Spanned, Table, Value};

mod keys;
mod layer;

use layer::{parse_layer, LayerCtx, Naming};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    description: Option<String>,
    labels: Option<Vec<String>>,
    input: RawInput,
    layers: Vec<Spanned<Table>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    channels: usize,
    height: usize,
    width: usize,
    invert: Option<bool>,
    scale: Option<f64>,
    mean: Option<Vec<f64>>,
    std: Option<Vec<f64>>,
}

/// Keys every layer may carry, whatever its type.
const COMMON_KEYS: [&str; 3] = ["type", "name", "inputs"];

/// The keys each layer type accepts (besides `type`, `name`, `inputs`).
fn allowed_keys(type_name: &str) -> Option<&'static [&'static str]> {
    Some(match type_name {
        "conv2d" => &[
            "filters",
            "kernel",
            "stride",
            "padding",
            "dilation",
            "groups",
            "use_bias",
            "activation",
        ],
        "depthwise_conv2d" => &[
            "kernel",
            "depth_multiplier",
            "stride",
            "padding",
            "dilation",
            "use_bias",
            "activation",
        ],
        "separable_conv2d" => &[
            "filters",
            "kernel",
            "depth_multiplier",
            "stride",
            "padding",
            "dilation",
            "use_bias",
            "activation",
        ],
        "locally_connected2d" => &[
            "filters",
            "kernel",
            "stride",
            "padding",
            "use_bias",
            "activation",
        ],
        "dense" => &["units", "use_bias", "activation"],
        "maxpool2d" | "avgpool2d" => &["pool", "stride", "padding"],
        "flatten" | "global_avgpool2d" | "global_maxpool2d" | "channel_sum" | "add" | "concat" => {
            &[]
        }
        "dropout" => &["rate"],
        "activation" => &["activation"],
        "batchnorm" => &["epsilon"],
        _ => return None,
    })
}

const LAYER_TYPES: &str = "conv2d, depthwise_conv2d, separable_conv2d, locally_connected2d, \
    dense, flatten, maxpool2d, avgpool2d, global_avgpool2d, global_maxpool2d, channel_sum, \
    dropout, activation, batchnorm, add, concat";

/// Reads and parses a model file.
pub fn load_model_file(path: &Path) -> Result<ModelSpec, ModelError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::Io {
        path: shown.clone(),
        reason: match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::InvalidData => "not UTF-8 text".to_string(),
            _ => e.to_string(),
        },
    })?;
    parse_model(&text, &shown)
}

/// Parses model-file text; `path` is only used in messages.
pub fn parse_model(text: &str, path: &str) -> Result<ModelSpec, ModelError> {
    let raw: RawModel = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ModelError::Syntax {
            path: path.to_string(),
            line,
            column,
            message: e.message().trim().replace('\n', " "),
        }
    })?;
    let input = InputSpec {
        channels: raw.input.channels,
        height: raw.input.height,
        width: raw.input.width,
    };
    if input.channels == 0 || input.height == 0 || input.width == 0 {
        let (line, column) = text
            .find("[input]")
            .map(|o| line_col(text, o))
            .unwrap_or((1, 1));
        return Err(ModelError::Syntax {
            path: path.to_string(),
            line,
            column,
            message: "[input] channels, height and width must all be at least 1".to_string(),
        });
    }
    let preprocess = parse_preprocess(&raw.input, input.channels, text, path)?;
    if raw.labels.as_ref().is_some_and(|l| l.is_empty()) {
        return Err(syntax_at(
            text,
            path,
            "labels",
            "`labels` is empty".to_string(),
        ));
    }
    if raw.layers.is_empty() {
        return Err(ModelError::Syntax {
            path: path.to_string(),
            line: 1,
            column: 1,
            message: "the model has no [[layers]]".to_string(),
        });
    }

    let mut layers: Vec<LayerSpec> = Vec::with_capacity(raw.layers.len());
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let explicit: HashSet<String> = raw
        .layers
        .iter()
        .filter_map(|l| match l.get_ref().get("name") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let mut naming = Naming {
        explicit,
        counters: HashMap::new(),
    };
    let starts: Vec<usize> = raw.layers.iter().map(|l| l.span().start).collect();
    for (index, spanned) in raw.layers.iter().enumerate() {
        let start = spanned.span().start;
        let end = starts.get(index + 1).copied().unwrap_or(text.len());
        let ctx = LayerCtx {
            path,
            text,
            start,
            end,
            index,
            name: format!("#{}", index + 1),
            kind: String::from("?"),
        };
        let layer = parse_layer(spanned.get_ref(), ctx, &by_name, &mut naming)?;
        by_name.insert(layer.name.clone(), index);
        layers.push(layer);
    }
    Ok(ModelSpec {
        name: raw.name,
        description: raw.description,
        path: path.to_string(),
        input,
        preprocess,
        labels: raw.labels,
        layers,
    })
}

/// True when `line` assigns `key` (`key = …`, any indentation).
fn assigns(line: &str, key: &str) -> bool {
    line.trim_start()
        .strip_prefix(key)
        .is_some_and(|rest| rest.trim_start().starts_with('='))
}

/// A syntax-level error at the first line where `key = ` appears.
fn syntax_at(text: &str, path: &str, key: &str, message: String) -> ModelError {
    let mut offset = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        if assigns(line, key) {
            offset = pos;
            break;
        }
        pos += line.len();
    }
    let (line, column) = line_col(text, offset);
    ModelError::Syntax {
        path: path.to_string(),
        line,
        column,
        message,
    }
}

/// `[input]` preprocessing keys: one mean/std per channel (or one for all), positive std.
fn parse_preprocess(
    raw: &RawInput,
    channels: usize,
    text: &str,
    path: &str,
) -> Result<Preprocess, ModelError> {
    let mut p = Preprocess::new();
    p.invert = raw.invert.unwrap_or(false);
    if let Some(scale) = raw.scale {
        if !scale.is_finite() || scale == 0.0 {
            return Err(syntax_at(
                text,
                path,
                "scale",
                format!("[input] scale must be a non-zero number, found {scale}"),
            ));
        }
        p.scale = scale as f32;
    }
    for (key, values) in [("mean", &raw.mean), ("std", &raw.std)] {
        let Some(values) = values else { continue };
        let expanded: Vec<f32> = match values.len() {
            n if n == 1 || n == channels => values.iter().map(|&v| v as f32).collect(),
            n => {
                return Err(syntax_at(
                    text,
                    path,
                    key,
                    format!(
                        "[input] {key} has {n} values; give one per channel ({channels}) or one \
                         for all"
                    ),
                ))
            }
        };
        let positive_needed = key == "std";
        if expanded
            .iter()
            .any(|&v| !v.is_finite() || (positive_needed && v <= 0.0))
        {
            let rule = if positive_needed {
                "finite and positive"
            } else {
                "finite"
            };
            return Err(syntax_at(
                text,
                path,
                key,
                format!("[input] {key} values must be {rule}"),
            ));
        }
        if positive_needed {
            p.std = expanded;
        } else {
            p.mean = expanded;
        }
    }
    Ok(p)
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map(|p| offset - p).unwrap_or(offset + 1);
    (line, column)
}

#[cfg(test)]
mod tests;
