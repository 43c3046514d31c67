//! Typed access to the keys of one layer table (sizes, `[h, w]` pairs, padding, activations,
//! booleans, floats), each message naming the key and its line.

use super::layer::{value_kind, LayerCtx};
use crate::error::ModelError;
use crate::spec::{ActivationKind, WindowSpec};
use cnn_conv::Padding;
use toml::{Table, Value};

/// Typed access to one layer's keys, with messages naming the key.
pub(super) struct Keys<'a> {
    pub(super) table: &'a Table,
    pub(super) ctx: &'a LayerCtx<'a>,
}

impl Keys<'_> {
    pub(super) fn err(&self, key: &str, message: String) -> ModelError {
        self.ctx.err(Some(key), message)
    }

    pub(super) fn positive(&self, key: &str, v: &Value) -> Result<usize, ModelError> {
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

    pub(super) fn count(&self, key: &str, default: usize) -> Result<usize, ModelError> {
        match self.table.get(key) {
            None => Ok(default),
            Some(v) => self.positive(key, v),
        }
    }

    pub(super) fn required_count(&self, key: &str) -> Result<usize, ModelError> {
        match self.table.get(key) {
            None => Err(self.ctx.err(None, format!("missing key `{key}`"))),
            Some(v) => self.positive(key, v),
        }
    }

    pub(super) fn pair_value(&self, key: &str, v: &Value) -> Result<[usize; 2], ModelError> {
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

    pub(super) fn pair(&self, key: &str, default: [usize; 2]) -> Result<[usize; 2], ModelError> {
        match self.table.get(key) {
            None => Ok(default),
            Some(v) => self.pair_value(key, v),
        }
    }

    pub(super) fn required_pair(&self, key: &str) -> Result<[usize; 2], ModelError> {
        match self.table.get(key) {
            None => Err(self.ctx.err(None, format!("missing key `{key}`"))),
            Some(v) => self.pair_value(key, v),
        }
    }

    pub(super) fn boolean(&self, key: &str, default: bool) -> Result<bool, ModelError> {
        match self.table.get(key) {
            None => Ok(default),
            Some(Value::Boolean(b)) => Ok(*b),
            Some(other) => Err(self.err(
                key,
                format!("`{key}` must be true or false, found {}", value_kind(other)),
            )),
        }
    }

    pub(super) fn float(&self, key: &str, default: f64) -> Result<f64, ModelError> {
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

    pub(super) fn activation(&self) -> Result<ActivationKind, ModelError> {
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

    pub(super) fn padding(&self) -> Result<Padding, ModelError> {
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

    pub(super) fn window(&self, with_dilation: bool) -> Result<WindowSpec, ModelError> {
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
