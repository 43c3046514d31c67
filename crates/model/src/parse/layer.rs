//! One `[[layers]]` table of a model file: its keys checked against what its `type` allows,
//! its name (given, or Keras' default `conv2d_1`, …), its `inputs` resolved to earlier layers,
//! and its typed values ([`super::keys`]) turned into a [`LayerSpec`]. Messages name the layer,
//! the key and the key's line.

use super::keys::Keys;
use super::{allowed_keys, assigns, line_col, COMMON_KEYS, LAYER_TYPES};
use crate::error::ModelError;
use crate::spec::{LayerKind, LayerSpec, Source};
use std::collections::{HashMap, HashSet};
use toml::{Table, Value};

/// Where a layer sits in the file, for messages.
pub(super) struct LayerCtx<'a> {
    pub(super) path: &'a str,
    pub(super) text: &'a str,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) index: usize,
    pub(super) name: String,
    pub(super) kind: String,
}

impl LayerCtx<'_> {
    /// The line of `key = …` inside this layer's table, or of its `[[layers]]` header.
    fn line_of(&self, key: Option<&str>) -> usize {
        let header = line_col(self.text, self.start).0;
        let Some(key) = key else { return header };
        let body = &self.text[self.start..self.end.min(self.text.len())];
        body.lines()
            .position(|line| assigns(line, key))
            .map_or(header, |i| header + i)
    }

    pub(super) fn err(&self, key: Option<&str>, message: String) -> ModelError {
        ModelError::Layer {
            path: self.path.to_string(),
            line: self.line_of(key),
            layer: self.name.clone(),
            kind: self.kind.clone(),
            message,
        }
    }
}

/// Keras-style default names (`conv2d_1`, `conv2d_2`, …) that never collide with a name the
/// file gives explicitly to another layer.
pub(super) struct Naming {
    pub(super) explicit: HashSet<String>,
    pub(super) counters: HashMap<String, usize>,
}

impl Naming {
    pub(super) fn next_default(&mut self, type_name: &str) -> String {
        let counter = self.counters.entry(type_name.to_string()).or_insert(0);
        loop {
            *counter += 1;
            let name = format!("{type_name}_{counter}");
            if !self.explicit.contains(&name) {
                return name;
            }
        }
    }
}

pub(super) fn parse_layer(
    table: &Table,
    mut ctx: LayerCtx<'_>,
    by_name: &HashMap<String, usize>,
    naming: &mut Naming,
) -> Result<LayerSpec, ModelError> {
    let type_name = match table.get("type") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(ctx.err(
                Some("type"),
                format!("`type` must be a string, found {}", value_kind(other)),
            ))
        }
        None => {
            return Err(ctx.err(
                None,
                format!("the layer has no `type`; one of: {LAYER_TYPES}"),
            ))
        }
    };
    ctx.kind = type_name.clone();
    if let Some(Value::String(n)) = table.get("name") {
        ctx.name = n.clone();
    }
    let Some(allowed) = allowed_keys(&type_name) else {
        return Err(ctx.err(
            Some("type"),
            format!("unknown layer type `{type_name}`; known types: {LAYER_TYPES}"),
        ));
    };
    // Name: explicit, or Keras-style `<type>_<n>`; every later message uses it.
    let name = match table.get("name") {
        None => naming.next_default(&type_name),
        Some(Value::String(s)) if !s.is_empty() && s != "input" => s.clone(),
        Some(Value::String(s)) => {
            return Err(ctx.err(
                Some("name"),
                format!("`{s}` cannot be a layer name (empty, or reserved for the model input)"),
            ))
        }
        Some(other) => {
            return Err(ctx.err(
                Some("name"),
                format!("`name` must be a string, found {}", value_kind(other)),
            ))
        }
    };
    ctx.name = name.clone();
    for key in table.keys() {
        if !COMMON_KEYS.contains(&key.as_str()) && !allowed.contains(&key.as_str()) {
            let valid = if allowed.is_empty() {
                "it takes no keys besides name and inputs".to_string()
            } else {
                format!("valid keys: {}, name, inputs", allowed.join(", "))
            };
            return Err(ctx.err(Some(key), format!("unknown key `{key}` ({valid})")));
        }
    }

    let keys = Keys { table, ctx: &ctx };
    let kind = match type_name.as_str() {
        "conv2d" => LayerKind::Conv2d {
            filters: keys.required_count("filters")?,
            window: keys.window(true)?,
            groups: keys.count("groups", 1)?,
            use_bias: keys.boolean("use_bias", true)?,
            activation: keys.activation()?,
        },
        "depthwise_conv2d" => LayerKind::DepthwiseConv2d {
            depth_multiplier: keys.count("depth_multiplier", 1)?,
            window: keys.window(true)?,
            use_bias: keys.boolean("use_bias", true)?,
            activation: keys.activation()?,
        },
        "separable_conv2d" => LayerKind::SeparableConv2d {
            filters: keys.required_count("filters")?,
            depth_multiplier: keys.count("depth_multiplier", 1)?,
            window: keys.window(true)?,
            use_bias: keys.boolean("use_bias", true)?,
            activation: keys.activation()?,
        },
        "locally_connected2d" => LayerKind::LocallyConnected2d {
            filters: keys.required_count("filters")?,
            window: keys.window(false)?,
            use_bias: keys.boolean("use_bias", true)?,
            activation: keys.activation()?,
        },
        "dense" => LayerKind::Dense {
            units: keys.required_count("units")?,
            use_bias: keys.boolean("use_bias", true)?,
            activation: keys.activation()?,
        },
        "maxpool2d" | "avgpool2d" => {
            let pool = keys.required_pair("pool")?;
            let stride = keys.pair("stride", pool)?;
            let padding = keys.padding()?;
            if type_name == "maxpool2d" {
                LayerKind::MaxPool2d {
                    pool,
                    stride,
                    padding,
                }
            } else {
                LayerKind::AvgPool2d {
                    pool,
                    stride,
                    padding,
                }
            }
        }
        "flatten" => LayerKind::Flatten,
        "global_avgpool2d" => LayerKind::GlobalAvgPool2d,
        "global_maxpool2d" => LayerKind::GlobalMaxPool2d,
        "channel_sum" => LayerKind::ChannelSum,
        "dropout" => {
            let rate = keys.float("rate", 0.0)?;
            if !(0.0..1.0).contains(&rate) {
                return Err(ctx.err(
                    Some("rate"),
                    format!("`rate` must be in [0, 1), found {rate}"),
                ));
            }
            LayerKind::Dropout { rate }
        }
        "activation" => {
            if !table.contains_key("activation") {
                return Err(ctx.err(
                    None,
                    "missing key `activation` (relu, sigmoid, tanh, softmax or linear)".to_string(),
                ));
            }
            LayerKind::Activation {
                activation: keys.activation()?,
            }
        }
        "batchnorm" => {
            let epsilon = keys.float("epsilon", 0.001)?;
            if epsilon <= 0.0 || !epsilon.is_finite() {
                return Err(ctx.err(
                    Some("epsilon"),
                    format!("`epsilon` must be a positive number, found {epsilon}"),
                ));
            }
            if !(f32::MIN_POSITIVE as f64..=f32::MAX as f64).contains(&epsilon) {
                return Err(ctx.err(
                    Some("epsilon"),
                    format!(
                        "`epsilon` must be a normal f32 (from {:e} to {:e}; batchnorm computes in \
                         f32, as Keras does), found {epsilon:e}",
                        f32::MIN_POSITIVE,
                        f32::MAX
                    ),
                ));
            }
            LayerKind::BatchNorm { epsilon }
        }
        "add" => LayerKind::Add,
        "concat" => LayerKind::Concat,
        _ => unreachable!("allowed_keys covers every type"),
    };

    if by_name.contains_key(&name) {
        return Err(ctx.err(
            Some("name"),
            format!("duplicate layer name `{name}`; names must be unique"),
        ));
    }

    let inputs = parse_inputs(table, &ctx, &kind, by_name)?;
    Ok(LayerSpec {
        name,
        kind,
        inputs,
        line: ctx.line_of(None),
    })
}

pub(super) fn parse_inputs(
    table: &Table,
    ctx: &LayerCtx<'_>,
    kind: &LayerKind,
    by_name: &HashMap<String, usize>,
) -> Result<Vec<Source>, ModelError> {
    let names: Vec<String> = match table.get("inputs") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            let mut v = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => v.push(s.clone()),
                    other => {
                        return Err(ctx.err(
                            Some("inputs"),
                            format!(
                                "`inputs` must list layer names, found {}",
                                value_kind(other)
                            ),
                        ))
                    }
                }
            }
            v
        }
        Some(other) => {
            return Err(ctx.err(
                Some("inputs"),
                format!(
                    "`inputs` must be a layer name or a list of them, found {}",
                    value_kind(other)
                ),
            ))
        }
    };
    let mut sources = Vec::with_capacity(names.len().max(1));
    for n in &names {
        if n == "input" {
            sources.push(Source::Input);
        } else if let Some(&i) = by_name.get(n) {
            sources.push(Source::Layer(i));
        } else {
            return Err(ctx.err(
                Some("inputs"),
                format!(
                    "input `{n}` is not the name of an earlier layer (or `input`); layers may \
                     only read layers listed before them"
                ),
            ));
        }
    }
    if sources.is_empty() {
        sources.push(if ctx.index == 0 {
            Source::Input
        } else {
            Source::Layer(ctx.index - 1)
        });
    }
    if kind.is_merge() && sources.len() < 2 {
        return Err(ctx.err(
            Some("inputs"),
            format!(
                "{} needs at least two `inputs`, e.g. inputs = [\"conv2d_1\", \"conv2d_2\"]",
                kind.type_name()
            ),
        ));
    }
    if !kind.is_merge() && sources.len() != 1 {
        return Err(ctx.err(
            Some("inputs"),
            format!(
                "{} takes exactly one input, found {}",
                kind.type_name(),
                sources.len()
            ),
        ));
    }
    Ok(sources)
}

pub(super) fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}
