//! Reading and writing `.npy` arrays for `cnn run`, through `ndarray-npy`.
//!
//! Inputs must be `float32` (little- or big-endian; C or Fortran order, the latter converted),
//! shaped `[C, H, W]` (one image) or `[N, C, H, W]`; anything else is an error naming the file, what it holds and what the
//! model expects. Outputs are written as `float32` arrays with the batch axis first.

use cnn_tensor::{format_shape, Tensor};
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

/// Reads `path` as a float32 array of any shape.
pub fn read_array(path: &Path) -> Result<ArrayD<f32>, String> {
    let shown = path.display();
    let file = File::open(path).map_err(|e| crate::file_error(path, "open", &e))?;
    let array = ArrayD::<f32>::read_npy(BufReader::new(file)).map_err(|e| {
        let why = match e {
            ReadNpyError::WrongDescriptor(d) => {
                format!("dtype {d}, but the engine needs float32 ('<f4'); convert with x.astype(np.float32)")
            }
            ReadNpyError::ParseHeader(h) => format!("not a valid .npy file ({h})"),
            ReadNpyError::Io(io) => format!("not a valid .npy file ({io})"),
            ReadNpyError::MissingData => "truncated: the data is shorter than the header says".to_string(),
            ReadNpyError::ExtraBytes(n) => format!("{n} bytes of trailing garbage after the data"),
            other => other.to_string(),
        };
        format!("{shown}: {why}")
    })?;
    Ok(array)
}

/// Reads `path` as an input batch for a model whose single image is `expected` (`[C, H, W]`).
pub fn read_input(path: &Path, expected: &[usize]) -> Result<Tensor, String> {
    let shown = path.display();
    let array = read_array(path)?;
    let shape = array.shape().to_vec();
    let wanted = format_shape(expected);
    let batched = match shape.len() {
        3 if shape[..] == expected[..] => {
            let mut s = vec![1];
            s.extend_from_slice(&shape);
            s
        }
        4 if shape[1..] == expected[..] && shape[0] > 0 => shape.clone(),
        _ => {
            return Err(format!(
            "{shown}: array of shape {}, but the model takes {wanted} (CHW) or Nx{wanted} (NCHW)",
            format_shape(&shape)
        ))
        }
    };
    let tensor = Tensor::from_array(array);
    tensor
        .reshape(&batched)
        .map_err(|e| format!("{shown}: {e}"))
}

/// Writes `tensor` to `path` as a float32 `.npy`.
pub fn write_output(path: &Path, tensor: &Tensor) -> Result<(), String> {
    let shown = path.display();
    let file = File::create(path).map_err(|e| format!("{shown}: cannot create: {e}"))?;
    tensor
        .array()
        .write_npy(BufWriter::new(file))
        .map_err(|e| format!("{shown}: cannot write: {e}"))
}
