//! The production convolution: picks the cheapest correct path for a geometry and runs it.
//!
//! * Depthwise (`groups == in_c > 1`): the direct kernel of [`crate::depthwise_conv2d`]; as a
//!   GEMM every group would be a single-row product.
//! * Everything else: im2col + GEMM, `out[Mg, oh*ow] = W_g[Mg, K] x cols[K, oh*ow]`, on the
//!   packed GEMM: the weights are packed into micro-kernel panels once ([`PackedWeights`],
//!   which a model keeps between calls), in the [`Orientation`](crate::packed::Orientation)
//!   they were packed for.
//! * With at least 16 input channels per group (not 1x1) the column matrix is never unfolded:
//!   the images are copied channels-last and the GEMM reads the matrix in place
//!   ([`crate::channels_last`]), tile by tile of output pixels.
//! * Otherwise the column matrix is *tiled over output pixels* and unfolded straight into the
//!   GEMM's panel layout ([`crate::packed`]), so there is no separate packing copy. A 1x1
//!   convolution (stride 1, no padding) needs no unfolding: its panels are copied from the
//!   input rows as they are.
//!
//! Bias and a clamping activation (none, ReLU, Clip) are applied as the GEMM stores its
//! finished values (the last reduction block's stores; `microkernel::Finish`); sigmoid and tanh
//! in one pass over each GEMM block right after it is written.
//!
//! The submodules read in the order of a call:
//! * `path`: which of those paths a geometry takes, and the buffers it needs — the one place
//!   that decides it. [`describe`] tells it without running anything ([`ConvPath`]).
//! * `schedule`: how many output pixels a tile holds, and how a call is cut into independent
//!   tasks for the workers.
//! * `run`: the workers' loop over those tasks (unfold or read the columns, multiply, store).
//! * `plain`: [`conv2d_im2col_plain`], the textbook version (whole column matrix, single thread,
//!   no fast paths, `matrixmultiply`'s GEMM), kept as a benchmark baseline.
//!
//! This file holds the public entry points and their tuning knobs only: it checks the
//! arguments, sends depthwise layers to their kernel and hands everything else to `run`. This
//! module does not check its results; the tests compare it with [`crate::conv2d_direct`].

mod path;
mod plain;
mod run;
mod schedule;
#[cfg(test)]
mod test_util;

pub use path::{column_buffer_len, describe, ConvPath, PathKind};
pub(crate) use path::{gemm_kind, kind as path_kind};
pub use plain::conv2d_im2col_plain;

use crate::depthwise_conv2d;
use crate::error::{check_conv_args, check_conv_args_unpacked, check_conv_geometry, check_len};
use crate::{Activation, Conv2dGeometry, Kernel, KernelError, PackedWeights};

/// Upper bound of the production path's column panels (per worker thread), in bytes, unless a
/// single panel (16 or 6 output pixels) needs more, in which case a tile is exactly one panel.
pub const COL_TILE_BYTES: usize = 8 << 20;

/// What a tile aims at below that bound: its column panels plus the output block it produces
/// should fit in a core's L2 cache, so that the GEMM reads the columns im2col just wrote, and
/// adds into and the bias and activation pass reads the block it writes, from cache.
const CACHE_TILE_BYTES: usize = 1 << 20;

/// Calls with fewer multiply-accumulates than this run on the calling thread.
const PAR_MIN_MACS: usize = 1 << 20;

/// Bound of the channels-last copies of the images of a call held at once, in bytes (at least
/// one image is).
const CHANNELS_LAST_BYTES: usize = 16 << 20;

/// Tuning knobs of [`conv2d_tuned`]; tests lower them to force tiling and splitting on small
/// inputs. Not part of the stable API.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTuning {
    /// Bound of a tile's column panels in bytes (at least one panel is always held).
    pub tile_bytes: usize,
    /// Target size in bytes of a tile's column panels plus its output block.
    pub cache_bytes: usize,
    /// Minimum multiply-accumulates of a call before it is spread over threads.
    pub par_min_macs: usize,
    /// Number of workers to plan for (`None`: `rayon::current_num_threads()`).
    pub threads: Option<usize>,
    /// The kernel build [`conv2d_tuned`] packs the weights for (`None`: the selected one).
    /// [`conv2d_packed_tuned`] runs the build its weights were packed for.
    pub kernel: Option<Kernel>,
    /// Bound of the channels-last copies of a call's images held at once (at least one).
    pub channels_last_bytes: usize,
}

impl Default for ConvTuning {
    fn default() -> Self {
        Self {
            tile_bytes: COL_TILE_BYTES,
            cache_bytes: CACHE_TILE_BYTES,
            par_min_macs: PAR_MIN_MACS,
            threads: None,
            kernel: None,
            channels_last_bytes: CHANNELS_LAST_BYTES,
        }
    }
}

/// Convolution of `batch` images `input[batch, in_c, in_h, in_w]` with
/// `weights[out_c, in_c/groups, k_h, k_w]`, optional `bias[out_c]`, fused activation, into
/// `output[batch, out_c, out_h, out_w]` (overwritten).
pub fn conv2d(
    geom: &Conv2dGeometry,
    input: &[f32],
    batch: usize,
    weights: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
) -> Result<(), KernelError> {
    conv2d_tuned(
        geom,
        input,
        batch,
        weights,
        bias,
        act,
        output,
        ConvTuning::default(),
    )
}

/// [`conv2d`] with explicit tuning (tile bound, threading). For tests and benchmarks.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn conv2d_tuned(
    geom: &Conv2dGeometry,
    input: &[f32],
    batch: usize,
    weights: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
    tuning: ConvTuning,
) -> Result<(), KernelError> {
    check_conv_args(geom, input, batch, weights, bias, output)?;
    if path_kind(geom) == PathKind::Depthwise {
        return depthwise_conv2d(geom, input, batch, weights, bias, act, output);
    }
    let kernel = tuning.kernel.unwrap_or_else(Kernel::selected);
    let packed = PackedWeights::for_kernel(geom, weights, kernel)?;
    conv2d_packed_tuned(geom, input, batch, &packed, bias, act, output, tuning)
}

/// [`conv2d`] with weights packed beforehand by [`PackedWeights::new`] (for this geometry), as a
/// model does once when it is built: the call then never touches the unpacked weights.
pub fn conv2d_packed(
    geom: &Conv2dGeometry,
    input: &[f32],
    batch: usize,
    weights: &PackedWeights,
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
) -> Result<(), KernelError> {
    conv2d_packed_tuned(
        geom,
        input,
        batch,
        weights,
        bias,
        act,
        output,
        ConvTuning::default(),
    )
}

/// [`conv2d_packed`] with explicit tuning. For tests and benchmarks.
///
/// The path is the one the weights were packed for: [`PackedWeights::new`] packs them for the
/// path [`describe`] names (depthwise weights as given, channels-last ones tap by tap), and
/// `run` follows their orientation (tests pack them in every orientation).
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn conv2d_packed_tuned(
    geom: &Conv2dGeometry,
    input: &[f32],
    batch: usize,
    weights: &PackedWeights,
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
    tuning: ConvTuning,
) -> Result<(), KernelError> {
    packed_call(
        geom, input, batch, weights, bias, act, output, false, tuning,
    )
}

/// [`conv2d_packed`] added to what `output` holds: `output = act(output + conv(input) +
/// bias)`, the sum taken in the GEMM's stores (no pass of its own). This is a residual
/// connection's `Add(conv(x) + bias, skip)` followed by an activation, with `output` holding
/// `skip`. A depthwise convolution (a direct kernel, not a GEMM) is computed aside and added.
pub fn conv2d_packed_onto(
    geom: &Conv2dGeometry,
    input: &[f32],
    batch: usize,
    weights: &PackedWeights,
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
) -> Result<(), KernelError> {
    conv2d_packed_onto_tuned(
        geom,
        input,
        batch,
        weights,
        bias,
        act,
        output,
        ConvTuning::default(),
    )
}

/// [`conv2d_packed_onto`] with explicit tuning. For tests and benchmarks.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn conv2d_packed_onto_tuned(
    geom: &Conv2dGeometry,
    input: &[f32],
    batch: usize,
    weights: &PackedWeights,
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
    tuning: ConvTuning,
) -> Result<(), KernelError> {
    packed_call(geom, input, batch, weights, bias, act, output, true, tuning)
}

/// The packed convolution, overwriting `output` or, with `onto`, adding to it.
#[allow(clippy::too_many_arguments)]
fn packed_call(
    geom: &Conv2dGeometry,
    input: &[f32],
    batch: usize,
    weights: &PackedWeights,
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
    onto: bool,
    tuning: ConvTuning,
) -> Result<(), KernelError> {
    check_conv_geometry(geom)?;
    if !weights.fits(geom) {
        return Err(KernelError::Invalid {
            what: "packed weights",
            reason: "they were packed for a convolution of another shape".into(),
        });
    }
    if let Some(raw) = weights.depthwise() {
        if !onto {
            return depthwise_conv2d(geom, input, batch, raw, bias, act, output);
        }
        check_len("output", output.len(), geom.out_len().saturating_mul(batch))?;
        let mut aside = cnn_tensor::try_zeroed(output.len(), "a depthwise result")?;
        depthwise_conv2d(
            geom,
            input,
            batch,
            raw,
            bias,
            Activation::Linear,
            &mut aside,
        )?;
        output.iter_mut().zip(&aside).for_each(|(o, a)| *o += a);
        act.apply(output);
        return Ok(());
    }
    check_conv_args_unpacked(geom, input, batch, bias, output)?;
    if let Some(w) = weights.winograd_weights() {
        if batch == 0 {
            return Ok(());
        }
        return crate::winograd::conv(geom, input, batch, w, bias, act, output, onto);
    }
    let plan = path::plan(geom, weights.orientation(), weights.kernel(), &tuning);
    if batch == 0 {
        return Ok(());
    }
    run::Call::new(geom, weights, bias, act, onto, plan, tuning).convolve(input, batch, output)
}

#[cfg(test)]
mod tests {
    use super::test_util::{data, max_abs_diff, spec};
    use super::*;
    use crate::{conv2d_direct, Padding};

    #[test]
    fn packed_weights_of_another_shape_are_an_error() {
        let g = Conv2dGeometry::resolve(4, 6, 6, &spec(8, 3, 1, Padding::Same, 1)).unwrap();
        let input = data(g.in_len(), 11);
        let mut out = vec![1.5; g.out_len()];
        let act = Activation::Linear;
        // Packed for 5x5 kernels (another K), for 9 filters, for 2 groups, for a depthwise layer,
        // for a 1x1 kernel on 36 channels (the same K = 36, split otherwise).
        let others = [
            Conv2dGeometry::resolve(4, 6, 6, &spec(8, 5, 1, Padding::Same, 1)).unwrap(),
            Conv2dGeometry::resolve(36, 6, 6, &spec(8, 1, 1, Padding::Same, 1)).unwrap(),
            Conv2dGeometry::resolve(4, 6, 6, &spec(9, 3, 1, Padding::Same, 1)).unwrap(),
            Conv2dGeometry::resolve(4, 6, 6, &spec(8, 3, 1, Padding::Same, 2)).unwrap(),
            Conv2dGeometry::resolve(4, 6, 6, &spec(8, 3, 1, Padding::Same, 4)).unwrap(),
        ];
        for other in others {
            let packed = PackedWeights::new(&other, &data(other.weight_len(), 12)).unwrap();
            let r = conv2d_packed(&g, &input, 1, &packed, None, act, &mut out);
            assert!(matches!(
                r,
                Err(KernelError::Invalid {
                    what: "packed weights",
                    ..
                })
            ));
            assert!(out.iter().all(|&v| v == 1.5), "the output is left alone");
        }
        // Packed for the same shape on another image size: the same panels, accepted.
        let bigger = Conv2dGeometry::resolve(4, 9, 9, &spec(8, 3, 1, Padding::Same, 1)).unwrap();
        let w = data(g.weight_len(), 13);
        let packed = PackedWeights::new(&bigger, &w).unwrap();
        assert!(packed.fits(&g));
        let mut slow = vec![0.0; g.out_len()];
        conv2d_packed(&g, &input, 1, &packed, None, act, &mut out).unwrap();
        conv2d_direct(&g, &input, 1, &w, None, act, &mut slow).unwrap();
        assert!(max_abs_diff(&out, &slow) < 1e-5);
        // Unpacked weights of the wrong length are refused when packing.
        assert!(matches!(
            PackedWeights::new(&g, &w[1..]),
            Err(KernelError::Length { .. })
        ));
    }

    #[test]
    fn length_errors_are_returned() {
        let g = Conv2dGeometry::resolve(2, 5, 5, &spec(3, 3, 1, Padding::Valid, 1)).unwrap();
        let input = vec![0.0; g.in_len()];
        let weights = vec![0.0; g.weight_len()];
        let mut out = vec![0.0; g.out_len()];
        let act = Activation::Linear;
        let is_len = |r: Result<(), KernelError>| matches!(r, Err(KernelError::Length { .. }));
        assert!(is_len(conv2d(
            &g,
            &input[1..],
            1,
            &weights,
            None,
            act,
            &mut out
        )));
        assert!(is_len(conv2d(&g, &input, 2, &weights, None, act, &mut out)));
        assert!(is_len(conv2d(
            &g,
            &input,
            1,
            &weights[1..],
            None,
            act,
            &mut out
        )));
        assert!(is_len(conv2d(
            &g,
            &input,
            1,
            &weights,
            Some(&[0.0; 2]),
            act,
            &mut out
        )));
        assert!(is_len(conv2d(
            &g,
            &input,
            1,
            &weights,
            None,
            act,
            &mut out[1..]
        )));
        assert!(conv2d(&g, &input, usize::MAX, &weights, None, act, &mut out).is_err());
        assert!(conv2d(&g, &[], 0, &weights, None, act, &mut []).is_ok());
        let mut bad = g;
        bad.out_w = 4;
        assert!(matches!(
            conv2d(&bad, &input, 1, &weights, None, act, &mut out),
            Err(KernelError::Invalid { .. })
        ));
        // Hand-edited geometries whose sizes overflow or divide by zero are errors too.
        for edit in [
            |g: &mut Conv2dGeometry| g.in_c = usize::MAX / 2,
            |g: &mut Conv2dGeometry| g.groups = 0,
            |g: &mut Conv2dGeometry| g.stride_w = 0,
            |g: &mut Conv2dGeometry| g.pad_left = usize::MAX,
            |g: &mut Conv2dGeometry| g.k_h = usize::MAX,
        ] {
            let mut bad = g;
            edit(&mut bad);
            assert!(conv2d(&bad, &input, 1, &weights, None, act, &mut out).is_err());
            assert!(conv2d_direct(&bad, &input, 1, &weights, None, act, &mut out).is_err());
        }
    }
}
