//! Tensor data stored outside the `.onnx` file: ONNX's `external_data` (`location`, `offset`,
//! `length`), as PyTorch's default exporter and Keras 3 write it (`model.onnx.data` beside the
//! model). A location is a path relative to the model's folder and must stay inside it: an
//! absolute path, a `..` component or a symbolic link that leads out is refused. The file is
//! memory-mapped and the tensor's bytes decoded straight from the mapping (no second copy of
//! the file in memory); a file that cannot be mapped is read instead. The bytes every external
//! tensor takes are counted against the ceiling on weight memory before they are read.
//!
//! Every error names the tensor and the location, as the file wrote it.

use crate::error::OnnxError;
use crate::proto::StringStringEntryProto;
use std::cell::Cell;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

/// Where a model's external data may come from, and how much of it may be read.
#[derive(Debug)]
pub struct ExternalData {
    /// The model's folder, canonical (symbolic links resolved).
    dir: PathBuf,
    /// Bytes external tensors may still take under the ceiling.
    budget: Cell<u128>,
}

/// A tensor's external data as its `external_data` entries say.
struct Entries<'a> {
    location: &'a str,
    offset: u64,
    length: Option<u64>,
}

fn entries<'a>(tensor: &str, list: &'a [StringStringEntryProto]) -> Result<Entries<'a>, OnnxError> {
    let find = |key: &str| list.iter().find(|e| e.key == key).map(|e| e.value.as_str());
    let number = |key: &str| -> Result<Option<u64>, OnnxError> {
        find(key)
            .map(|v| {
                v.trim().parse::<u64>().map_err(|_| {
                    OnnxError::tensor(
                        tensor,
                        format!("external data {key} '{v}' is not a whole number of bytes"),
                    )
                })
            })
            .transpose()
    };
    let location = find("location")
        .ok_or_else(|| OnnxError::tensor(tensor, "its data is external but names no 'location'"))?;
    Ok(Entries {
        location,
        offset: number("offset")?.unwrap_or(0),
        length: number("length")?,
    })
}

impl ExternalData {
    /// External data for the model at `model_path`, at most `max_bytes` of it.
    pub fn new(model_path: &Path, max_bytes: u128) -> Result<Self, OnnxError> {
        let folder = match model_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = folder.canonicalize().map_err(|source| OnnxError::Io {
            path: folder.display().to_string(),
            source,
        })?;
        Ok(ExternalData {
            dir,
            budget: Cell::new(max_bytes),
        })
    }

    /// The file `location` names, checked to stay inside the model's folder.
    fn resolve(&self, tensor: &str, location: &str) -> Result<PathBuf, OnnxError> {
        let refuse = |why: &str| {
            OnnxError::tensor(
                tensor,
                format!("external data location '{location}' {why}; it must be a file in the model's folder"),
            )
        };
        let rel = Path::new(location);
        if location.is_empty() {
            return Err(refuse("is empty"));
        }
        if rel.is_absolute() || rel.has_root() {
            return Err(refuse("is an absolute path"));
        }
        if rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(refuse("leaves the folder ('..')"));
        }
        let joined = self.dir.join(rel);
        let real = joined.canonicalize().map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "does not exist".to_string(),
                _ => format!("cannot be opened ({e})"),
            };
            OnnxError::tensor(tensor, format!("external data file '{location}' {why}"))
        })?;
        if !real.starts_with(&self.dir) {
            return Err(refuse("leads out of the folder through a symbolic link"));
        }
        // A directory, FIFO or device is not data (a FIFO would block the open).
        if !std::fs::metadata(&real).is_ok_and(|m| m.is_file()) {
            return Err(refuse("is not a regular file"));
        }
        Ok(real)
    }

    /// Calls `decode` on the bytes of `tensor`'s external data: `length` bytes at `offset`
    /// (without `length`, the `need` bytes its dims and type take). The ceiling is charged
    /// the larger of the bytes read and `held`, what the decoded values take (integers are
    /// widened to 8 bytes).
    pub fn with_bytes<R>(
        &self,
        tensor: &str,
        list: &[StringStringEntryProto],
        need: Option<u64>,
        held: Option<u64>,
        decode: impl FnOnce(&[u8]) -> Result<R, OnnxError>,
    ) -> Result<R, OnnxError> {
        let e = entries(tensor, list)?;
        let path = self.resolve(tensor, e.location)?;
        let len = e
            .length
            .or(need)
            .ok_or_else(|| OnnxError::tensor(tensor, "its external data size overflows"))?;
        let charged = u128::from(len).max(held.map_or(u128::MAX, u128::from));
        let left = self.budget.get();
        if charged > left {
            return Err(OnnxError::tensor(
                tensor,
                format!(
                    "its {charged} bytes of external data ('{}', as held in memory) are over \
                     what is left of the ceiling on weight memory ({left} bytes; \
                     --max-weight-bytes)",
                    e.location
                ),
            ));
        }
        self.budget.set(left - charged);
        let io = |source: std::io::Error| {
            OnnxError::tensor(
                tensor,
                format!("external data file '{}': {source}", e.location),
            )
        };
        let mut file = File::open(&path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let end = e
            .offset
            .checked_add(len)
            .filter(|&end| end <= size)
            .ok_or_else(|| {
                OnnxError::tensor(
                    tensor,
                    format!(
                        "needs bytes {}..{} of '{}', which holds {size}",
                        e.offset,
                        e.offset.saturating_add(len),
                        e.location
                    ),
                )
            })?;
        let (start, end) = (e.offset as usize, end as usize);
        // SAFETY: the mapping is read-only, checked to cover `start..end` (the file's size was
        // read above) and dropped before this call returns. As for every memory-mapped reader
        // (safetensors loaders included), a file truncated by another process while it is
        // mapped would fault: model files are not rewritten while a model loads.
        match unsafe { memmap2::Mmap::map(&file) } {
            Ok(map) => decode(&map[start..end]),
            Err(_) => {
                let mut bytes = Vec::new();
                bytes
                    .try_reserve_exact(end - start)
                    .map_err(|_| OnnxError::tensor(tensor, "no memory for its external data"))?;
                file.seek(SeekFrom::Start(e.offset)).map_err(io)?;
                file.take(len).read_to_end(&mut bytes).map_err(io)?;
                decode(&bytes)
            }
        }
    }
}
