//! The production convolution: picks the cheapest correct path for a geometry and runs it.
//!
//! * Depthwise (`groups == in_c > 1`): the direct kernel of [`crate::depthwise_conv2d`]; a GEMM
//!   per channel would have a single row.
//! * Pointwise (1x1, stride 1, no padding): no unfolding at all. Group `g` of the image,
//!   `[in_c/groups, h*w]`, already *is* the column matrix, so each image and group is one GEMM
//!   `out[Mg, h*w] = W_g[Mg, Cg] x X_g[Cg, h*w]`.
//! * Everything else: im2col + GEMM, `out[Mg, oh*ow] = W_g[Mg, K] x cols[K, oh*ow]`, with the
//!   column matrix *tiled over output rows* so that its buffer never exceeds [`COL_TILE_BYTES`]
//!   (but always holds at least one output row). Each tile is unfolded by
//!   [`crate::im2col::im2col_rows`] and multiplied straight into its sub-block of the output
//!   (the GEMM writes with the output's row stride), so no copy is made.
//!
//! Bias and activation are applied to each GEMM block right after it is written. Work is spread
//! with rayon: across the images of the batch, and, when there are fewer images than threads,
//! also across blocks of output channels inside each GEMM (and across the rows of each column
//! tile while unfolding). Every scratch buffer is allocated fallibly.
//!
//! [`conv2d_im2col_plain`] is the textbook version (whole column matrix, single thread, no
//! fast paths), kept for benchmarks. This module does not check results; the tests compare it
//! with [`crate::conv2d_direct`].

use crate::error::{check_conv_geometry, check_len, mul_len};
use crate::gemm::{bias_act_rows, gemm, MatMut, MatRef};
use crate::im2col::fill_cols;
use crate::{depthwise_conv2d, Activation, Conv2dGeometry, KernelError};
use rayon::prelude::*;

/// Upper bound of the production path's column buffer, in bytes (unless a single output row
/// needs more, in which case the buffer holds exactly one output row).
pub const COL_TILE_BYTES: usize = 8 << 20;

/// GEMMs with fewer multiply-accumulates than this are not split across threads.
const PAR_MIN_MACS: usize = 1 << 18;

/// Tuning knobs of [`conv2d_tuned`]; tests lower them to force tiling and splitting on small
/// inputs. Not part of the stable API.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTuning {
    /// Bound of the column buffer in bytes (at least one output row is always held).
    pub tile_bytes: usize,
    /// Minimum multiply-accumulates of a GEMM before it is split across threads.
    pub par_min_macs: usize,
}

impl Default for ConvTuning {
    fn default() -> Self {
        Self {
            tile_bytes: COL_TILE_BYTES,
            par_min_macs: PAR_MIN_MACS,
        }
    }
}

/// How the production path runs a geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Depthwise,
    Pointwise,
    /// im2col + GEMM, `rows` output rows per column tile.
    Im2col {
        rows: usize,
    },
}

fn plan(geom: &Conv2dGeometry, tile_bytes: usize) -> Path {
    if geom.is_depthwise() {
        Path::Depthwise
    } else if geom.is_pointwise() {
        Path::Pointwise
    } else {
        Path::Im2col {
            rows: tile_rows(geom, tile_bytes),
        }
    }
}

/// Output rows per column tile: as many as fit in `tile_bytes`, at least 1, at most `out_h`.
fn tile_rows(geom: &Conv2dGeometry, tile_bytes: usize) -> usize {
    let row_bytes = geom
        .col_rows()
        .saturating_mul(geom.out_w)
        .saturating_mul(std::mem::size_of::<f32>());
    (tile_bytes / row_bytes.max(1)).clamp(1, geom.out_h.max(1))
}

/// Elements of the column buffer [`conv2d`] allocates for `geom` (per worker thread when the
/// batch is split across threads): `col_rows * rows_per_tile * out_w` for the im2col path, 0
/// for the pointwise and depthwise paths, which need none.
pub fn column_buffer_len(geom: &Conv2dGeometry) -> usize {
    column_buffer_len_with(geom, COL_TILE_BYTES)
}

fn column_buffer_len_with(geom: &Conv2dGeometry, tile_bytes: usize) -> usize {
    match plan(geom, tile_bytes) {
        Path::Depthwise | Path::Pointwise => 0,
        Path::Im2col { rows } => geom.col_rows() * rows * geom.out_w,
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

/// [`conv2d`] with explicit tuning (tile bound, threading threshold). For tests and benchmarks.
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
    let path = plan(geom, tuning.tile_bytes);
    if path == Path::Depthwise {
        return depthwise_conv2d(geom, input, batch, weights, bias, act, output);
    }
    if batch == 0 {
        return Ok(());
    }
    let ctx = Ctx {
        geom,
        weights,
        bias,
        act,
        path,
        // Split inside an image only when the batch alone cannot keep every thread busy.
        split: batch < rayon::current_num_threads(),
        par_min_macs: tuning.par_min_macs,
    };
    let col_len = column_buffer_len_with(geom, tuning.tile_bytes);
    let (in_len, out_len) = (geom.in_len(), geom.out_len());
    if batch == 1 {
        let mut cols = cnn_tensor::try_zeroed(col_len, "the convolution column tile")?;
        return ctx.image(input, output, &mut cols);
    }
    output
        .par_chunks_mut(out_len)
        .zip(input.par_chunks(in_len))
        .try_for_each_init(
            || cnn_tensor::try_zeroed(col_len, "the convolution column tile"),
            |cols, (out, image)| match cols {
                Ok(cols) => ctx.image(image, out, cols),
                Err(e) => Err(KernelError::Alloc(e.clone())),
            },
        )
}

/// The length checks shared by every convolution entry point.
pub(crate) fn check_conv_args(
    geom: &Conv2dGeometry,
    input: &[f32],
    batch: usize,
    weights: &[f32],
    bias: Option<&[f32]>,
    output: &[f32],
) -> Result<(), KernelError> {
    check_conv_geometry(geom)?;
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
    check_len("weights", weights.len(), geom.weight_len())?;
    if let Some(b) = bias {
        check_len("bias", b.len(), geom.out_c)?;
    }
    Ok(())
}

/// Everything one image's computation needs, shared read-only across threads.
struct Ctx<'a> {
    geom: &'a Conv2dGeometry,
    weights: &'a [f32],
    bias: Option<&'a [f32]>,
    act: Activation,
    /// Pointwise or im2col (the depthwise path never gets here).
    path: Path,
    /// Whether to split the work of one image across threads.
    split: bool,
    par_min_macs: usize,
}

impl Ctx<'_> {
    /// One image: `image[in_c, in_h, in_w]` -> `out[out_c, out_h, out_w]`, lengths checked.
    fn image(&self, image: &[f32], out: &mut [f32], cols: &mut [f32]) -> Result<(), KernelError> {
        let g = self.geom;
        let (mg, k) = (g.out_c_per_group(), g.col_rows());
        let spatial = g.col_cols();
        let in_plane = g.in_h * g.in_w;
        for (grp, out_g) in out.chunks_exact_mut(mg * spatial).enumerate() {
            let w_g = &self.weights[grp * mg * k..(grp + 1) * mg * k];
            let b_g = self.bias.map(|b| &b[grp * mg..(grp + 1) * mg]);
            let Path::Im2col { rows } = self.path else {
                // Pointwise: the group's input channels are the column matrix [Cg, h*w].
                let cg = g.in_c_per_group();
                let x_g = &image[grp * cg * in_plane..(grp + 1) * cg * in_plane];
                self.gemm_block(w_g, b_g, x_g, spatial, out_g, 0)?;
                continue;
            };
            let mut oh0 = 0;
            while oh0 < g.out_h {
                let oh1 = (oh0 + rows).min(g.out_h);
                let n = (oh1 - oh0) * g.out_w;
                let tile = &mut cols[..k * n];
                fill_cols(
                    g,
                    image,
                    grp,
                    oh0,
                    oh1,
                    tile,
                    self.split && k * n >= 1 << 15,
                );
                self.gemm_block(w_g, b_g, tile, n, out_g, oh0 * g.out_w)?;
                oh0 = oh1;
            }
        }
        Ok(())
    }

    /// `out_g[:, col0 .. col0 + n] = w_g[Mg, K] x cols[K, n]`, then bias and activation on that
    /// block. `out_g` is the group's `[Mg, out_h*out_w]` output. When splitting, blocks of
    /// output channels (rows of `w_g` and `out_g`) go to different rayon tasks.
    fn gemm_block(
        &self,
        w_g: &[f32],
        b_g: Option<&[f32]>,
        cols: &[f32],
        n: usize,
        out_g: &mut [f32],
        col0: usize,
    ) -> Result<(), KernelError> {
        let spatial = self.geom.col_cols();
        let k = self.geom.col_rows();
        let mg = self.geom.out_c_per_group();
        let chunk_rows = self.chunk_rows(mg, k, n);
        let b = MatRef::row_major(cols, k, n, n);
        let run = |(ci, (out_rows, w_rows)): (usize, (&mut [f32], &[f32]))| {
            let m = w_rows.len() / k;
            gemm(
                MatRef::row_major(w_rows, m, k, k),
                b,
                MatMut {
                    data: &mut out_rows[col0..],
                    rows: m,
                    cols: n,
                    rs: spatial,
                },
            )?;
            let bias = b_g.map(|b| &b[ci * chunk_rows..ci * chunk_rows + m]);
            bias_act_rows(&mut out_rows[col0..], m, n, spatial, bias, self.act);
            Ok(())
        };
        if chunk_rows >= mg {
            return run((0, (out_g, w_g)));
        }
        out_g
            .par_chunks_mut(chunk_rows * spatial)
            .zip(w_g.par_chunks(chunk_rows * k))
            .enumerate()
            .try_for_each(run)
    }

    /// Output channels per rayon task of one GEMM: all of them unless splitting pays off, else
    /// about one block per thread, rounded up to a multiple of 8 (the GEMM micro-kernel height).
    fn chunk_rows(&self, mg: usize, k: usize, n: usize) -> usize {
        let macs = mg.saturating_mul(k).saturating_mul(n);
        if !self.split || macs < self.par_min_macs || mg < 16 {
            return mg.max(1);
        }
        let threads = rayon::current_num_threads().max(1);
        mg.div_ceil(threads).next_multiple_of(8).min(mg)
    }
}

/// The textbook im2col + GEMM convolution: the whole column matrix of an image is built (no
/// tiling, no pointwise or depthwise shortcut), one GEMM per image and group, single-threaded,
/// then bias and activation. Same contract as [`conv2d`]; kept as a benchmark baseline.
pub fn conv2d_im2col_plain(
    geom: &Conv2dGeometry,
    input: &[f32],
    batch: usize,
    weights: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
) -> Result<(), KernelError> {
    check_conv_args(geom, input, batch, weights, bias, output)?;
    let (k, spatial, mg) = (geom.col_rows(), geom.col_cols(), geom.out_c_per_group());
    let mut cols = cnn_tensor::try_zeroed(k * spatial, "the convolution column matrix")?;
    let images = input.chunks_exact(geom.in_len());
    for (image, out) in images.zip(output.chunks_exact_mut(geom.out_len())) {
        for (grp, out_g) in out.chunks_exact_mut(mg * spatial).enumerate() {
            fill_cols(geom, image, grp, 0, geom.out_h, &mut cols, false);
            let w_g = &weights[grp * mg * k..(grp + 1) * mg * k];
            gemm(
                MatRef::row_major(w_g, mg, k, k),
                MatRef::row_major(&cols, k, spatial, spatial),
                MatMut {
                    data: out_g,
                    rows: mg,
                    cols: spatial,
                    rs: spatial,
                },
            )?;
            let b_g = bias.map(|b| &b[grp * mg..(grp + 1) * mg]);
            bias_act_rows(out_g, mg, spatial, spatial, b_g, act);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{conv2d_direct, Conv2dSpec, Padding};

    fn spec(filters: usize, k: usize, s: usize, p: Padding, groups: usize) -> Conv2dSpec {
        Conv2dSpec {
            filters,
            kernel: [k, k],
            stride: [s, s],
            dilation: [1, 1],
            padding: p,
            groups,
        }
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        // A small deterministic pseudo-random sequence in [-1, 1].
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn paths_are_chosen() {
        let g = Conv2dGeometry::resolve(8, 5, 5, &spec(4, 1, 1, Padding::Valid, 1)).unwrap();
        assert_eq!(plan(&g, COL_TILE_BYTES), Path::Pointwise);
        assert_eq!(column_buffer_len(&g), 0);
        let g = Conv2dGeometry::resolve(8, 5, 5, &spec(16, 3, 1, Padding::Same, 8)).unwrap();
        assert_eq!(plan(&g, COL_TILE_BYTES), Path::Depthwise);
        assert_eq!(column_buffer_len(&g), 0);
        let g = Conv2dGeometry::resolve(3, 5, 5, &spec(4, 3, 1, Padding::Same, 1)).unwrap();
        assert_eq!(plan(&g, COL_TILE_BYTES), Path::Im2col { rows: 5 });
        assert_eq!(column_buffer_len(&g), 27 * 25);
    }

    #[test]
    fn column_buffer_is_bounded_for_a_1000x1000_k10_input() {
        // Untiled, the column matrix would be 100 x 10^6 floats = 400 MB.
        let g = Conv2dGeometry::resolve(1, 1000, 1000, &spec(2, 10, 1, Padding::Same, 1)).unwrap();
        let len = column_buffer_len(&g);
        assert!(len * 4 <= COL_TILE_BYTES, "{len}");
        assert_eq!(len % (100 * 1000), 0);
        let input = data(g.in_len(), 1);
        let weights = data(g.weight_len(), 2);
        let bias = [0.25, -0.5];
        let mut fast = vec![0.0; g.out_len()];
        let mut slow = vec![0.0; g.out_len()];
        conv2d(
            &g,
            &input,
            1,
            &weights,
            Some(&bias),
            Activation::Linear,
            &mut fast,
        )
        .unwrap();
        conv2d_direct(
            &g,
            &input,
            1,
            &weights,
            Some(&bias),
            Activation::Linear,
            &mut slow,
        )
        .unwrap();
        // 100-term sums of values in [-1, 1]: see the bound discussion in the proptests.
        assert!(max_abs_diff(&fast, &slow) < 1e-4 * 101.0);
    }

    #[test]
    fn a_single_row_wider_than_the_bound_still_runs() {
        let g = Conv2dGeometry::resolve(2, 4, 9, &spec(3, 3, 1, Padding::Same, 1)).unwrap();
        let tuning = ConvTuning {
            tile_bytes: 1,
            par_min_macs: 0,
        };
        assert_eq!(column_buffer_len_with(&g, 1), 18 * 9);
        let input = data(g.in_len() * 2, 3);
        let weights = data(g.weight_len(), 4);
        let mut fast = vec![0.0; g.out_len() * 2];
        let mut slow = vec![0.0; g.out_len() * 2];
        let act = Activation::Relu;
        conv2d_tuned(&g, &input, 2, &weights, None, act, &mut fast, tuning).unwrap();
        conv2d_direct(&g, &input, 2, &weights, None, act, &mut slow).unwrap();
        assert!(max_abs_diff(&fast, &slow) < 1e-5);
    }

    #[test]
    fn split_gemm_matches_for_one_image() {
        // 40 filters split into blocks of 8 across threads, with several tiles.
        for (k, groups, pad) in [(3, 1, Padding::Same), (1, 2, Padding::Valid)] {
            let g = Conv2dGeometry::resolve(4, 11, 13, &spec(40, k, 1, pad, groups)).unwrap();
            let tuning = ConvTuning {
                tile_bytes: 4 * g.col_rows() * g.out_w * 3,
                par_min_macs: 0,
            };
            let input = data(g.in_len(), 5);
            let weights = data(g.weight_len(), 6);
            let bias = data(40, 7);
            let mut fast = vec![0.0; g.out_len()];
            let mut slow = vec![0.0; g.out_len()];
            let act = Activation::Tanh;
            conv2d_tuned(&g, &input, 1, &weights, Some(&bias), act, &mut fast, tuning).unwrap();
            conv2d_direct(&g, &input, 1, &weights, Some(&bias), act, &mut slow).unwrap();
            assert!(max_abs_diff(&fast, &slow) < 1e-5);
        }
    }

    #[test]
    fn plain_matches_direct() {
        let g = Conv2dGeometry::resolve(4, 7, 6, &spec(6, 3, 2, Padding::Same, 2)).unwrap();
        let input = data(g.in_len() * 2, 8);
        let weights = data(g.weight_len(), 9);
        let bias = data(6, 10);
        let mut plain = vec![0.0; g.out_len() * 2];
        let mut slow = vec![0.0; g.out_len() * 2];
        let act = Activation::Sigmoid;
        conv2d_im2col_plain(&g, &input, 2, &weights, Some(&bias), act, &mut plain).unwrap();
        conv2d_direct(&g, &input, 2, &weights, Some(&bias), act, &mut slow).unwrap();
        assert!(max_abs_diff(&plain, &slow) < 1e-5);
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
    }
}
