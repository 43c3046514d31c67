//! The tensor type of the engine: a dense, row-major `f32` array in NCHW order (or `[N, n]` after
//! a flatten), backed by `ndarray`, always in standard (C) layout so kernels can take it as a flat
//! slice.
//!
//! This crate also owns fallible allocation: every large buffer the engine holds (weights,
//! activations, column matrices) is obtained through [`try_zeroed`], which reports an allocation
//! failure as an error instead of aborting the process. It knows nothing of layers or files.

use ndarray::{ArrayD, IxDyn};
use std::fmt;

/// Errors raised when building or reshaping a tensor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    /// The data length does not match the product of the shape.
    #[error("shape {shape} needs {expected} values, found {found}")]
    LengthMismatch {
        shape: String,
        expected: usize,
        found: usize,
    },
    /// The element count of a shape overflows `usize`.
    #[error("shape {shape} has more elements than this machine can address")]
    Overflow { shape: String },
    /// The allocator refused the request.
    #[error("could not allocate {bytes} bytes for {what}")]
    Alloc { what: String, bytes: u128 },
}

/// Formats a shape the way the engine prints it everywhere: `32x26x26`.
pub fn format_shape(shape: &[usize]) -> String {
    if shape.is_empty() {
        return "scalar".to_string();
    }
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

/// The number of elements of `shape`, or an error when it overflows `usize`.
pub fn element_count(shape: &[usize]) -> Result<usize, TensorError> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| TensorError::Overflow {
            shape: format_shape(shape),
        })
}

/// Allocates `len` zeroed `f32`s, reporting failure instead of aborting.
///
/// `what` names the buffer in the error ("weights of conv2d_1", "column buffer").
///
/// The memory comes zeroed from the allocator (`calloc`): a large buffer is fresh pages the
/// system zeroes when they are first touched, not a second pass over memory that the kernel
/// about to overwrite it would have to wait for.
pub fn try_zeroed(len: usize, what: &str) -> Result<Vec<f32>, TensorError> {
    let bytes = len as u128 * std::mem::size_of::<f32>() as u128;
    let fail = || TensorError::Alloc {
        what: what.to_string(),
        bytes,
    };
    if len == 0 {
        return Ok(Vec::new());
    }
    let layout = std::alloc::Layout::array::<f32>(len).map_err(|_| fail())?;
    // SAFETY: `layout` has a non-zero size (len > 0). The pointer, when not null, is an
    // allocation of the global allocator with `f32`'s alignment and room for exactly `len`
    // values, all bits zero (0.0); the Vec takes ownership with length and capacity `len`,
    // and frees it with the same layout.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout) as *mut f32;
        if p.is_null() {
            return Err(fail());
        }
        Ok(Vec::from_raw_parts(p, len, len))
    }
}

/// A dense `f32` tensor in standard layout. The first axis is the batch.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    data: ArrayD<f32>,
}

impl Tensor {
    /// A tensor of zeros, allocated fallibly.
    pub fn zeros(shape: &[usize]) -> Result<Self, TensorError> {
        let len = element_count(shape)?;
        let data = try_zeroed(len, &format!("a {} tensor", format_shape(shape)))?;
        Self::from_vec(shape, data)
    }

    /// Wraps `data` (row-major) with `shape`.
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Self, TensorError> {
        let expected = element_count(shape)?;
        if expected != data.len() {
            return Err(TensorError::LengthMismatch {
                shape: format_shape(shape),
                expected,
                found: data.len(),
            });
        }
        let data = ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|_| {
            TensorError::LengthMismatch {
                shape: format_shape(shape),
                expected,
                found: expected,
            }
        })?;
        Ok(Self { data })
    }

    /// Wraps an ndarray, copying it into standard layout if it is not already.
    pub fn from_array(array: ArrayD<f32>) -> Self {
        let data = if array.is_standard_layout() {
            array
        } else {
            array.as_standard_layout().into_owned()
        };
        Self { data }
    }

    /// The full shape, batch first.
    pub fn shape(&self) -> &[usize] {
        self.data.shape()
    }

    /// The batch size (first axis), or 1 for a rank-0 tensor.
    pub fn batch(&self) -> usize {
        self.shape().first().copied().unwrap_or(1)
    }

    /// The shape of one batch item.
    pub fn item_shape(&self) -> &[usize] {
        let s = self.shape();
        if s.is_empty() {
            s
        } else {
            &s[1..]
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The elements in row-major order.
    pub fn as_slice(&self) -> &[f32] {
        self.data
            .as_slice()
            .expect("Tensor is always kept in standard layout")
    }

    /// The elements in row-major order, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        self.data
            .as_slice_mut()
            .expect("Tensor is always kept in standard layout")
    }

    /// The underlying ndarray.
    pub fn array(&self) -> &ArrayD<f32> {
        &self.data
    }

    /// Consumes the tensor, returning the ndarray.
    pub fn into_array(self) -> ArrayD<f32> {
        self.data
    }

    /// Consumes the tensor, returning its elements.
    pub fn into_vec(self) -> Vec<f32> {
        let (v, offset) = self.data.into_raw_vec_and_offset();
        debug_assert!(offset.unwrap_or(0) == 0);
        v
    }

    /// The same elements under a new shape with the same element count.
    pub fn reshape(self, shape: &[usize]) -> Result<Self, TensorError> {
        let v = self.into_vec();
        Self::from_vec(shape, v)
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor({})", format_shape(self.shape()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_vec_checks_length() {
        let err = Tensor::from_vec(&[1, 2, 3], vec![0.0; 5]).unwrap_err();
        assert_eq!(err.to_string(), "shape 1x2x3 needs 6 values, found 5");
        let t = Tensor::from_vec(&[1, 2, 3], (0..6).map(|x| x as f32).collect()).unwrap();
        assert_eq!(t.batch(), 1);
        assert_eq!(t.item_shape(), &[2, 3]);
        assert_eq!(t.as_slice()[5], 5.0);
    }

    #[test]
    fn element_count_overflow_is_an_error() {
        assert!(element_count(&[usize::MAX, 2]).is_err());
        assert_eq!(element_count(&[2, 3, 4]).unwrap(), 24);
    }

    #[test]
    fn reshape_keeps_elements_in_order() {
        let t = Tensor::from_vec(&[2, 2, 2], (0..8).map(|x| x as f32).collect()).unwrap();
        let r = t.reshape(&[2, 4]).unwrap();
        assert_eq!(r.shape(), &[2, 4]);
        assert_eq!(r.as_slice(), &[0., 1., 2., 3., 4., 5., 6., 7.]);
    }

    #[test]
    fn non_standard_layout_is_copied() {
        let a = ndarray::Array2::from_shape_vec((2, 3), vec![1., 2., 3., 4., 5., 6.])
            .unwrap()
            .reversed_axes()
            .into_dyn();
        let t = Tensor::from_array(a);
        assert_eq!(t.as_slice(), &[1., 4., 2., 5., 3., 6.]);
    }

    #[test]
    fn huge_allocation_fails_cleanly() {
        for len in [0usize, 1, 7, 1 << 20] {
            let v = try_zeroed(len, "test buffer").unwrap();
            assert_eq!((v.len(), v.capacity()), (len, len));
            assert!(v.iter().all(|&x| x.to_bits() == 0));
        }
        let err = try_zeroed(usize::MAX / 8, "test buffer").unwrap_err();
        assert!(err.to_string().contains("could not allocate"));
    }
}
