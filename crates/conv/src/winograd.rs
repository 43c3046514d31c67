//! Winograd's minimal filtering, F(4x4, 3x3), for 3x3 convolutions with stride 1: each 4x4
//! block of output ("tile") is computed from a 6x6 patch of input with 36 multiplies per input
//! channel instead of 144. The arithmetic is three transforms around 36 matrix products:
//!
//! * weights, once (at packing time): `U = G g Gᵀ` (6x6) for every filter `g` (3x3), then, for
//!   each of the 36 positions `ξ`, the `[out_c x in_c]` matrix `U_ξ` packed into micro-kernel
//!   panels like a 1x1 convolution's weights;
//! * input, per tile and channel: `V = Bᵀ d B` of the 6x6 patch `d` (zero-padded at the
//!   borders), written straight into the column panels of the 36 matrices `V_ξ`, `[in_c x
//!   tiles]`;
//! * the 36 products `M_ξ = U_ξ V_ξ` on the packed GEMM (`crate::packed::multiply`);
//! * output, per tile and output channel: `Y = Aᵀ M A` (4x4), plus the bias, clipped at the
//!   image's edge, added to the output when asked (a fused residual), then the activation.
//!
//! The matrices are Lavin and Gray's for the points 0, ±1, ±2 (the transforms below are their
//! rows written out). The sums are reordered, so results differ from the direct convolution by
//! rounding; the tests bound the difference by `1e-4` of the output's magnitude. An infinite
//! input value turns the whole tiles that read it into NaN (the transforms subtract it from
//! itself), where the direct convolution gives infinities near it.
//!
//! The path uses rayon's threads as they are (it ignores `ConvTuning`'s thread count and byte
//! bounds); its buffers are its own, allocated per call.
//!
//! Work is cut into tasks of whole tile rows of one image (so each task writes a contiguous
//! range of every output plane), spread over rayon's threads, each with its own transformed
//! tiles. This module does not decide when the path is taken beyond what [`applies`] says
//! about the geometry; `crate::conv::path` does.

use crate::error::mul_len;
use crate::gemm::{MatMut, SharedOut};
use crate::microkernel::Kernel;
use crate::packed::{multiply, Orientation, PackedWeights};
use crate::{Activation, Conv2dGeometry, Conv2dSpec, KernelError, Padding};
use rayon::prelude::*;

/// Output rows and columns per tile.
pub const TILE: usize = 4;
/// Input rows and columns per patch (`TILE + 3 - 1`).
const PATCH: usize = 6;
/// Positions of a transformed tile: the number of matrix products.
pub const POSITIONS: usize = PATCH * PATCH;

/// Fewest input and output channels for which the path is taken: with fewer, the 36 products
/// are too thin to pay for the transforms.
pub const MIN_CHANNELS: usize = 32;
/// Fewest tiles per image: with fewer, the products' columns are mostly padding.
pub const MIN_TILES: usize = 16;

/// Bytes a task's transformed tiles and products aim at (both, for all 36 positions).
const TASK_BYTES: usize = 1 << 20;

/// Whether `geom` can and should run as Winograd F(4x4, 3x3): a 3x3 kernel, stride 1,
/// dilation 1, one group, at least [`MIN_CHANNELS`] input and output channels and
/// [`MIN_TILES`] tiles per image.
pub fn applies(geom: &Conv2dGeometry) -> bool {
    let tiles = geom.out_h.div_ceil(TILE) * geom.out_w.div_ceil(TILE);
    (geom.k_h, geom.k_w, geom.stride_h, geom.stride_w) == (3, 3, 1, 1)
        && (geom.dil_h, geom.dil_w) == (1, 1)
        && geom.groups == 1
        && geom.in_c >= MIN_CHANNELS
        && geom.out_c >= MIN_CHANNELS
        && tiles >= MIN_TILES
}

/// `Bᵀ d`: one column (or row) of an input patch transformed.
#[inline(always)]
fn input_1d(d: [f32; PATCH]) -> [f32; PATCH] {
    [
        4.0 * d[0] - 5.0 * d[2] + d[4],
        -4.0 * (d[1] + d[2]) + d[3] + d[4],
        4.0 * (d[1] - d[2]) - d[3] + d[4],
        2.0 * (d[3] - d[1]) - d[2] + d[4],
        2.0 * (d[1] - d[3]) - d[2] + d[4],
        4.0 * d[1] - 5.0 * d[3] + d[5],
    ]
}

/// `Aᵀ m`: one column (or row) of a product transformed back to 4 outputs.
#[inline(always)]
fn output_1d(m: [f32; PATCH]) -> [f32; TILE] {
    let (p1, m1) = (m[1] + m[2], m[1] - m[2]);
    let (p2, m2) = (m[3] + m[4], m[3] - m[4]);
    [
        m[0] + p1 + p2,
        m1 + 2.0 * m2,
        p1 + 4.0 * p2,
        m1 + 8.0 * m2 + m[5],
    ]
}

/// `G g`: one column (or row) of a filter transformed, in f64 (done once per weight).
fn filter_1d(g: [f64; 3]) -> [f64; PATCH] {
    [
        g[0] / 4.0,
        -(g[0] + g[1] + g[2]) / 6.0,
        -(g[0] - g[1] + g[2]) / 6.0,
        g[0] / 24.0 + g[1] / 12.0 + g[2] / 6.0,
        g[0] / 24.0 - g[1] / 12.0 + g[2] / 6.0,
        g[2],
    ]
}

/// `U = G g Gᵀ` of one 3x3 filter (row-major), as 36 values in position order.
fn filter_2d(g: &[f32]) -> [f32; POSITIONS] {
    let g: [f64; 9] = std::array::from_fn(|i| f64::from(g[i]));
    // Columns first: t[.][q] = G g[.][q].
    let cols: [[f64; PATCH]; 3] = std::array::from_fn(|q| filter_1d([g[q], g[3 + q], g[6 + q]]));
    let mut u = [0.0f32; POSITIONS];
    for i in 0..PATCH {
        let row = filter_1d([cols[0][i], cols[1][i], cols[2][i]]);
        for (j, &v) in row.iter().enumerate() {
            u[i * PATCH + j] = v as f32;
        }
    }
    u
}

/// A convolution's weights transformed and packed for [`conv`]: one packed `[out_c x in_c]`
/// matrix per position.
#[derive(Debug, Clone, PartialEq)]
pub struct WinogradWeights {
    in_c: usize,
    out_c: usize,
    positions: Vec<PackedWeights>,
}

impl WinogradWeights {
    /// Transforms and packs `weights` (`[out_c, in_c, 3, 3]`) for `kernel`.
    pub fn new(
        geom: &Conv2dGeometry,
        weights: &[f32],
        kernel: Kernel,
    ) -> Result<Self, KernelError> {
        kernel.check()?;
        let (c, k) = (geom.in_c, geom.out_c);
        crate::error::check_len("weights", weights.len(), mul_len("weights", k * c, 9)?)?;
        let len = mul_len("transformed weights", k, c)?;
        let mut u: Vec<Vec<f32>> = (0..POSITIONS)
            .map(|_| cnn_tensor::try_zeroed(len, "the transformed weights"))
            .collect::<Result<_, _>>()?;
        for (f, g) in weights.chunks_exact(9).enumerate() {
            for (p, &v) in filter_2d(g).iter().enumerate() {
                u[p][f] = v;
            }
        }
        // Each position's matrix is the weights of a 1x1 convolution from in_c to out_c.
        let spec = Conv2dSpec {
            filters: k,
            kernel: [1, 1],
            stride: [1, 1],
            dilation: [1, 1],
            padding: Padding::Valid,
            groups: 1,
        };
        let pointwise =
            Conv2dGeometry::resolve(c, 1, 1, &spec).map_err(|e| KernelError::Invalid {
                what: "winograd weights",
                reason: e.to_string(),
            })?;
        let positions = u
            .iter()
            .map(|m| {
                PackedWeights::with_orientation(&pointwise, m, Orientation::PixelsInVectors, kernel)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            in_c: c,
            out_c: k,
            positions,
        })
    }

    /// The kernel build the products run on.
    pub fn kernel(&self) -> Kernel {
        self.positions[0].kernel()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.positions.iter().map(PackedWeights::bytes).sum()
    }

    /// Whether these weights were made for a geometry of this shape.
    pub fn fits(&self, geom: &Conv2dGeometry) -> bool {
        applies(geom) && (geom.in_c, geom.out_c) == (self.in_c, self.out_c)
    }
}

/// The tiles of one image and how tasks cut them.
struct Tiling {
    /// Tile rows and columns.
    rows: usize,
    cols: usize,
    /// Tile rows per task.
    rows_per_task: usize,
    /// Height and width of the zero-padded input plane the patches are read from.
    padded_h: usize,
    padded_w: usize,
}

impl Tiling {
    fn new(g: &Conv2dGeometry, nr: usize) -> Self {
        let (rows, cols) = (g.out_h.div_ceil(TILE), g.out_w.div_ceil(TILE));
        // Transformed tiles and products of one tile, all positions, in bytes.
        let per_tile = POSITIONS * (g.in_c + g.out_c) * std::mem::size_of::<f32>();
        let tiles = (TASK_BYTES / per_tile.max(1)).max(nr);
        Self {
            rows,
            cols,
            rows_per_task: (tiles / cols.max(1)).clamp(1, rows.max(1)),
            padded_h: rows * TILE + 2,
            padded_w: cols * TILE + 2,
        }
    }
}

/// Values [`conv`] allocates for one image of `geom` on `kernel`: the zero-padded input plus
/// one task's transformed tiles, products and transform rows (what `cnn explain` reports).
pub fn buffer_len(geom: &Conv2dGeometry, kernel: Kernel) -> usize {
    let t = Tiling::new(geom, kernel.nr());
    let tiles = t.rows_per_task * t.cols;
    let panels = tiles.next_multiple_of(kernel.nr());
    let padded = geom.in_c * t.padded_h * t.padded_w;
    let rows = (PATCH * TILE * (t.cols + 1)).max(28 * t.cols);
    padded + POSITIONS * (geom.in_c * panels + geom.out_c * tiles) + rows
}

/// The convolution of `batch` images on the Winograd path: `output = act(conv + bias)`, or
/// with `onto`, `output = act(output + conv + bias)`. Geometry, weights and buffer lengths are
/// the caller's to have checked (`crate::conv`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv(
    g: &Conv2dGeometry,
    input: &[f32],
    batch: usize,
    w: &WinogradWeights,
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
    onto: bool,
) -> Result<(), KernelError> {
    let t = Tiling::new(g, w.kernel().nr());
    // Every image zero-padded, once: patches are then read without bounds cases. The buffer
    // is this thread's kept one; every value of it is written (zeros in the padding).
    let plane = t.padded_h * t.padded_w;
    let padded_len = mul_len("the padded input", batch * g.in_c, plane)?;
    crate::scratch::with_buffer(
        &crate::scratch::COPIES,
        padded_len,
        "the padded input",
        |padded| {
            pad_images(g, &t, input, padded);
            run_tasks(g, &t, padded, batch, w, bias, act, output, onto)
        },
    )
}

/// Writes every plane of `input` into `padded` (`padded_h x padded_w` planes) with zeros
/// around it: each value of `padded` once.
fn pad_images(g: &Conv2dGeometry, t: &Tiling, input: &[f32], padded: &mut [f32]) {
    let pw = t.padded_w;
    padded
        .par_chunks_mut(t.padded_h * pw)
        .zip(input.par_chunks(g.in_h * g.in_w))
        .for_each(|(dst, src)| {
            let (top, rest) = dst.split_at_mut(g.pad_top * pw);
            top.fill(0.0);
            let (middle, bottom) = rest.split_at_mut(g.in_h * pw);
            bottom.fill(0.0);
            for (row, s) in middle.chunks_exact_mut(pw).zip(src.chunks_exact(g.in_w)) {
                let (left, rest) = row.split_at_mut(g.pad_left);
                left.fill(0.0);
                let (mid, right) = rest.split_at_mut(g.in_w);
                mid.copy_from_slice(s);
                right.fill(0.0);
            }
        });
}

/// The tasks of [`conv`] over the padded images.
#[allow(clippy::too_many_arguments)]
fn run_tasks(
    g: &Conv2dGeometry,
    t: &Tiling,
    padded: &[f32],
    batch: usize,
    w: &WinogradWeights,
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
    onto: bool,
) -> Result<(), KernelError> {
    let kernel = w.kernel();
    let nr = kernel.nr();
    let plane = t.padded_h * t.padded_w;
    // Tasks of (nearly) equal height: 14 tile rows in 4 tasks are 4, 4, 3, 3 rows, not 4, 4, 4, 2.
    let tasks_per_image = t.rows.div_ceil(t.rows_per_task);
    let task_rows = |part: usize| {
        (
            part * t.rows / tasks_per_image,
            (part + 1) * t.rows / tasks_per_image,
        )
    };
    let tiles_per_task = t.rows.div_ceil(tasks_per_image) * t.cols;
    let panels = tiles_per_task.next_multiple_of(nr);
    // Per task: the transformed tiles, the products, and the transforms' rows.
    let scratch = buffer_len(g, kernel) - g.in_c * plane;
    let out = SharedOut::new(output, g.out_h * g.out_w);
    let few_tasks = batch * tasks_per_image < 2 * rayon::current_num_threads();
    let clamp = act.as_clamp();
    (0..batch * tasks_per_image)
        .into_par_iter()
        .try_for_each(|task| {
            // This worker's kept buffer (stale values are never read: every tile lane a task
            // uses is written before the products, which store only its tiles' columns).
            crate::scratch::with_buffer(
                &crate::scratch::TILES,
                scratch,
                "the Winograd tiles",
                |buf| {
                    let (n, part) = (task / tasks_per_image, task % tasks_per_image);
                    let (ty0, ty1) = task_rows(part);
                    let tiles = (ty1 - ty0) * t.cols;
                    let (v, rest) = buf.split_at_mut(POSITIONS * g.in_c * panels);
                    let (m, rows) = rest.split_at_mut(POSITIONS * g.out_c * tiles_per_task);
                    let image = &padded[n * g.in_c * plane..(n + 1) * g.in_c * plane];
                    transform_input(g, t, image, ty0..ty1, nr, panels, v, rows);
                    // The 36 products; spread over the threads too when the tasks alone cannot keep
                    // them busy (few tiles: a deep layer's small image).
                    let product =
                        |(weights, (cols, prod)): (&PackedWeights, (&[f32], &mut [f32]))| {
                            // Rows `tiles_per_task` apart whatever this task's tile count (the last task of
                            // an image may have fewer): where the output transform reads them.
                            let mut c = MatMut::new(prod, g.out_c, tiles, tiles_per_task)?;
                            let u = weights.panels(0, 0, g.out_c);
                            let pixels = Orientation::PixelsInVectors;
                            multiply(kernel, pixels, g.in_c, u, cols, &mut c, None, false);
                            Ok::<(), KernelError>(())
                        };
                    let work = w.positions.iter().zip(
                        v.chunks_exact(g.in_c * panels)
                            .zip(m.chunks_exact_mut(g.out_c * tiles_per_task)),
                    );
                    if few_tasks {
                        work.collect::<Vec<_>>()
                            .into_par_iter()
                            .try_for_each(product)?;
                    } else {
                        work.into_iter().try_for_each(product)?;
                    }
                    // The output rows of these tile rows: one contiguous range of every plane.
                    let (oy0, oy1) = (ty0 * TILE, (ty1 * TILE).min(g.out_h));
                    // SAFETY: tasks cover disjoint tile rows, so disjoint column ranges of the
                    // `[batch * out_c, out_h * out_w]` output; each block lives for this task only.
                    let mut block = unsafe {
                        out.block(n * g.out_c, g.out_c, oy0 * g.out_w, (oy1 - oy0) * g.out_w)?
                    };
                    let (stride, c) = (tiles_per_task, clamp);
                    transform_output(g, t, m, stride, tiles, ty0, bias, c, onto, &mut block, rows);
                    Ok(())
                },
            )
        })?;
    // Activations that are not clamps, over the whole output once.
    if clamp.is_none() {
        act.apply(output);
    }
    Ok(())
}

/// Transforms the patches of tile rows `rows` of one padded image into the column panels of
/// the 36 matrices `V_ξ` in `v`: position `ξ`'s matrix starts at `ξ * in_c * panels`, and tile
/// `i` of the task, channel `c`, is at `((i / nr) * in_c + c) * nr + i % nr` in it.
///
/// Per channel and tile row, in loops the compiler vectorises: the column transform of the six
/// input rows (`Bᵀ d` for every column at once), its output split by column modulo 4 into
/// `r[a][s][t]` (column `4t + s` of transformed row `a`), so that the six columns of tile `t`
/// are `r[a][0..4][t]` and `r[a][0..2][t + 1]`: contiguous runs over the tiles. Then the row
/// transform of those runs, stored straight into the panels (runs of consecutive tiles are
/// runs of consecutive lanes, cut at the panels' ends). `scratch` holds `24 * (cols + 1)`
/// values.
#[allow(clippy::too_many_arguments)]
fn transform_input(
    g: &Conv2dGeometry,
    t: &Tiling,
    image: &[f32],
    rows: std::ops::Range<usize>,
    nr: usize,
    panels: usize,
    v: &mut [f32],
    scratch: &mut [f32],
) {
    let (pw, cols) = (t.padded_w, t.cols);
    let plane = t.padded_h * pw;
    let stride = g.in_c * panels;
    // Column phases: tiles 0 ..= cols (the last tile reads two columns of the next).
    let span = cols + 1;
    let r = &mut scratch[..PATCH * TILE * span];
    for c in 0..g.in_c {
        let src = &image[c * plane..(c + 1) * plane];
        for ty in rows.clone() {
            let d: [&[f32]; PATCH] =
                std::array::from_fn(|k| &src[(ty * TILE + k) * pw..][..TILE * cols + 2]);
            // Column transform, split by phase: r[(a * 4 + s) * span + tt].
            for (tt, x0) in (0..cols).map(|tt| (tt, tt * TILE)) {
                for s in 0..TILE {
                    let x = x0 + s;
                    let o = input_1d([d[0][x], d[1][x], d[2][x], d[3][x], d[4][x], d[5][x]]);
                    for (a, &val) in o.iter().enumerate() {
                        r[(a * TILE + s) * span + tt] = val;
                    }
                }
            }
            // The last two columns (tile `cols`, phases 0 and 1).
            for s in 0..2 {
                let x = cols * TILE + s;
                let o = input_1d([d[0][x], d[1][x], d[2][x], d[3][x], d[4][x], d[5][x]]);
                for (a, &val) in o.iter().enumerate() {
                    r[(a * TILE + s) * span + cols] = val;
                }
            }
            // Row transform over runs of tiles that share a panel.
            let first = (ty - rows.start) * cols;
            let mut tx = 0;
            while tx < cols {
                let i = first + tx;
                let run = (nr - i % nr).min(cols - tx);
                let at = ((i / nr) * g.in_c + c) * nr + i % nr;
                for a in 0..PATCH {
                    let ph =
                        |s: usize, shift: usize| &r[(a * TILE + s) * span + tx + shift..][..run];
                    let (e0, e1, e2, e3, e4, e5) =
                        (ph(0, 0), ph(1, 0), ph(2, 0), ph(3, 0), ph(0, 1), ph(1, 1));
                    let base = a * PATCH * stride + at;
                    let (o0, rest) = v[base..].split_at_mut(stride);
                    let (o1, rest) = rest.split_at_mut(stride);
                    let (o2, rest) = rest.split_at_mut(stride);
                    let (o3, rest) = rest.split_at_mut(stride);
                    let (o4, o5) = rest.split_at_mut(stride);
                    let (o0, o1, o2) = (&mut o0[..run], &mut o1[..run], &mut o2[..run]);
                    let (o3, o4, o5) = (&mut o3[..run], &mut o4[..run], &mut o5[..run]);
                    for k in 0..run {
                        let o = input_1d([e0[k], e1[k], e2[k], e3[k], e4[k], e5[k]]);
                        (o0[k], o1[k], o2[k], o3[k], o4[k], o5[k]) =
                            (o[0], o[1], o[2], o[3], o[4], o[5]);
                    }
                }
                tx += run;
            }
        }
    }
}

/// Transforms the products back (`Aᵀ M A`) into the output rows of a task starting at tile row
/// `ty0`: `block` holds rows `4 * ty0 ..` of every output plane (one block row per channel),
/// `m` the 36 products (`[out_c x tiles]` each, `stride` tiles apart). Adds the bias, adds to
/// what the block holds when `onto`, then clamps. Per channel and tile row, in loops over the
/// row's tiles: the column transform of the six product rows into four (`s`), the row
/// transform of each into four outputs per tile, stored four columns apart. `scratch` holds
/// `28 * cols` values.
#[allow(clippy::too_many_arguments)]
fn transform_output(
    g: &Conv2dGeometry,
    t: &Tiling,
    m: &[f32],
    stride: usize,
    tiles: usize,
    ty0: usize,
    bias: Option<&[f32]>,
    clamp: Option<Option<(f32, f32)>>,
    onto: bool,
    block: &mut MatMut<'_>,
    scratch: &mut [f32],
) {
    let cols = t.cols;
    let per_position = g.out_c * stride;
    let (s, y) = scratch.split_at_mut(TILE * PATCH * cols);
    let y = &mut y[..TILE * cols];
    for k in 0..g.out_c {
        let b = bias.map_or(0.0, |b| b[k]);
        let out = block.row(k);
        for tr in 0..tiles / cols {
            let ty = ty0 + tr;
            let at = k * stride + tr * cols;
            let mrow = |p: usize| &m[p * per_position + at..][..cols];
            // s[a][q][tx] = sum_r Aᵀ[a][r] M[(r, q)][tx]
            for q in 0..PATCH {
                let rs: [&[f32]; PATCH] = std::array::from_fn(|r| mrow(r * PATCH + q));
                let [a0, a1, a2, a3] = split4(&mut s[q * cols..], PATCH * cols, cols);
                for tx in 0..cols {
                    let o = output_1d([
                        rs[0][tx], rs[1][tx], rs[2][tx], rs[3][tx], rs[4][tx], rs[5][tx],
                    ]);
                    (a0[tx], a1[tx], a2[tx], a3[tx]) = (o[0], o[1], o[2], o[3]);
                }
            }
            let height = TILE.min(g.out_h - ty * TILE);
            for a in 0..height {
                // The six columns of this output row's transform, then four outputs per tile.
                let sa: [&[f32]; PATCH] =
                    std::array::from_fn(|q| &s[a * PATCH * cols + q * cols..][..cols]);
                let [y0, y1, y2, y3] = split4(y, cols, cols);
                for tx in 0..cols {
                    let o = output_1d([
                        sa[0][tx], sa[1][tx], sa[2][tx], sa[3][tx], sa[4][tx], sa[5][tx],
                    ]);
                    (y0[tx], y1[tx], y2[tx], y3[tx]) = (o[0], o[1], o[2], o[3]);
                }
                let dst = &mut out[((ty - ty0) * TILE + a) * g.out_w..][..g.out_w];
                for (x, d) in dst.iter_mut().enumerate() {
                    let mut v = y[(x % TILE) * cols + x / TILE] + b;
                    if onto {
                        v += *d;
                    }
                    if let Some(Some((lo, hi))) = clamp {
                        v = crate::activation::at_most(crate::activation::at_least(v, lo), hi);
                    }
                    *d = v;
                }
            }
        }
    }
}

/// Four runs of `len` values, `step` apart, from the start of `buf`.
#[inline(always)]
fn split4(buf: &mut [f32], step: usize, len: usize) -> [&mut [f32]; TILE] {
    let (a, rest) = buf.split_at_mut(step);
    let (b, rest) = rest.split_at_mut(step);
    let (c, rest) = rest.split_at_mut(step);
    [
        &mut a[..len],
        &mut b[..len],
        &mut c[..len],
        &mut rest[..len],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv2d_direct;
    use proptest::prelude::*;

    /// A 3x3, stride 1 convolution of `filters` filters with padding `pad` on each side.
    fn spec3x3(filters: usize, pad: usize) -> Conv2dSpec {
        Conv2dSpec {
            filters,
            kernel: [3, 3],
            stride: [1, 1],
            dilation: [1, 1],
            padding: Padding::Explicit { h: pad, w: pad },
            groups: 1,
        }
    }

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]

        /// Every kernel build against the direct convolution, with bias, activation and a
        /// residual or not, on random sizes and paddings (up to 121 tiles: several tasks per
        /// image, the last one with fewer tile rows): within `1e-4` of the output's
        /// magnitude (the largest `|w| . |x|` sum plus bias and residual of the layer).
        #[test]
        fn winograd_matches_the_direct_convolution(
            in_c in 32..=64usize, out_c in 32..=40usize, h in 5..=44usize, w in 5..=44usize,
            batch in 1..=2usize, pad in 0..=2usize, act in 0..3usize, onto: bool, seed in 0u64..999,
        ) {
            let g = Conv2dGeometry::resolve(in_c, h, w, &spec3x3(out_c, pad)).unwrap();
            prop_assume!(applies(&g));
            let act = [Activation::Linear, Activation::Relu, Activation::Sigmoid][act];
            let x = values(batch * g.in_len(), seed);
            let wts = values(g.weight_len(), seed + 1);
            let bias = values(out_c, seed + 2);
            let residual = values(batch * g.out_len(), seed + 3);
            let mut want = vec![0.0; batch * g.out_len()];
            let linear = Activation::Linear;
            conv2d_direct(&g, &x, batch, &wts, Some(&bias), linear, &mut want).unwrap();
            if onto {
                want.iter_mut().zip(&residual).for_each(|(w, r)| *w += r);
            }
            let magnitude = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            act.apply(&mut want);
            for kernel in Kernel::runnable() {
                // Through the public entries: packed as production packs them, then run.
                let packed = PackedWeights::for_kernel(&g, &wts, kernel).unwrap();
                prop_assert!(packed.winograd_weights().is_some());
                let mut got = if onto { residual.clone() } else { vec![f32::NAN; want.len()] };
                let b = Some(&bias[..]);
                match onto {
                    true => crate::conv2d_packed_onto(&g, &x, batch, &packed, b, act, &mut got),
                    false => crate::conv2d_packed(&g, &x, batch, &packed, b, act, &mut got),
                }
                .unwrap();
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    prop_assert!(
                        (a - b).abs() <= 1e-4 * magnitude,
                        "{:?} output {}: {} vs {} (magnitude {})", kernel, i, a, b, magnitude
                    );
                }
            }
        }
    }

    /// A deep layer as ResNet has them, 256 channels 3x3 on 14x14 (one task, the products
    /// spread over the threads): within the same bound as the small ones.
    #[test]
    fn a_deep_layer_stays_within_the_bound() {
        let g = Conv2dGeometry::resolve(256, 14, 14, &spec3x3(256, 1)).unwrap();
        assert!(applies(&g));
        let (x, wts, bias) = (
            values(g.in_len(), 7),
            values(g.weight_len(), 8),
            values(256, 9),
        );
        let mut want = vec![0.0; g.out_len()];
        let linear = Activation::Linear;
        conv2d_direct(&g, &x, 1, &wts, Some(&bias), linear, &mut want).unwrap();
        let magnitude = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let packed = PackedWeights::new(&g, &wts).unwrap();
        let mut got = vec![f32::NAN; g.out_len()];
        crate::conv2d_packed(&g, &x, 1, &packed, Some(&bias), linear, &mut got).unwrap();
        let worst = got
            .iter()
            .zip(&want)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst <= 1e-4 * magnitude, "{worst} of {magnitude}");
    }

    /// A build the CPU does not run is refused before anything runs it (every build runs the
    /// portable ones).
    #[test]
    fn a_build_the_cpu_does_not_run_is_refused() {
        let g = Conv2dGeometry::resolve(32, 16, 16, &spec3x3(32, 1)).unwrap();
        let wts = values(g.weight_len(), 1);
        for kernel in [
            Kernel::Avx512,
            Kernel::Avx2,
            Kernel::Neon,
            Kernel::Portable,
            Kernel::PortableWide,
        ] {
            let packed = PackedWeights::for_kernel(&g, &wts, kernel);
            assert_eq!(packed.is_ok(), kernel.runs_here(), "{kernel:?}");
            let gemm = PackedWeights::with_orientation(&g, &wts, Orientation::ChannelsLast, kernel);
            assert_eq!(gemm.is_ok(), kernel.runs_here(), "{kernel:?}");
            if let Err(e) = packed {
                assert!(e.to_string().contains("does not run"), "{e}");
            }
        }
    }

    /// The 1D transforms compute a correlation: `Aᵀ [(G g) ⊙ (Bᵀ d)] = y`, `y[i] = sum_k g[k]
    /// d[i + k]`, for small integers (exact in f32 and f64).
    #[test]
    fn the_transforms_compute_a_correlation() {
        for seed in 0..50 {
            let d: [f32; PATCH] = std::array::from_fn(|i| ((i * 7 + seed * 3) % 11) as f32 - 5.0);
            let g: [f32; 3] = std::array::from_fn(|i| ((i * 5 + seed) % 7) as f32 - 3.0);
            let gd = filter_1d(g.map(f64::from));
            let bd = input_1d(d);
            let prod: [f32; PATCH] = std::array::from_fn(|i| gd[i] as f32 * bd[i]);
            let y = output_1d(prod);
            for (i, &yi) in y.iter().enumerate() {
                let want: f32 = (0..3).map(|k| g[k] * d[i + k]).sum();
                assert!(
                    (yi - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{seed} {i}: {yi} {want}"
                );
            }
        }
    }
}
