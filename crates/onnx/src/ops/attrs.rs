//! A node's attributes, read by the names its op declares (anything else refused), with the
//! ONNX defaults and types checked; the window attributes Conv and the pools share; and the
//! value of a `Constant` node, from whichever attribute holds it.

use super::{AutoPad, Window};
use crate::constant::{decode_tensor, Constant};
use crate::proto::{attribute_type, AttributeProto};

/// A node's attributes, read with the names the op declares; anything else is refused.
pub(super) struct Attrs<'a> {
    pub(super) list: &'a [AttributeProto],
}

impl<'a> Attrs<'a> {
    pub(super) fn check_known(&self, known: &[&str]) -> Result<(), String> {
        for a in self.list {
            if !known.contains(&a.name.as_str()) {
                return Err(format!(
                    "attribute '{}' is not supported (known: {})",
                    a.name,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            }
            if !a.ref_attr_name.is_empty() {
                return Err(format!(
                    "attribute '{}' refers to a function attribute, which is not supported",
                    a.name
                ));
            }
        }
        Ok(())
    }

    pub(super) fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.list.iter().find(|a| a.name == name)
    }

    pub(super) fn int(&self, name: &str, default: i64) -> Result<i64, String> {
        match self.get(name) {
            None => Ok(default),
            Some(a) if a.r#type == attribute_type::INT || a.r#type == 0 => Ok(a.i),
            Some(_) => Err(format!("attribute '{name}' must be an int")),
        }
    }

    pub(super) fn flag(&self, name: &str) -> Result<bool, String> {
        match self.int(name, 0)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(format!("attribute '{name}' must be 0 or 1, not {v}")),
        }
    }

    pub(super) fn float(&self, name: &str, default: f32) -> Result<f32, String> {
        match self.get(name) {
            None => Ok(default),
            Some(a) if a.r#type == attribute_type::FLOAT || a.r#type == 0 => Ok(a.f),
            Some(_) => Err(format!("attribute '{name}' must be a float")),
        }
    }

    pub(super) fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == attribute_type::INTS || a.r#type == 0 => {
                Ok(Some(a.ints.clone()))
            }
            Some(_) => Err(format!("attribute '{name}' must be a list of ints")),
        }
    }

    pub(super) fn sizes(&self, name: &str, min: usize) -> Result<Vec<usize>, String> {
        let Some(v) = self.ints(name)? else {
            return Ok(Vec::new());
        };
        v.iter()
            .map(|&x| {
                usize::try_from(x)
                    .ok()
                    .filter(|&u| u >= min)
                    .ok_or_else(|| {
                        format!("attribute '{name}' = {v:?}: every value must be >= {min}")
                    })
            })
            .collect()
    }

    pub(super) fn string(&self, name: &str, default: &str) -> Result<String, String> {
        match self.get(name) {
            None => Ok(default.to_string()),
            Some(a) if a.r#type == attribute_type::STRING || a.r#type == 0 => {
                Ok(String::from_utf8_lossy(&a.s).into_owned())
            }
            Some(_) => Err(format!("attribute '{name}' must be a string")),
        }
    }

    pub(super) fn window(&self) -> Result<Window, String> {
        let auto_pad = match self.string("auto_pad", "NOTSET")?.as_str() {
            "NOTSET" | "" => AutoPad::NotSet,
            "VALID" => AutoPad::Valid,
            "SAME_UPPER" => AutoPad::SameUpper,
            "SAME_LOWER" => AutoPad::SameLower,
            other => {
                return Err(format!(
                    "auto_pad '{other}' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER"
                ))
            }
        };
        Ok(Window {
            kernel_shape: self
                .ints("kernel_shape")?
                .map(|_| self.sizes("kernel_shape", 1))
                .transpose()?,
            strides: self.sizes("strides", 1)?,
            dilations: self.sizes("dilations", 1)?,
            pads: self.sizes("pads", 0)?,
            auto_pad,
        })
    }
}

/// The value of a `Constant` node, from whichever attribute holds it.
pub(super) fn constant_value(a: &Attrs<'_>, op: &str) -> Result<Constant, String> {
    a.check_known(&[
        "value",
        "value_float",
        "value_floats",
        "value_int",
        "value_ints",
        "sparse_value",
        "value_string",
        "value_strings",
    ])?;
    let Some(attr) = a.list.first() else {
        return Err(format!("{op} has no value attribute"));
    };
    if a.list.len() > 1 {
        return Err("exactly one value attribute is allowed".into());
    }
    Ok(match attr.name.as_str() {
        "value" => {
            let t = attr.t.as_ref().ok_or("attribute 'value' holds no tensor")?;
            decode_tensor("value", t).map_err(|e| e.to_string())?
        }
        "value_float" => Constant::f32(vec![], vec![attr.f]),
        "value_floats" => Constant::f32(vec![attr.floats.len()], attr.floats.clone()),
        "value_int" => Constant {
            shape: vec![],
            data: crate::constant::ConstData::I64(vec![attr.i]),
        },
        "value_ints" => Constant {
            shape: vec![attr.ints.len()],
            data: crate::constant::ConstData::I64(attr.ints.clone()),
        },
        other => return Err(format!("a constant given as '{other}' is not supported")),
    })
}
