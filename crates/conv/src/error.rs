//! The error type of the kernels: a buffer of the wrong length, a geometry that is inconsistent
//! or does not suit the kernel, or a scratch buffer that could not be allocated. Kernels never
//! panic on a bad call; they return one of these. This module does no computing of its own
//! beyond the length and geometry checks every kernel starts with (for convolutions:
//! `check_conv_args`, shared by the im2col, depthwise and direct kernels).

use crate::geometry::{
    Conv2dGeometry, Conv2dSpec, GeometryError, Padding, Pool2dGeometry, Pool2dSpec,
};

/// What went wrong inside a kernel call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    #[error("{what} has {found} values, expected {expected}")]
    Length {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("{0}")]
    Alloc(#[from] cnn_tensor::TensorError),
    /// The geometry handed to the kernel does not resolve (its fields were edited by hand).
    #[error("invalid geometry: {0}")]
    Geometry(#[from] GeometryError),
    /// The depthwise kernel was given a geometry that is not depthwise.
    #[error(
        "the depthwise kernel needs groups == input channels, got {groups} groups for {in_c} \
         channels"
    )]
    NotDepthwise { groups: usize, in_c: usize },
    /// Arguments that no buffer length can fix: an inconsistent geometry, a group index out of
    /// range, a size that overflows, an empty reduction.
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}

/// Checks that `buf` has exactly `expected` elements.
pub fn check_len(what: &'static str, buf_len: usize, expected: usize) -> Result<(), KernelError> {
    if buf_len == expected {
        Ok(())
    } else {
        Err(KernelError::Length {
            what,
            expected,
            found: buf_len,
        })
    }
}

/// `a * b`, or an [`KernelError::Invalid`] naming `what` when the product overflows.
pub(crate) fn mul_len(what: &'static str, a: usize, b: usize) -> Result<usize, KernelError> {
    a.checked_mul(b).ok_or_else(|| KernelError::Invalid {
        what,
        reason: format!("{a} x {b} elements overflow the address space"),
    })
}

/// Checks that a convolution geometry is what [`Conv2dGeometry::resolve`] would produce for
/// its own kernel, stride, dilation, padding and groups. The fields are public, so a caller can
/// build an inconsistent one by hand; after this check every size the kernels derive from it is
/// in range and fits in `usize`.
pub(crate) fn check_conv_geometry(geom: &Conv2dGeometry) -> Result<(), KernelError> {
    let spec = Conv2dSpec {
        filters: geom.out_c,
        kernel: [geom.k_h, geom.k_w],
        stride: [geom.stride_h, geom.stride_w],
        dilation: [geom.dil_h, geom.dil_w],
        padding: Padding::Asymmetric {
            top: geom.pad_top,
            bottom: geom.pad_bottom,
            left: geom.pad_left,
            right: geom.pad_right,
        },
        groups: geom.groups,
    };
    let resolved = Conv2dGeometry::resolve(geom.in_c, geom.in_h, geom.in_w, &spec)?;
    if resolved == *geom {
        Ok(())
    } else {
        Err(KernelError::Invalid {
            what: "convolution geometry",
            reason: format!(
                "output {}x{} does not follow from the input, window and padding (expected {}x{})",
                geom.out_h, geom.out_w, resolved.out_h, resolved.out_w
            ),
        })
    }
}

/// The checks every convolution entry point starts with: a consistent geometry
/// ([`check_conv_geometry`]), then the length of every buffer for `batch` images.
pub(crate) fn check_conv_args(
    geom: &Conv2dGeometry,
    input: &[f32],
    batch: usize,
    weights: &[f32],
    bias: Option<&[f32]>,
    output: &[f32],
) -> Result<(), KernelError> {
    check_conv_geometry(geom)?;
    check_len("weights", weights.len(), geom.weight_len())?;
    check_conv_args_unpacked(geom, input, batch, bias, output)
}

/// [`check_conv_args`] without the weights (packed ones are checked by
/// [`crate::PackedWeights::fits`]), for a geometry already checked.
pub(crate) fn check_conv_args_unpacked(
    geom: &Conv2dGeometry,
    input: &[f32],
    batch: usize,
    bias: Option<&[f32]>,
    output: &[f32],
) -> Result<(), KernelError> {
    check_len(
        "input",
        input.len(),
        mul_len("input", batch, geom.in_len())?,
    )?;
    check_len(
        "output",
        output.len(),
        mul_len("output", batch, geom.out_len())?,
    )?;
    if let Some(b) = bias {
        check_len("bias", b.len(), geom.out_c)?;
    }
    Ok(())
}

/// The pooling counterpart of [`check_conv_geometry`].
pub(crate) fn check_pool_geometry(geom: &Pool2dGeometry) -> Result<(), KernelError> {
    let spec = Pool2dSpec {
        pool: [geom.pool_h, geom.pool_w],
        stride: [geom.stride_h, geom.stride_w],
        padding: Padding::Asymmetric {
            top: geom.pad_top,
            bottom: geom.pad_bottom,
            left: geom.pad_left,
            right: geom.pad_right,
        },
    };
    let resolved = Pool2dGeometry::resolve(geom.channels, geom.in_h, geom.in_w, &spec)?;
    if resolved != *geom {
        return Err(KernelError::Invalid {
            what: "pooling geometry",
            reason: format!(
                "output {}x{} does not follow from the input, window and padding (expected {}x{})",
                geom.out_h, geom.out_w, resolved.out_h, resolved.out_w
            ),
        });
    }
    // `resolve` does not check the image sizes the pooling kernels derive; do it here.
    let plane = |h: usize, w: usize| geom.channels.checked_mul(h)?.checked_mul(w);
    if plane(geom.in_h, geom.in_w).is_none() || plane(geom.out_h, geom.out_w).is_none() {
        return Err(GeometryError::Overflow.into());
    }
    Ok(())
}
