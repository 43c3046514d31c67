//! Reads a model file (TOML, format in `docs/model-format.md`) into a [`ModelSpec`].
//!
//! TOML syntax errors are reported with file, line and column. Each `[[layers]]` table is then
//! checked by hand against the keys its `type` allows, so a typo (`filter = 32`) is an error
//! naming the key, the layer and its line, never silently ignored. Defaults follow Keras (stride
//! 1, "valid" padding, dilation 1, groups 1, bias on, no activation). This module does not know
//! shapes: a kernel larger than its input is found later, by `plan`.

use crate::error::ModelError;
use crate::spec::{
    ActivationKind, InputSpec, LayerKind, LayerSpec, ModelSpec, Preprocess, Source, WindowSpec,
};
use cnn_conv::Padding;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use toml::{Spanned, Table, Value};

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

/// Where a layer sits in the file, for messages.
struct LayerCtx<'a> {
    path: &'a str,
    text: &'a str,
    start: usize,
    end: usize,
    index: usize,
    name: String,
    kind: String,
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

    fn err(&self, key: Option<&str>, message: String) -> ModelError {
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
struct Naming {
    explicit: HashSet<String>,
    counters: HashMap<String, usize>,
}

impl Naming {
    fn next_default(&mut self, type_name: &str) -> String {
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

fn parse_layer(
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

fn parse_inputs(
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

fn value_kind(v: &Value) -> &'static str {
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

/// Typed access to one layer's keys, with messages naming the key.
struct Keys<'a> {
    table: &'a Table,
    ctx: &'a LayerCtx<'a>,
}

impl Keys<'_> {
    fn err(&self, key: &str, message: String) -> ModelError {
        self.ctx.err(Some(key), message)
    }

    fn positive(&self, key: &str, v: &Value) -> Result<usize, ModelError> {
        match v {
            Value::Integer(i) if *i >= 1 => usize::try_from(*i)
                .map_err(|_| self.err(key, format!("`{key}` = {i} is too large"))),
            Value::Integer(i) => {
                Err(self.err(key, format!("`{key}` must be at least 1, found {i}")))
            }
            other => Err(self.err(
                key,
                format!(
                    "`{key}` must be a positive integer, found {}",
                    value_kind(other)
                ),
            )),
        }
    }

    fn count(&self, key: &str, default: usize) -> Result<usize, ModelError> {
        match self.table.get(key) {
            None => Ok(default),
            Some(v) => self.positive(key, v),
        }
    }

    fn required_count(&self, key: &str) -> Result<usize, ModelError> {
        match self.table.get(key) {
            None => Err(self.ctx.err(None, format!("missing key `{key}`"))),
            Some(v) => self.positive(key, v),
        }
    }

    fn pair_value(&self, key: &str, v: &Value) -> Result<[usize; 2], ModelError> {
        match v {
            Value::Array(items) if items.len() == 2 => Ok([
                self.positive(key, &items[0])?,
                self.positive(key, &items[1])?,
            ]),
            Value::Array(items) => Err(self.err(
                key,
                format!(
                    "`{key}` must be an integer or [h, w], found {} values",
                    items.len()
                ),
            )),
            v => {
                let n = self.positive(key, v)?;
                Ok([n, n])
            }
        }
    }

    fn pair(&self, key: &str, default: [usize; 2]) -> Result<[usize; 2], ModelError> {
        match self.table.get(key) {
            None => Ok(default),
            Some(v) => self.pair_value(key, v),
        }
    }

    fn required_pair(&self, key: &str) -> Result<[usize; 2], ModelError> {
        match self.table.get(key) {
            None => Err(self.ctx.err(None, format!("missing key `{key}`"))),
            Some(v) => self.pair_value(key, v),
        }
    }

    fn boolean(&self, key: &str, default: bool) -> Result<bool, ModelError> {
        match self.table.get(key) {
            None => Ok(default),
            Some(Value::Boolean(b)) => Ok(*b),
            Some(other) => Err(self.err(
                key,
                format!("`{key}` must be true or false, found {}", value_kind(other)),
            )),
        }
    }

    fn float(&self, key: &str, default: f64) -> Result<f64, ModelError> {
        match self.table.get(key) {
            None => Ok(default),
            Some(Value::Float(f)) => Ok(*f),
            Some(Value::Integer(i)) => Ok(*i as f64),
            Some(other) => Err(self.err(
                key,
                format!("`{key}` must be a number, found {}", value_kind(other)),
            )),
        }
    }

    fn activation(&self) -> Result<ActivationKind, ModelError> {
        match self.table.get("activation") {
            None => Ok(ActivationKind::Linear),
            Some(Value::String(s)) => ActivationKind::parse(s).ok_or_else(|| {
                self.err(
                    "activation",
                    format!("unknown activation `{s}` (relu, sigmoid, tanh, softmax or linear)"),
                )
            }),
            Some(other) => Err(self.err(
                "activation",
                format!("`activation` must be a string, found {}", value_kind(other)),
            )),
        }
    }

    fn padding(&self) -> Result<Padding, ModelError> {
        let bad = |found: String| {
            self.err(
                "padding",
                format!(
                    "`padding` must be \"valid\", \"same\", an integer or [h, w]; found {found}"
                ),
            )
        };
        match self.table.get("padding") {
            None => Ok(Padding::Valid),
            Some(Value::String(s)) => match s.as_str() {
                "valid" => Ok(Padding::Valid),
                "same" => Ok(Padding::Same),
                other => Err(bad(format!("\"{other}\""))),
            },
            Some(Value::Integer(i)) if *i >= 0 => {
                let p = usize::try_from(*i).map_err(|_| bad(i.to_string()))?;
                Ok(Padding::Explicit { h: p, w: p })
            }
            Some(Value::Array(items)) if items.len() == 2 => {
                let mut hw = [0usize; 2];
                for (slot, item) in hw.iter_mut().zip(items) {
                    match item {
                        Value::Integer(i) if *i >= 0 => {
                            *slot = usize::try_from(*i).map_err(|_| bad(i.to_string()))?
                        }
                        other => return Err(bad(value_kind(other).to_string())),
                    }
                }
                Ok(Padding::Explicit { h: hw[0], w: hw[1] })
            }
            Some(Value::Integer(i)) => Err(bad(i.to_string())),
            Some(other) => Err(bad(value_kind(other).to_string())),
        }
    }

    fn window(&self, with_dilation: bool) -> Result<WindowSpec, ModelError> {
        Ok(WindowSpec {
            kernel: self.required_pair("kernel")?,
            stride: self.pair("stride", [1, 1])?,
            padding: self.padding()?,
            dilation: if with_dilation {
                self.pair("dilation", [1, 1])?
            } else {
                [1, 1]
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VGG_HEAD: &str = "name = \"t\"\n[input]\nchannels = 1\nheight = 28\nwidth = 28\n";

    fn parse(body: &str) -> Result<ModelSpec, ModelError> {
        parse_model(&format!("{VGG_HEAD}{body}"), "t.toml")
    }

    #[test]
    fn defaults_and_names() {
        let m = parse(
            "[[layers]]\ntype = \"conv2d\"\nfilters = 32\nkernel = 3\n\
             [[layers]]\ntype = \"conv2d\"\nfilters = 8\nkernel = [3, 5]\nstride = 2\npadding = \"same\"\n\
             [[layers]]\ntype = \"maxpool2d\"\npool = 2\n",
        )
        .unwrap();
        assert_eq!(m.layers[0].name, "conv2d_1");
        assert_eq!(m.layers[1].name, "conv2d_2");
        assert_eq!(m.layers[2].name, "maxpool2d_1");
        assert_eq!(m.layers[0].inputs, vec![Source::Input]);
        assert_eq!(m.layers[2].inputs, vec![Source::Layer(1)]);
        match &m.layers[1].kind {
            LayerKind::Conv2d {
                window,
                groups,
                use_bias,
                ..
            } => {
                assert_eq!(window.kernel, [3, 5]);
                assert_eq!(window.stride, [2, 2]);
                assert_eq!(window.padding, Padding::Same);
                assert_eq!((*groups, *use_bias), (1, true));
            }
            k => panic!("{k:?}"),
        }
        match &m.layers[2].kind {
            LayerKind::MaxPool2d { stride, .. } => assert_eq!(*stride, [2, 2]),
            k => panic!("{k:?}"),
        }
        assert_eq!(m.layers[0].line, 6);
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let e = parse("[[layers]]\ntype = conv2d\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:7:8: "), "{e}");
    }

    #[test]
    fn unknown_key_names_key_layer_and_line() {
        let e = parse("[[layers]]\ntype = \"conv2d\"\nfilter = 32\nkernel = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.toml:8: layer `conv2d_1` (conv2d): unknown key `filter`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_type_is_named() {
        let e = parse("[[layers]]\ntype = \"conv3d\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown layer type `conv3d`"), "{e}");
        assert!(e.contains("t.toml:7:"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        for (body, needle) in [
            (
                "type = \"conv2d\"\nfilters = 0\nkernel = 3\n",
                "`filters` must be at least 1",
            ),
            ("type = \"conv2d\"\nfilters = 4\n", "missing key `kernel`"),
            (
                "type = \"conv2d\"\nfilters = 4\nkernel = [1, 2, 3]\n",
                "found 3 values",
            ),
            (
                "type = \"conv2d\"\nfilters = 4\nkernel = 3\npadding = \"full\"\n",
                "\"full\"",
            ),
            (
                "type = \"dense\"\nunits = 4\nactivation = \"gelu\"\n",
                "unknown activation `gelu`",
            ),
            (
                "type = \"dense\"\nunits = 4\nuse_bias = 1\n",
                "must be true or false",
            ),
            ("type = \"dropout\"\nrate = 1.5\n", "must be in [0, 1)"),
            ("type = \"add\"\n", "needs at least two `inputs`"),
            (
                "type = \"flatten\"\ninputs = [\"nope\"]\n",
                "input `nope` is not the name",
            ),
        ] {
            let e = parse(&format!("[[layers]]\n{body}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{body}: {e}");
        }
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let e = parse(
            "[[layers]]\ntype = \"flatten\"\nname = \"a\"\n[[layers]]\ntype = \"flatten\"\nname = \"a\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("duplicate layer name `a`"), "{e}");
    }

    #[test]
    fn default_names_skip_explicit_ones() {
        let m = parse(
            "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"flatten\"\nname = \"flatten_2\"\n\
             [[layers]]\ntype = \"flatten\"\n",
        )
        .unwrap();
        let names: Vec<&str> = m.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["flatten_1", "flatten_2", "flatten_3"]);
    }

    #[test]
    fn preprocessing_keys() {
        let text =
            "name = \"p\"\nlabels = [\"a\", \"b\"]\n[input]\nchannels = 3\nheight = 2\nwidth = 2\n\
                    invert = true\nscale = 0.5\nmean = [1.0, 2.0, 3.0]\nstd = [2.0]\n\
                    [[layers]]\ntype = \"flatten\"\n";
        let m = parse_model(text, "p.toml").unwrap();
        assert!(m.preprocess.invert);
        assert_eq!(m.preprocess.std, vec![2.0]);
        // (255 - 55) * 0.5 = 100; (100 - 2) / 2 = 49.
        assert_eq!(m.preprocess.apply(55.0, 1), 49.0);
        assert_eq!(m.label(1), "b");
        let bad = text.replace("std = [2.0]", "std = [2.0, 0.0, 1.0]");
        let e = parse_model(&bad, "p.toml").unwrap_err().to_string();
        assert!(
            e.starts_with("p.toml:10:1: [input] std values must be finite and positive"),
            "{e}"
        );
        let bad = text.replace("mean = [1.0, 2.0, 3.0]", "mean = [1.0, 2.0]");
        let e = parse_model(&bad, "p.toml").unwrap_err().to_string();
        assert!(
            e.contains("mean has 2 values; give one per channel (3)"),
            "{e}"
        );
    }

    #[test]
    fn unknown_top_level_key_has_position() {
        let e = parse_model("name = \"x\"\nnmae = 3\n", "m.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("m.toml:2:1: unknown field `nmae`"), "{e}");
    }

    #[test]
    fn graph_inputs_resolve() {
        let m = parse(
            "[[layers]]\ntype = \"conv2d\"\nfilters = 4\nkernel = 3\npadding = \"same\"\nname = \"a\"\n\
             [[layers]]\ntype = \"conv2d\"\nfilters = 4\nkernel = 1\nname = \"b\"\ninputs = \"input\"\n\
             [[layers]]\ntype = \"add\"\ninputs = [\"a\", \"b\"]\n",
        )
        .unwrap();
        assert_eq!(m.layers[1].inputs, vec![Source::Input]);
        assert_eq!(m.layers[2].inputs, vec![Source::Layer(0), Source::Layer(1)]);
    }
}
