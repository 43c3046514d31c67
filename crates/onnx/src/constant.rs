//! Constant tensors: initializers, `Constant` node values and test-data files, decoded from
//! `TensorProto` (either `raw_data`, little-endian, or the typed repeated fields). The engine
//! computes in f32; int64 (and int32, widened) tensors are kept for shape operands — Reshape's
//! shape, Pad's pads. Data stored outside the file is read through [`ExternalData`] (from the
//! model's folder). Any other element type or a length that disagrees with the dims is an error
//! naming the tensor.

use crate::error::OnnxError;
use crate::external::ExternalData;
use crate::proto::{data_type, TensorProto};

/// The elements of a constant.
#[derive(Debug, Clone, PartialEq)]
pub enum ConstData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A constant tensor with its shape (`[]` for a scalar).
#[derive(Debug, Clone, PartialEq)]
pub struct Constant {
    pub shape: Vec<usize>,
    pub data: ConstData,
}

impl Constant {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            ConstData::F32(v) => v.len(),
            ConstData::I64(v) => v.len(),
        }
    }

    /// True when the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The f32 elements, if this is a float tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            ConstData::F32(v) => Some(v),
            ConstData::I64(_) => None,
        }
    }

    /// The integer elements, if this is an integer tensor.
    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            ConstData::I64(v) => Some(v),
            ConstData::F32(_) => None,
        }
    }

    /// A float tensor.
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self {
            shape,
            data: ConstData::F32(data),
        }
    }

    /// The element type's ONNX name.
    pub fn type_name(&self) -> &'static str {
        match self.data {
            ConstData::F32(_) => "FLOAT",
            ConstData::I64(_) => "INT64",
        }
    }
}

/// Elements of `dims`, or an error for negative or overflowing dims.
pub fn dims_to_shape(name: &str, dims: &[i64]) -> Result<Vec<usize>, OnnxError> {
    let mut shape = Vec::with_capacity(dims.len());
    for &d in dims {
        let d = usize::try_from(d)
            .map_err(|_| OnnxError::tensor(name, format!("negative dimension {d} in {dims:?}")))?;
        shape.push(d);
    }
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| OnnxError::tensor(name, format!("dimensions {dims:?} overflow")))?;
    Ok(shape)
}

/// Decodes `raw` as little-endian values of `width` bytes each.
fn from_raw<T>(
    name: &str,
    (field, raw): (&str, &[u8]),
    count: usize,
    width: usize,
    convert: impl Fn(&[u8]) -> T,
) -> Result<Vec<T>, OnnxError> {
    let need = count.checked_mul(width);
    if need != Some(raw.len()) {
        return Err(OnnxError::tensor(
            name,
            format!(
                "{field} holds {} bytes, but {count} elements of {width} bytes need {}",
                raw.len(),
                need.map_or_else(|| "more than fit in memory".to_string(), |n| n.to_string())
            ),
        ));
    }
    Ok(raw.chunks_exact(width).map(convert).collect())
}

fn check_count(name: &str, field: &str, got: usize, want: usize) -> Result<(), OnnxError> {
    if got != want {
        return Err(OnnxError::tensor(
            name,
            format!("{field} holds {got} elements, but the dims need {want}"),
        ));
    }
    Ok(())
}

/// Decodes a `TensorProto` (named `name` in messages) that holds its own data.
pub fn decode_tensor(name: &str, t: &TensorProto) -> Result<Constant, OnnxError> {
    decode_tensor_in(name, t, None)
}

/// Decodes a `TensorProto`, reading external data through `external` (the model's folder).
pub fn decode_tensor_in(
    name: &str,
    t: &TensorProto,
    external: Option<&ExternalData>,
) -> Result<Constant, OnnxError> {
    let shape = dims_to_shape(name, &t.dims)?;
    let count: usize = shape.iter().product();
    if t.data_location == 1 || !t.external_data.is_empty() {
        let Some(external) = external else {
            let location = t
                .external_data
                .iter()
                .find(|e| e.key == "location")
                .map(|e| e.value.as_str())
                .unwrap_or("?");
            return Err(OnnxError::tensor(
                name,
                format!(
                    "its data is stored in an external file ('{location}'), which is read from \
                     the model's folder: load the model from its file"
                ),
            ));
        };
        let width: u64 = match t.data_type {
            data_type::INT64 => 8,
            data_type::BOOL => 1,
            _ => 4,
        };
        let need = (count as u64).checked_mul(width);
        // In memory: f32 values, or integers widened to i64.
        let held = (count as u64).checked_mul(if t.data_type == data_type::FLOAT {
            4
        } else {
            8
        });
        return external.with_bytes(name, &t.external_data, need, held, |raw| {
            Ok(Constant {
                shape: shape.clone(),
                data: decode_data(name, t, Some(raw), count)?,
            })
        });
    }
    let data = decode_data(name, t, None, count)?;
    Ok(Constant { shape, data })
}

/// The elements of `t`: from `external` bytes, `raw_data`, or the typed field.
fn decode_data(
    name: &str,
    t: &TensorProto,
    external: Option<&[u8]>,
    count: usize,
) -> Result<ConstData, OnnxError> {
    let raw_data = match external {
        Some(bytes) => ("its external data", bytes),
        None => ("raw_data", t.raw_data.as_slice()),
    };
    let raw = external.is_some() || !t.raw_data.is_empty() || count == 0;
    Ok(match t.data_type {
        data_type::FLOAT => ConstData::F32(if raw {
            from_raw(name, raw_data, count, 4, |b| {
                f32::from_le_bytes([b[0], b[1], b[2], b[3]])
            })?
        } else {
            check_count(name, "float_data", t.float_data.len(), count)?;
            t.float_data.clone()
        }),
        data_type::INT64 => ConstData::I64(if raw {
            from_raw(name, raw_data, count, 8, |b| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                i64::from_le_bytes(a)
            })?
        } else {
            check_count(name, "int64_data", t.int64_data.len(), count)?;
            t.int64_data.clone()
        }),
        data_type::INT32 => ConstData::I64(if raw {
            from_raw(name, raw_data, count, 4, |b| {
                i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            })?
        } else {
            check_count(name, "int32_data", t.int32_data.len(), count)?;
            t.int32_data.iter().map(|&v| i64::from(v)).collect()
        }),
        // Booleans as the integers 0 and 1 (a condition or mask known when planning).
        data_type::BOOL => ConstData::I64(if raw {
            from_raw(name, raw_data, count, 1, |b| i64::from(b[0] != 0))?
        } else {
            check_count(name, "int32_data", t.int32_data.len(), count)?;
            t.int32_data.iter().map(|&v| i64::from(v != 0)).collect()
        }),
        other => {
            return Err(OnnxError::tensor(
                name,
                format!(
                    "data type {} is not supported (the engine computes in FLOAT, and reads \
                     INT64/INT32/BOOL for shape operands and conditions)",
                    data_type::name(other)
                ),
            ))
        }
    })
}

/// Reads a serialized `TensorProto` file (the ONNX test-data `input_0.pb` layout).
pub fn read_tensor_file(path: &std::path::Path) -> Result<(String, Constant), OnnxError> {
    use prost::Message;
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
        path: shown.clone(),
        source,
    })?;
    let t = TensorProto::decode(bytes.as_slice()).map_err(|e| OnnxError::Decode {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    let c = decode_tensor(&t.name, &t).map_err(|e| e.in_file(&shown))?;
    Ok((t.name, c))
}

/// Encodes an f32 tensor as a `TensorProto` (raw little-endian data).
pub fn encode_f32(name: &str, shape: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: data_type::FLOAT,
        name: name.to_string(),
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_typed_floats_decode_alike() {
        let raw = encode_f32("w", &[2, 2], &[1.0, -2.0, 3.5, 0.0]);
        let typed = TensorProto {
            dims: vec![2, 2],
            data_type: data_type::FLOAT,
            float_data: vec![1.0, -2.0, 3.5, 0.0],
            ..Default::default()
        };
        assert_eq!(
            decode_tensor("w", &raw).unwrap(),
            decode_tensor("w", &typed).unwrap()
        );
    }

    #[test]
    fn short_data_external_data_and_odd_types_are_errors() {
        let mut t = encode_f32("w", &[3], &[1.0, 2.0]);
        t.dims = vec![3];
        let e = decode_tensor("w", &t).unwrap_err().to_string();
        assert!(
            e.contains("raw_data holds 8 bytes") && e.contains("'w'"),
            "{e}"
        );
        let t = TensorProto {
            dims: vec![2],
            data_type: data_type::DOUBLE,
            double_data: vec![1.0, 2.0],
            ..Default::default()
        };
        let e = decode_tensor("d", &t).unwrap_err().to_string();
        assert!(e.contains("DOUBLE is not supported"), "{e}");
        let mut t = encode_f32("x", &[1], &[1.0]);
        t.data_location = 1;
        t.external_data.push(crate::proto::StringStringEntryProto {
            key: "location".into(),
            value: "x.bin".into(),
        });
        let e = decode_tensor("x", &t).unwrap_err().to_string();
        assert!(e.contains("external file ('x.bin')"), "{e}");
        let t = TensorProto {
            dims: vec![-1],
            data_type: data_type::FLOAT,
            ..Default::default()
        };
        assert!(decode_tensor("n", &t)
            .unwrap_err()
            .to_string()
            .contains("negative"));
    }
}
