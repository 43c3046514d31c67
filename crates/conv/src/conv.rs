//! The production convolution: picks the cheapest correct path for a geometry and runs it.
//!
//! * Depthwise (`groups == in_c > 1`): the direct kernel of [`crate::depthwise_conv2d`]; as a
//!   GEMM every group would be a single-row product.
//! * Everything else: im2col + GEMM, `out[Mg, oh*ow] = W_g[Mg, K] x cols[K, oh*ow]`, on the
//!   packed GEMM: the weights are packed into micro-kernel panels once ([`PackedWeights`],
//!   which a model keeps between calls), in the [`Orientation`] they were packed for.
//! * With at least 16 input channels per group (not 1x1; [`Orientation::ChannelsLast`]) the
//!   column matrix is never unfolded: the images are copied channels-last and the GEMM reads
//!   the matrix in place ([`crate::channels_last`]), tile by tile of output pixels.
//! * Otherwise the column matrix is *tiled over output pixels* and unfolded straight into the
//!   GEMM's panel layout ([`crate::packed`]), so there is no separate packing copy. A tile is
//!   a run of output pixels (whole panels of 16, or 6, pixels; it may start and end inside an
//!   output row); its panels never exceed [`COL_TILE_BYTES`] (but always hold at least one
//!   panel), and below that bound they and the output block they produce are sized for the L2
//!   cache (about 1 MiB together). A 1x1 convolution (stride 1, no padding) needs no
//!   unfolding: its panels are copied from the input rows as they are.
//!
//! Bias and a clamping activation (none, ReLU, Clip) are applied as the GEMM stores its finished
//! values (the last reduction block's stores; [`crate::microkernel::Finish`]); sigmoid and tanh in one
//! pass over each GEMM block right after it is written.
//! The work of a call (on the channels-last path: of each round of copied images) is cut into
//! independent tasks `(image, group, column tile, block of output channels)`, each writing a
//! disjoint block of the output; at most `rayon::current_num_threads()` workers, each with its
//! own column panels (or output tile), claim tasks from a shared counter until none is left.
//! With enough images and groups a task is a whole image and group (or a cache-sized tile of
//! one); with fewer (batch 1) each image is cut further: into column tiles when the column
//! matrix is the larger GEMM operand (early layers), into blocks of output channels when the
//! weights are (deep layers), so that each worker reads only its own share of the larger
//! operand. In the second case the (small) column panels of the call are unfolded once, by all
//! workers in parallel, into one shared buffer (up to 16 MiB; beyond that each worker unfolds
//! the tiles it needs), instead of by every worker; the channels-last copy is always shared.
//!
//! [`conv2d_im2col_plain`] is the textbook version (whole column matrix, single thread, no
//! fast paths, `matrixmultiply`'s GEMM), kept as a benchmark baseline. This module does not
//! check its results; the tests compare it with [`crate::conv2d_direct`].

use crate::channels_last;
use crate::error::{check_conv_geometry, check_len, mul_len};
use crate::gemm::{bias_act, gemm, MatMut, MatRef, SharedOut};
use crate::im2col::fill_cols;
use crate::kept;
use crate::microkernel::{Finish, Kernel, MR, NR};
use crate::packed::{
    aligned_mut, column_panels_len, multiply, pack_columns, panel_rows, Orientation, PackedWeights,
    ALIGN_SLACK,
};
use crate::{depthwise_conv2d, Activation, Conv2dGeometry, KernelError};
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Upper bound of the production path's column panels (per worker thread), in bytes, unless a
/// single panel (16 or 6 output pixels) needs more, in which case a tile is exactly one panel.
pub const COL_TILE_BYTES: usize = 8 << 20;

/// What a tile aims at below that bound: its column panels plus the output block it produces
/// should fit in a core's L2 cache, so that the GEMM reads the columns im2col just wrote, and
/// adds into and the bias and activation pass reads the block it writes, from cache.
const CACHE_TILE_BYTES: usize = 1 << 20;

/// Calls with fewer multiply-accumulates than this run on the calling thread.
const PAR_MIN_MACS: usize = 1 << 20;

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
    /// Run the portable micro-kernel even when the CPU has AVX2+FMA.
    pub portable: bool,
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
            portable: false,
            channels_last_bytes: CHANNELS_LAST_BYTES,
        }
    }
}

/// How the production path runs a geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Depthwise,
    /// im2col + GEMM, at most `pixels` output pixels per column tile (a whole number of
    /// column panels).
    Im2col {
        pixels: usize,
        orientation: Orientation,
    },
    /// im2col + GEMM with the column matrix read in place from a channels-last copy of the
    /// input ([`crate::channels_last`]), at most `pixels` output pixels per tile.
    ChannelsLast {
        pixels: usize,
    },
}

impl Path {
    /// The largest tile, in output pixels.
    fn max_tile(self, geom: &Conv2dGeometry) -> usize {
        match self {
            Path::Im2col { pixels, .. } | Path::ChannelsLast { pixels } => pixels,
            Path::Depthwise => geom.col_cols(),
        }
    }

    /// The same path with tiles of `pixels` output pixels.
    fn with_tile(self, pixels: usize) -> Self {
        match self {
            Path::Depthwise => Path::Depthwise,
            Path::Im2col { orientation, .. } => Path::Im2col {
                pixels,
                orientation,
            },
            Path::ChannelsLast { .. } => Path::ChannelsLast { pixels },
        }
    }

    /// Output channels per weight panel and output pixels per column panel (1 and 1 for the
    /// depthwise path, which has no panels).
    fn panels(self) -> (usize, usize) {
        match self {
            Path::Depthwise => (1, 1),
            Path::Im2col { orientation, .. } => {
                (orientation.weight_panel(), orientation.column_panel())
            }
            Path::ChannelsLast { .. } => (NR, MR),
        }
    }
}

/// The path of `geom` with weights packed in `orientation`.
fn plan(geom: &Conv2dGeometry, orientation: Orientation, tuning: &ConvTuning) -> Path {
    if geom.is_depthwise() {
        Path::Depthwise
    } else if orientation == Orientation::ChannelsLast {
        Path::ChannelsLast {
            pixels: channels_last_tile_pixels(geom, tuning),
        }
    } else {
        Path::Im2col {
            pixels: tile_pixels(geom, orientation, tuning),
            orientation,
        }
    }
}

/// Output pixels per tile of the channels-last path: as many as let the input rows they read
/// (all channels of `stride_h` padded input rows per output row) plus their output tile fit the
/// cache target, and the output tile the buffer bound; whole panels of 6 (at least one); the
/// whole image when it fits.
fn channels_last_tile_pixels(geom: &Conv2dGeometry, tuning: &ConvTuning) -> usize {
    let f32_bytes = std::mem::size_of::<f32>();
    let padded_w = geom.in_w + geom.pad_left + geom.pad_right;
    let input_per_pixel = (geom.stride_h * padded_w * geom.in_c).div_ceil(geom.out_w.max(1));
    let per_pixel = input_per_pixel.saturating_add(NR).saturating_mul(f32_bytes);
    let pixels = (tuning.cache_bytes / per_pixel.max(1)).min(tuning.tile_bytes / (NR * f32_bytes));
    let spatial = geom.col_cols();
    if pixels >= spatial {
        spatial.next_multiple_of(MR).max(MR)
    } else {
        (pixels / MR * MR).max(MR)
    }
}

/// Output pixels per column tile: as many as let the tile's column panels fit the buffer bound
/// and its panels plus the output block it produces fit the cache target, rounded down to whole
/// column panels (at least one); the whole image when it fits.
fn tile_pixels(geom: &Conv2dGeometry, orientation: Orientation, tuning: &ConvTuning) -> usize {
    let f32_bytes = std::mem::size_of::<f32>();
    let panel = orientation.column_panel();
    let (k, mg) = (geom.col_rows(), geom.out_c_per_group());
    let col_bytes = k.saturating_mul(f32_bytes).max(1);
    let tile_bytes = k.saturating_add(mg).saturating_mul(f32_bytes).max(1);
    let pixels = (tuning.tile_bytes / col_bytes).min(tuning.cache_bytes / tile_bytes);
    let spatial = geom.col_cols();
    if pixels >= spatial {
        spatial.next_multiple_of(panel).max(panel)
    } else {
        (pixels / panel * panel).max(panel)
    }
}

/// Elements of the column buffers [`conv2d`] allocates for one image of `geom` (batch 1):
/// * unfolded panels (few input channels per group, 1x1): per worker thread (at most
///   `rayon::current_num_threads()` of them), the column panels of one tile, `col_rows x
///   pixels_per_tile`, where a tile holds as many output pixels as fit in [`COL_TILE_BYTES`]
///   (at least one panel of 16 or 6 pixels; in practice fewer, sized for the L2 cache), plus
///   scratch for one row of the tile's column matrix and 15 values of alignment slack;
/// * channels-last ([`crate::channels_last`]): the zero-padded channels-last copy of the
///   image, read in place by all workers, plus one worker's output tile (16 channels of a
///   tile's pixels) and slack;
/// * 0 for the depthwise path, which needs none.
pub fn column_buffer_len(geom: &Conv2dGeometry) -> usize {
    let path = plan(geom, Orientation::of(geom), &ConvTuning::default());
    let image = match path {
        Path::ChannelsLast { .. } => channels_last::image_len(geom).unwrap_or(usize::MAX),
        _ => 0,
    };
    image.saturating_add(worker_buffer_len(geom, path))
}

/// A worker's buffer: for unfolded panels, the column panels of a tile plus
/// [`row_scratch_len`]; for the channels-last path, the output tile; plus the slack that lets
/// them start on a cache line. 0 for the depthwise path.
fn worker_buffer_len(geom: &Conv2dGeometry, path: Path) -> usize {
    match path {
        Path::Depthwise => 0,
        Path::Im2col {
            pixels,
            orientation,
        } => {
            column_panels_len(geom.col_rows(), pixels, orientation)
                + row_scratch_len(geom, orientation, pixels)
                + ALIGN_SLACK
        }
        Path::ChannelsLast { pixels } => channels_last::tile_len(pixels) + ALIGN_SLACK,
    }
}

/// Scratch for one row of a tile's column matrix: the whole output rows a tile of `pixels`
/// pixels touches (it may start in the middle of one), padded to whole panels.
fn row_scratch_len(geom: &Conv2dGeometry, orientation: Orientation, pixels: usize) -> usize {
    pixels.next_multiple_of(orientation.column_panel()) + 2 * geom.out_w
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
    if geom.is_depthwise() {
        return depthwise_conv2d(geom, input, batch, weights, bias, act, output);
    }
    let packed = PackedWeights::new(geom, weights)?;
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
    check_conv_geometry(geom)?;
    if !weights.fits(geom) {
        return Err(KernelError::Invalid {
            what: "packed weights",
            reason: "they were packed for a convolution of another shape".into(),
        });
    }
    if let Some(raw) = weights.depthwise() {
        return depthwise_conv2d(geom, input, batch, raw, bias, act, output);
    }
    check_conv_args_unpacked(geom, input, batch, bias, output)?;
    let path = plan(geom, weights.orientation(), &tuning);
    if batch == 0 {
        return Ok(());
    }
    let threads = tuning
        .threads
        .unwrap_or_else(rayon::current_num_threads)
        .max(1);
    let kernel = Kernel::detect(tuning.portable);
    let call = Call {
        geom,
        weights,
        bias,
        act,
        kernel,
        path,
        threads,
        tuning,
    };
    if let Path::ChannelsLast { .. } = path {
        return call.channels_last(input, batch, output);
    }
    let sched = Schedule::new(geom, path, batch, threads, tuning.par_min_macs);
    let mut shared_buf = Vec::new();
    let source = match shared_columns(geom, input, batch, &sched, weights, &mut shared_buf)? {
        Some(shared) => Source::Shared(shared),
        None => Source::Unfold { input },
    };
    call.execute(sched, source, batch, output)
}

/// The parts of a call every batch of its tasks shares.
struct Call<'a> {
    geom: &'a Conv2dGeometry,
    weights: &'a PackedWeights,
    bias: Option<&'a [f32]>,
    act: Activation,
    kernel: Kernel,
    path: Path,
    /// Workers to plan for (`tuning.threads`, or rayon's).
    threads: usize,
    tuning: ConvTuning,
}

/// Bound of the channels-last copies of the images of a call held at once, in bytes (at least
/// one image is).
const CHANNELS_LAST_BYTES: usize = 16 << 20;

impl Call<'_> {
    /// The channels-last path: the images, as many at a time as fit in `channels_last_bytes`
    /// ([`CHANNELS_LAST_BYTES`]), are copied channels-last (in parallel), then their tasks run
    /// reading that copy in place.
    fn channels_last(
        &self,
        input: &[f32],
        batch: usize,
        output: &mut [f32],
    ) -> Result<(), KernelError> {
        let g = self.geom;
        let too_large = || KernelError::Invalid {
            what: "input",
            reason: "its padded channels-last copy overflows the address space".into(),
        };
        let stride = channels_last::image_len(g).ok_or_else(too_large)?;
        let image_bytes = stride.saturating_mul(std::mem::size_of::<f32>()).max(1);
        let per_round = (self.tuning.channels_last_bytes / image_bytes).clamp(1, batch);
        let len = stride.checked_mul(per_round).ok_or_else(too_large)?;
        let taps = channels_last::tap_offsets(g);
        let what = "the channels-last copy of the input";
        kept::with_buffer(&kept::COPIES, len, what, |buf| {
            let rounds = input
                .chunks(per_round * g.in_len())
                .zip(output.chunks_mut(per_round * g.out_len()));
            for (images, out) in rounds {
                let count = images.len() / g.in_len().max(1);
                let copies = &mut buf[..count * stride];
                let parallel = self.threads > 1 && g.in_len() >= PAR_MIN_COPY;
                for (image, copy) in images.chunks(g.in_len()).zip(copies.chunks_mut(stride)) {
                    channels_last::to_channels_last(g, image, copy, parallel, self.kernel);
                }
                let min_macs = self.tuning.par_min_macs;
                let sched = Schedule::new(g, self.path, count, self.threads, min_macs);
                let source = Source::InPlace(CopiedImages {
                    images: copies,
                    stride,
                    taps: &taps,
                });
                self.execute(sched, source, count, out)?;
            }
            Ok(())
        })
    }

    /// Runs the tasks of `sched` for `batch` images whose column matrices come from `source`,
    /// into `output`, on `sched.workers` workers, each with its own buffer.
    fn execute(
        &self,
        sched: Schedule,
        source: Source<'_>,
        batch: usize,
        output: &mut [f32],
    ) -> Result<(), KernelError> {
        let buf_len = match source {
            Source::Shared(_) => 0,
            _ => worker_buffer_len(self.geom, self.path.with_tile(sched.tile_len)),
        };
        let ctx = Ctx {
            call: self,
            sched,
            source,
        };
        let out = SharedOut::new(output, self.geom.col_cols());
        let tasks = Tasks {
            next: AtomicUsize::new(0),
            total: sched.tasks(batch, self.geom.groups),
        };
        // Each worker's buffer is its thread's kept one (allocated, in parallel, when too short).
        let what = "the convolution column tiles";
        let work = || {
            kept::with_buffer(&kept::TILES, buf_len, what, |buf| {
                ctx.run(&out, &tasks, buf)
            })
        };
        if sched.workers <= 1 {
            return work();
        }
        (0..sched.workers).into_par_iter().try_for_each(|_| work())
    }
}

/// Images with fewer values than this are copied channels-last on the calling thread.
const PAR_MIN_COPY: usize = 1 << 14;

/// Where the tasks of a call find their column matrices.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// Unfolded by each worker, from the images `input`, into its own panels.
    Unfold { input: &'a [f32] },
    /// Unfolded once for all workers.
    Shared(SharedColumns<'a>),
    /// Read in place from padded channels-last images.
    InPlace(CopiedImages<'a>),
}

/// The padded channels-last copies of a round's images, `stride` values apart, and the tap
/// offsets the kernel reads them at ([`crate::channels_last`]).
#[derive(Clone, Copy)]
struct CopiedImages<'a> {
    images: &'a [f32],
    stride: usize,
    taps: &'a [usize],
}

impl<'a> CopiedImages<'a> {
    /// The copy of image `n` of the round.
    fn image(&self, n: usize) -> &'a [f32] {
        &self.images[n * self.stride..(n + 1) * self.stride]
    }
}

/// Where one worker's tasks find their column matrices.
enum Columns<'a, 'b> {
    /// Unfolded once for all workers.
    Shared(SharedColumns<'a>),
    /// Unfolded by this worker into its own buffer, with a scratch row.
    Own {
        input: &'a [f32],
        panels: &'b mut [f32],
        row: &'b mut [f32],
    },
    /// Read in place; the worker's buffer holds its output tile.
    InPlace {
        copies: CopiedImages<'a>,
        tile: &'b mut [f32],
    },
}

/// Bound of the column panels unfolded once and shared by all workers, in bytes.
const SHARED_COLS_BYTES: usize = 16 << 20;

/// The column panels of every tile of a call, unfolded once: tile `t` (numbered like the tasks'
/// `(image, group, tile)`) at `data[t * stride..]`.
#[derive(Clone, Copy)]
struct SharedColumns<'a> {
    data: &'a [f32],
    stride: usize,
}

/// When the workers split one image's output channels between them (so each would otherwise
/// unfold the same tiles), unfolds all tiles of the call once, in parallel, into `buf`, within
/// [`SHARED_COLS_BYTES`]; otherwise (or above that bound) `None`, and each worker unfolds its
/// own tiles.
fn shared_columns<'a>(
    geom: &Conv2dGeometry,
    input: &[f32],
    batch: usize,
    sched: &Schedule,
    weights: &PackedWeights,
    buf: &'a mut Vec<f32>,
) -> Result<Option<SharedColumns<'a>>, KernelError> {
    if sched.workers <= 1 || sched.chunks <= 1 {
        return Ok(None);
    }
    let orientation = weights.orientation();
    // Each tile's panels start on a cache line (16 floats).
    let stride =
        column_panels_len(geom.col_rows(), sched.tile_len, orientation).next_multiple_of(16);
    let count = batch * geom.groups * sched.tiles;
    let len = match stride.checked_mul(count) {
        Some(len) if len.saturating_mul(std::mem::size_of::<f32>()) <= SHARED_COLS_BYTES => len,
        _ => return Ok(None),
    };
    *buf = cnn_tensor::try_zeroed(len + ALIGN_SLACK, "the shared convolution column panels")?;
    let data = aligned_mut(buf, len);
    // Jobs: each tile's reduction rows cut into one range per worker, so that a call with a
    // single tile (a deep layer's whole image) is unfolded by all workers too.
    let (k, tiles, groups) = (geom.col_rows(), sched.tiles, geom.groups);
    let cuts: Vec<usize> = (1..sched.workers).map(|i| i * k / sched.workers).collect();
    let bounds: Vec<usize> = std::iter::once(0)
        .chain(cuts.iter().copied())
        .chain([k])
        .collect();
    let mut jobs = Vec::new();
    for (t, tile_buf) in data.chunks_mut(stride).enumerate() {
        let tile = t % tiles;
        let p0 = tile * sched.tile_len;
        let p1 = (p0 + sched.tile_len).min(geom.col_cols());
        let ranges = panel_rows(tile_buf, k, p1 - p0, orientation, &cuts);
        for (pieces, rows) in ranges.into_iter().zip(bounds.windows(2)) {
            jobs.push((t, p0..p1, rows[0]..rows[1], pieces));
        }
    }
    jobs.into_par_iter().try_for_each_init(
        || {
            cnn_tensor::try_zeroed(
                row_scratch_len(geom, orientation, sched.tile_len),
                "im2col scratch",
            )
        },
        |row, (t, pixels, rows, mut pieces)| -> Result<(), KernelError> {
            let row = row.as_mut().map_err(|e| KernelError::Alloc(e.clone()))?;
            let (grp, n) = (t / tiles % groups, t / (tiles * groups));
            let image = &input[n * geom.in_len()..(n + 1) * geom.in_len()];
            pack_columns(
                geom,
                image,
                grp,
                pixels,
                rows,
                orientation,
                &mut pieces,
                row,
            );
            Ok(())
        },
    )?;
    Ok(Some(SharedColumns { data, stride }))
}

/// The task counter of one call: workers take the next unclaimed task until all are taken.
struct Tasks {
    next: AtomicUsize,
    total: usize,
}

impl Tasks {
    /// Claims a task; every index in `0..total` is handed out exactly once.
    fn claim(&self) -> Option<usize> {
        // Relaxed is enough: the counter only has to hand out distinct indices; the outputs
        // are published to the caller by rayon's join at the end of the parallel loop.
        let task = self.next.fetch_add(1, Ordering::Relaxed);
        (task < self.total).then_some(task)
    }
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
    check_len("weights", weights.len(), geom.weight_len())?;
    check_conv_args_unpacked(geom, input, batch, bias, output)
}

/// [`check_conv_args`] without the weights, for a geometry already checked.
fn check_conv_args_unpacked(
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

/// How one call is cut into tasks. Task `i` is `(image, group, tile, chunk)` with the chunk
/// varying fastest, then the tile, then the group; workers claim tasks in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Schedule {
    /// Column tiles per image and group.
    tiles: usize,
    /// Output pixels per tile (whole column panels).
    tile_len: usize,
    /// Blocks of output channels per image, group and tile.
    chunks: usize,
    /// Output channels per block.
    chunk_rows: usize,
    /// Workers the tasks are dealt to.
    workers: usize,
}

impl Schedule {
    fn new(
        geom: &Conv2dGeometry,
        path: Path,
        batch: usize,
        threads: usize,
        par_min_macs: usize,
    ) -> Self {
        let (mg, spatial) = (geom.out_c_per_group(), geom.col_cols());
        // The largest tile the buffer bounds allow, in output pixels.
        let max_tile = path.max_tile(geom);
        // Tiles are whole column panels, blocks of output channels whole weight panels.
        let (w_panel, c_panel) = path.panels();
        let mut tiles = spatial.div_ceil(max_tile.max(1));
        let mut chunks = 1;
        let base = batch.saturating_mul(geom.groups);
        let work = geom.macs().saturating_mul(batch as u64);
        let parallel = threads > 1 && work >= par_min_macs as u64;
        // Two tasks per worker, so that one slow task does not leave a worker idle for long.
        let want = threads.saturating_mul(2);
        if parallel && base.saturating_mul(tiles) < want {
            let pieces = want.div_ceil(base);
            if mg > spatial {
                // The weights are the larger operand: split the output channels.
                chunks = pieces.min(mg.div_ceil(w_panel));
            } else {
                tiles = tiles.max(pieces.min(spatial.div_ceil(c_panel)));
            }
        }
        // A few tasks per worker: make their number a multiple of the workers' (5 tiles on 2
        // workers would leave one idle for a fifth of the call), as far as whole panels allow.
        let max_tiles = spatial.div_ceil(c_panel);
        if parallel && chunks == 1 && base.saturating_mul(tiles) < want.saturating_mul(4) {
            while base.saturating_mul(tiles) % threads != 0 && tiles < max_tiles {
                tiles += 1;
            }
        }
        let tile_len = spatial.div_ceil(tiles).next_multiple_of(c_panel).max(1);
        let chunk_rows = mg.div_ceil(chunks).next_multiple_of(w_panel).min(mg).max(1);
        let sched = Self {
            tiles: spatial.div_ceil(tile_len),
            tile_len,
            chunks: mg.div_ceil(chunk_rows),
            chunk_rows,
            workers: 1,
        };
        let total = sched.tasks(batch, geom.groups);
        Self {
            workers: if parallel { threads.min(total) } else { 1 },
            ..sched
        }
    }

    /// The number of tasks of a call.
    fn tasks(&self, batch: usize, groups: usize) -> usize {
        batch * groups * self.tiles * self.chunks
    }
}

/// Everything the tasks of one batch of a call share (read-only).
struct Ctx<'a> {
    call: &'a Call<'a>,
    sched: Schedule,
    source: Source<'a>,
}

impl Ctx<'_> {
    /// Claims and runs tasks until none is left, writing into `out` (the output seen as
    /// `[batch*out_c, out_h*out_w]`). The column matrices are the shared panels, or read in
    /// place (with `buf` holding this worker's output tile), or else unfolded into `buf` (this
    /// worker's panels, then scratch for one row of the column matrix); a tile is not unfolded
    /// again when the previous task of this worker used the same one.
    fn run(&self, out: &SharedOut<'_>, tasks: &Tasks, buf: &mut [f32]) -> Result<(), KernelError> {
        let call = self.call;
        let g = call.geom;
        let s = &self.sched;
        let (mg, k) = (g.out_c_per_group(), g.col_rows());
        let orientation = call.weights.orientation();
        let mut cols = match self.source {
            Source::Shared(shared) => Columns::Shared(shared),
            Source::Unfold { input } => {
                let len = buf.len() - ALIGN_SLACK;
                let buf = aligned_mut(buf, len);
                let scratch = row_scratch_len(g, orientation, s.tile_len);
                let (panels, row) = buf.split_at_mut(len - scratch);
                Columns::Own { input, panels, row }
            }
            Source::InPlace(copies) => {
                let len = buf.len() - ALIGN_SLACK;
                Columns::InPlace {
                    copies,
                    tile: aligned_mut(buf, len),
                }
            }
        };
        let mut unfolded = None;
        while let Some(task) = tasks.claim() {
            let chunk = task % s.chunks;
            let tile = task / s.chunks % s.tiles;
            let grp = task / (s.chunks * s.tiles) % g.groups;
            let n = task / (s.chunks * s.tiles * g.groups);
            // The block's output pixels and channels.
            let p0 = tile * s.tile_len;
            let ncols = s.tile_len.min(g.col_cols() - p0);
            let m0 = chunk * s.chunk_rows;
            let m = s.chunk_rows.min(mg - m0);
            let first = grp * mg + m0;
            // SAFETY: the block is rows n*out_c + first .. + m, columns p0 .. p0 + ncols.
            // Distinct tasks have distinct (image, group, tile, chunk) and so disjoint row ranges
            // (image, group, chunk) or disjoint column ranges (tile); `claim` hands every task to
            // exactly one worker, and the block lives only until the end of this iteration.
            let mut c = unsafe { out.block(n * g.out_c + first, m, p0, ncols)? };
            let w = call.weights.panels(grp, m0, m);
            let bias = call.bias.map(|b| &b[first..first + m]);
            // Bias and a clamping activation are fused into the stores of the GEMM's results.
            let finish = Finish::of(bias, call.act);
            match &mut cols {
                Columns::Shared(sh) => {
                    let t = (n * g.groups + grp) * s.tiles + tile;
                    let panels = &sh.data[t * sh.stride..(t + 1) * sh.stride];
                    multiply(call.kernel, orientation, k, w, panels, &mut c, finish);
                }
                Columns::Own { input, panels, row } => {
                    if unfolded != Some((n, grp, tile)) {
                        let image = &input[n * g.in_len()..(n + 1) * g.in_len()];
                        // One range of reduction rows: all of them.
                        for mut pieces in panel_rows(panels, k, ncols, orientation, &[]) {
                            let (pixels, rows) = (p0..p0 + ncols, 0..k);
                            pack_columns(
                                g,
                                image,
                                grp,
                                pixels,
                                rows,
                                orientation,
                                &mut pieces,
                                row,
                            );
                        }
                        unfolded = Some((n, grp, tile));
                    }
                    multiply(call.kernel, orientation, k, w, panels, &mut c, finish);
                }
                Columns::InPlace { copies, tile } => {
                    let (image, taps) = (copies.image(n), copies.taps);
                    let (kernel, out) = (call.kernel, &mut c);
                    channels_last::multiply(kernel, g, image, grp, p0, taps, w, tile, out, finish);
                }
            }
            if finish.is_none() {
                bias_act(&mut c, bias, call.act);
            }
        }
        Ok(())
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
            fill_cols(geom, image, grp, 0, geom.out_h, &mut cols);
            let w_g = &weights[grp * mg * k..(grp + 1) * mg * k];
            let mut c = MatMut::new(out_g, mg, spatial, spatial)?;
            gemm(
                MatRef::row_major(w_g, mg, k, k),
                MatRef::row_major(&cols, k, spatial, spatial),
                &mut c,
            )?;
            bias_act(&mut c, bias.map(|b| &b[grp * mg..(grp + 1) * mg]), act);
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
        // 1x1: no unfolding, but still panels (8 x 25 pixels, padded to 32): 8*32 values, plus
        // scratch for one row of the tile's matrix (32 pixels + two output rows of 5), plus
        // alignment slack.
        let g = Conv2dGeometry::resolve(8, 5, 5, &spec(4, 1, 1, Padding::Valid, 1)).unwrap();
        assert_eq!(
            plan(&g, Orientation::of(&g), &ConvTuning::default()),
            Path::Im2col {
                pixels: 32,
                orientation: Orientation::PixelsInVectors
            }
        );
        assert_eq!(column_buffer_len(&g), 8 * 32 + 32 + 10 + ALIGN_SLACK);
        let g = Conv2dGeometry::resolve(8, 5, 5, &spec(16, 3, 1, Padding::Same, 8)).unwrap();
        assert_eq!(
            plan(&g, Orientation::of(&g), &ConvTuning::default()),
            Path::Depthwise
        );
        assert_eq!(column_buffer_len(&g), 0);
        let g = Conv2dGeometry::resolve(3, 5, 5, &spec(4, 3, 1, Padding::Same, 1)).unwrap();
        assert_eq!(
            plan(&g, Orientation::of(&g), &ConvTuning::default()),
            Path::Im2col {
                pixels: 32,
                orientation: Orientation::PixelsInVectors
            }
        );
        assert_eq!(column_buffer_len(&g), 27 * 32 + 32 + 10 + ALIGN_SLACK);
    }

    #[test]
    fn orientation_follows_padding_and_store_cost() {
        use Orientation::{ChannelsInVectors as Channels, PixelsInVectors as Pixels};
        let cases = [
            // 64 channels on 56x56 as unfolded panels: 3136 pixels are 196 whole panels of 16.
            ((64, 3136, 576), Pixels),
            // 512 channels on 7x7: 49 pixels would pad to 64, but only to 54 as panels of 6.
            ((512, 49, 4608), Channels),
            // 32 channels (36 as panels of 6): with a reduction of 27 or 288 steps the
            // transposed stores cost more than the padding saves, with 4608 they do not.
            ((32, 12544, 27), Pixels),
            ((32, 12544, 288), Pixels),
            ((32, 12544, 4608), Channels),
        ];
        for ((m, n, k), want) in cases {
            assert_eq!(Orientation::for_shape(m, n, k), want, "{m} x {n}, K = {k}");
        }
    }

    #[test]
    fn channels_last_from_16_channels_per_group() {
        let orientation = |in_c, filters, size, k, groups| {
            let g = Conv2dGeometry::resolve(
                in_c,
                size,
                size,
                &spec(filters, k, 1, Padding::Same, groups),
            )
            .unwrap();
            let packed = PackedWeights::new(&g, &vec![0.0; g.weight_len()]).unwrap();
            assert_eq!(packed.orientation(), Orientation::of(&g));
            packed.orientation()
        };
        assert_eq!(orientation(64, 64, 56, 3, 1), Orientation::ChannelsLast);
        assert_eq!(orientation(512, 512, 7, 3, 1), Orientation::ChannelsLast);
        assert_eq!(orientation(32, 32, 9, 5, 2), Orientation::ChannelsLast);
        // Fewer channels per group: unfolded panels, in the orientation that costs least.
        assert_eq!(orientation(15, 64, 56, 3, 1), Orientation::PixelsInVectors);
        assert_eq!(orientation(32, 32, 9, 5, 4), Orientation::PixelsInVectors);
        assert_eq!(
            orientation(15, 512, 7, 5, 1),
            Orientation::ChannelsInVectors
        );
        assert_eq!(orientation(8, 512, 7, 3, 1), Orientation::PixelsInVectors);
        // 1x1 needs no unfolding; its panels are copies of input rows.
        assert_eq!(orientation(64, 256, 56, 1, 1), Orientation::PixelsInVectors);
    }

    #[test]
    fn column_buffer_is_bounded_for_a_1000x1000_k10_input() {
        // Untiled, the column matrix would be 100 x 10^6 floats = 400 MB.
        let g = Conv2dGeometry::resolve(1, 1000, 1000, &spec(2, 10, 1, Padding::Same, 1)).unwrap();
        let len = column_buffer_len(&g);
        assert!(len * 4 <= COL_TILE_BYTES, "{len}");
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
    fn tiles_smaller_than_a_row_still_run() {
        // Rows of 9 pixels, tiles of one panel (16 pixels): tiles start and end inside rows.
        let g = Conv2dGeometry::resolve(2, 4, 9, &spec(3, 3, 1, Padding::Same, 1)).unwrap();
        let tuning = ConvTuning {
            tile_bytes: 1,
            par_min_macs: 0,
            threads: Some(3),
            ..ConvTuning::default()
        };
        assert_eq!(tile_pixels(&g, Orientation::PixelsInVectors, &tuning), 16);
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
    fn schedules() {
        let g = Conv2dGeometry::resolve(64, 56, 56, &spec(64, 3, 1, Padding::Same, 1)).unwrap();
        // Channels-last (the production path here): per output pixel, 58 x 64 / 56 -> 67
        // values of input rows plus 16 of output tile, 332 bytes: 1 MiB holds the whole image
        // (3136 pixels, 3138 as panels of 6). The buffers: the padded channels-last image (58 x
        // 58 x 64) and one worker's output tile.
        let path = plan(&g, Orientation::of(&g), &ConvTuning::default());
        assert_eq!(path, Path::ChannelsLast { pixels: 3138 });
        assert_eq!(
            column_buffer_len(&g),
            58 * 58 * 64 + 3138 * 16 + ALIGN_SLACK
        );
        let s = Schedule::new(&g, path, 1, 2, PAR_MIN_MACS);
        assert_eq!((s.tiles, s.tile_len, s.chunks, s.workers), (4, 786, 1, 2));
        // The same layer as unfolded panels.
        // Sized for the cache: 1 MiB / ((576 + 64) x 4 bytes) = 409 pixels -> 400 (25 panels).
        let pixels = Orientation::PixelsInVectors;
        let path = plan(&g, pixels, &ConvTuning::default());
        assert_eq!(
            path,
            Path::Im2col {
                pixels: 400,
                orientation: pixels
            }
        );
        assert_eq!(
            worker_buffer_len(&g, path),
            576 * 400 + 400 + 112 + ALIGN_SLACK
        );
        let s = Schedule::new(&g, path, 1, 2, PAR_MIN_MACS);
        assert_eq!((s.tiles, s.tile_len, s.chunks, s.workers), (8, 400, 1, 2));
        // Without the cache target the whole column matrix (576 x 3136) fits the bound;
        // batch 1 on 2 threads is then cut into 4 tiles.
        let loose = ConvTuning {
            cache_bytes: usize::MAX,
            ..ConvTuning::default()
        };
        let path = plan(&g, pixels, &loose);
        assert_eq!(
            path,
            Path::Im2col {
                pixels: 3136,
                orientation: pixels
            }
        );
        let s = Schedule::new(&g, path, 1, 2, PAR_MIN_MACS);
        assert_eq!((s.tiles, s.tile_len, s.chunks, s.workers), (4, 784, 1, 2));
        // Enough images: one task per image.
        let s = Schedule::new(&g, path, 8, 2, PAR_MIN_MACS);
        assert_eq!((s.tiles, s.chunks, s.workers), (1, 1, 2));
        // One thread: nothing is split.
        let s = Schedule::new(&g, path, 1, 1, PAR_MIN_MACS);
        assert_eq!((s.tiles, s.chunks, s.workers), (1, 1, 1));
        // Deep layer: 512 filters on 7x7: the whole image fits the target ((4608 + 512) x 4
        // bytes per pixel, 51 pixels), so one tile; the weights are larger, so the channels
        // are split, in whole panels of 16.
        let g = Conv2dGeometry::resolve(512, 7, 7, &spec(512, 3, 1, Padding::Same, 1)).unwrap();
        let s = Schedule::new(
            &g,
            plan(&g, Orientation::of(&g), &ConvTuning::default()),
            1,
            2,
            PAR_MIN_MACS,
        );
        assert_eq!((s.tiles, s.chunks, s.chunk_rows, s.workers), (1, 4, 128, 2));
        // 128 channels on 28x28: 1 MiB / ((1152 + 128) x 4 bytes) = 204 pixels -> 192, 5 tiles;
        // on 2 workers 6 tiles of 144 pixels (the last one 64) instead.
        let g = Conv2dGeometry::resolve(128, 28, 28, &spec(128, 3, 1, Padding::Same, 1)).unwrap();
        let path = plan(&g, pixels, &ConvTuning::default());
        assert_eq!(
            path,
            Path::Im2col {
                pixels: 192,
                orientation: pixels
            }
        );
        let s = Schedule::new(&g, path, 1, 1, PAR_MIN_MACS);
        assert_eq!((s.tiles, s.tile_len), (5, 160));
        let s = Schedule::new(&g, path, 1, 2, PAR_MIN_MACS);
        assert_eq!((s.tiles, s.tile_len, s.workers), (6, 144, 2));
        // Pointwise 64 -> 256 on 56x56: column tiles of whole panels.
        let g = Conv2dGeometry::resolve(64, 56, 56, &spec(256, 1, 1, Padding::Valid, 1)).unwrap();
        let s = Schedule::new(
            &g,
            plan(&g, Orientation::of(&g), &ConvTuning::default()),
            1,
            2,
            PAR_MIN_MACS,
        );
        assert_eq!((s.tiles, s.tile_len, s.chunks), (4, 784, 1));
        // Tiny work stays on one thread.
        let g = Conv2dGeometry::resolve(1, 4, 4, &spec(2, 3, 1, Padding::Same, 1)).unwrap();
        let s = Schedule::new(
            &g,
            plan(&g, Orientation::of(&g), &ConvTuning::default()),
            1,
            2,
            PAR_MIN_MACS,
        );
        assert_eq!(s.workers, 1);
    }

    #[test]
    fn split_work_matches_for_one_image() {
        // 40 filters on a small image (split into channel blocks) and a 1x1 on a larger
        // one (split into column tiles), for several thread counts.
        let cases = [
            (3, 1, 11, 13, Padding::Same),
            (1, 2, 30, 31, Padding::Valid),
        ];
        let runs = cases.iter().flat_map(|c| [2, 3, 5].map(|t| (*c, t)));
        for ((k, groups, h, w, pad), threads) in runs {
            let g = Conv2dGeometry::resolve(4, h, w, &spec(40, k, 1, pad, groups)).unwrap();
            let tuning = ConvTuning {
                tile_bytes: 4 * g.col_rows() * g.out_w * 3,
                par_min_macs: 0,
                threads: Some(threads),
                ..ConvTuning::default()
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
