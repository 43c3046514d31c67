//! Running a planned call: the workers and their loop over the tasks of a schedule.
//!
//! At most `rayon::current_num_threads()` workers (the schedule's count) each take a buffer of
//! their own from the thread's scratch ([`crate::scratch`]) and claim tasks from the shared
//! counter until none is left. A task `(image, group, column tile, block of output channels)`
//! finds its column matrix in one of three places ([`Source`]): unfolded by the worker into
//! its own panels ([`crate::packed::pack_columns`]; not again when its previous task used the
//! same tile), unfolded once for the whole call into shared panels, or read in place from
//! channels-last copies of the images ([`crate::channels_last`]). It multiplies the block's
//! packed weights with them into its disjoint block of the output, the bias and a clamping
//! activation fused into the stores, other activations applied right after.
//!
//! The panels are shared when the workers split one image's output channels between them (the
//! weights are the larger operand, so each worker would otherwise unfold the same tiles): the
//! (small) column panels of the call are then unfolded once, by all workers in parallel, into
//! one buffer (up to 16 MiB; beyond that each worker unfolds the tiles it needs). The
//! channels-last copy is always shared: the images are copied as many at a time as fit in
//! `ConvTuning::channels_last_bytes`, and each round's tasks read that copy.
//!
//! This module does not check arguments (`super` does before it builds a [`Call`]), choose the
//! path (`super::path`) or size tiles and tasks (`super::schedule`).

use super::path::{row_scratch_len, worker_buffer_len, Plan};
use super::schedule::{Schedule, Tasks};
use super::ConvTuning;
use crate::channels_last;
use crate::gemm::{bias_act, SharedOut};
use crate::microkernel::{Finish, Kernel};
use crate::packed::{
    aligned_mut, column_panels_len, multiply, pack_columns, panel_rows, PackedWeights, ALIGN_SLACK,
};
use crate::scratch;
use crate::{Activation, Conv2dGeometry, KernelError};
use rayon::prelude::*;

/// Images with fewer values than this are copied channels-last on the calling thread.
const PAR_MIN_COPY: usize = 1 << 14;

/// Bound of the column panels unfolded once and shared by all workers, in bytes.
const SHARED_COLS_BYTES: usize = 16 << 20;

/// The parts of a call every batch of its tasks shares.
pub(super) struct Call<'a> {
    geom: &'a Conv2dGeometry,
    weights: &'a PackedWeights,
    bias: Option<&'a [f32]>,
    act: Activation,
    /// Add the products to what the output holds (a residual the caller put there).
    onto: bool,
    kernel: Kernel,
    plan: Plan,
    /// Workers to plan for (`tuning.threads`, or rayon's).
    threads: usize,
    tuning: ConvTuning,
}

impl<'a> Call<'a> {
    /// A call of `geom` (not depthwise) with `weights` packed for it, on the path `plan`, with
    /// the kernel build the weights were packed for and the number of workers `tuning` asks
    /// for.
    pub fn new(
        geom: &'a Conv2dGeometry,
        weights: &'a PackedWeights,
        bias: Option<&'a [f32]>,
        act: Activation,
        onto: bool,
        plan: Plan,
        tuning: ConvTuning,
    ) -> Self {
        let threads = tuning
            .threads
            .unwrap_or_else(rayon::current_num_threads)
            .max(1);
        Self {
            geom,
            weights,
            bias,
            act,
            onto,
            kernel: weights.kernel(),
            plan,
            threads,
            tuning,
        }
    }

    /// Convolves `batch` images of `input` into `output` (both checked by the caller).
    pub fn convolve(
        &self,
        input: &[f32],
        batch: usize,
        output: &mut [f32],
    ) -> Result<(), KernelError> {
        match self.plan {
            Plan::ChannelsLast { .. } => self.channels_last(input, batch, output),
            _ => self.unfolded(input, batch, output),
        }
    }

    /// The unfolded paths: one schedule for the whole call, the column panels unfolded once
    /// and shared when [`shared_columns`] finds that worth it, else by each worker.
    ///
    /// With stride 2 (not 1x1), the images' rows are first split by column parity into this
    /// thread's copy buffer (one pass over the input), so that each tap's every-other value is
    /// one contiguous run when unfolded.
    fn unfolded(&self, input: &[f32], batch: usize, output: &mut [f32]) -> Result<(), KernelError> {
        let g = self.geom;
        if super::path::phased_copy(g) {
            let what = "the phased copy of the input";
            return scratch::with_buffer(&scratch::COPIES, input.len(), what, |phased| {
                crate::im2col::phase_rows(input, g.in_w, phased);
                self.unfolded_from(phased, true, batch, output)
            });
        }
        self.unfolded_from(input, false, batch, output)
    }

    /// [`Call::unfolded`] from `input` as given or, with `phased`, split by column parity.
    fn unfolded_from(
        &self,
        input: &[f32],
        phased: bool,
        batch: usize,
        output: &mut [f32],
    ) -> Result<(), KernelError> {
        let g = self.geom;
        let limits = self.plan.limits(g);
        let sched = Schedule::new(g, limits, batch, self.threads, self.tuning.par_min_macs);
        let mut shared_buf = Vec::new();
        let weights = self.weights;
        let source =
            match shared_columns(g, input, phased, batch, &sched, weights, &mut shared_buf)? {
                Some(shared) => Source::Shared(shared),
                None => Source::Unfold { input, phased },
            };
        self.execute(sched, source, batch, output)
    }

    /// The channels-last path: the images, as many at a time as fit in `channels_last_bytes`
    /// ([`CHANNELS_LAST_BYTES`](super::CHANNELS_LAST_BYTES)), are copied channels-last (in
    /// parallel), then their tasks run reading that copy in place.
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
        scratch::with_buffer(&scratch::COPIES, len, what, |buf| {
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
                let limits = self.plan.limits(g);
                let sched = Schedule::new(g, limits, count, self.threads, min_macs);
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
            _ => worker_buffer_len(self.geom, self.plan.with_tile(sched.tile_len)),
        };
        let ctx = Ctx {
            call: self,
            sched,
            source,
        };
        let out = SharedOut::new(output, self.geom.col_cols());
        let tasks = Tasks::new(sched.tasks(batch, self.geom.groups));
        // Each worker's buffer is its thread's scratch buffer (allocated, in parallel, when too
        // short).
        let what = "the convolution column tiles";
        let work = || {
            scratch::with_buffer(&scratch::TILES, buf_len, what, |buf| {
                ctx.run(&out, &tasks, buf)
            })
        };
        if sched.workers <= 1 {
            return work();
        }
        (0..sched.workers).into_par_iter().try_for_each(|_| work())
    }
}

/// Where the tasks of a call find their column matrices, and so what a worker's own buffer
/// holds.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// Unfolded by each worker, from the images `input` (rows split by column parity when
    /// `phased`), into its own panels (the buffer: the panels of a tile, then a scratch row of
    /// the column matrix).
    Unfold { input: &'a [f32], phased: bool },
    /// Unfolded once for all workers (no buffer of their own).
    Shared(SharedColumns<'a>),
    /// Read in place from padded channels-last images (the buffer: the worker's output tile).
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
    phased: bool,
    batch: usize,
    sched: &Schedule,
    weights: &PackedWeights,
    buf: &'a mut Vec<f32>,
) -> Result<Option<SharedColumns<'a>>, KernelError> {
    if sched.workers <= 1 || sched.chunks <= 1 {
        return Ok(None);
    }
    let (orientation, kernel) = (weights.orientation(), weights.kernel());
    // Each tile's panels start on a cache line (16 floats).
    let stride = column_panels_len(geom.col_rows(), sched.tile_len, orientation, kernel)
        .next_multiple_of(16);
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
        let ranges = panel_rows(tile_buf, k, p1 - p0, orientation, kernel, &cuts);
        for (pieces, rows) in ranges.into_iter().zip(bounds.windows(2)) {
            jobs.push((t, p0..p1, rows[0]..rows[1], pieces));
        }
    }
    jobs.into_par_iter().try_for_each_init(
        || {
            cnn_tensor::try_zeroed(
                row_scratch_len(geom, orientation, kernel, sched.tile_len),
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
                kernel,
                &mut pieces,
                row,
                phased,
            );
            Ok(())
        },
    )?;
    Ok(Some(SharedColumns { data, stride }))
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
        // This worker's buffer, from its first cache line: its panels and a scratch row, or its
        // output tile (`own`), or nothing.
        let (own, row): (&mut [f32], &mut [f32]) = match self.source {
            Source::Shared(_) => (&mut [], &mut []),
            Source::Unfold { .. } => {
                let len = buf.len() - ALIGN_SLACK;
                let scratch = row_scratch_len(g, orientation, call.kernel, s.tile_len);
                aligned_mut(buf, len).split_at_mut(len - scratch)
            }
            Source::InPlace(_) => {
                let len = buf.len() - ALIGN_SLACK;
                (aligned_mut(buf, len), &mut [])
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
            match self.source {
                Source::Shared(sh) => {
                    let t = (n * g.groups + grp) * s.tiles + tile;
                    let panels = &sh.data[t * sh.stride..(t + 1) * sh.stride];
                    let onto = call.onto;
                    multiply(call.kernel, orientation, k, w, panels, &mut c, finish, onto);
                }
                Source::Unfold { input, phased } => {
                    if unfolded != Some((n, grp, tile)) {
                        let image = &input[n * g.in_len()..(n + 1) * g.in_len()];
                        // One range of reduction rows: all of them.
                        for mut pieces in panel_rows(own, k, ncols, orientation, call.kernel, &[]) {
                            let (pixels, rows) = (p0..p0 + ncols, 0..k);
                            pack_columns(
                                g,
                                image,
                                grp,
                                pixels,
                                rows,
                                orientation,
                                call.kernel,
                                &mut pieces,
                                row,
                                phased,
                            );
                        }
                        unfolded = Some((n, grp, tile));
                    }
                    let onto = call.onto;
                    multiply(call.kernel, orientation, k, w, own, &mut c, finish, onto);
                }
                Source::InPlace(copies) => {
                    let (image, taps, tile) = (copies.image(n), copies.taps, &mut *own);
                    let (kernel, out, onto) = (call.kernel, &mut c, call.onto);
                    channels_last::multiply(
                        kernel, g, image, grp, p0, taps, w, tile, out, finish, onto,
                    );
                }
            }
            if finish.is_none() {
                bias_act(&mut c, bias, call.act);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{data, max_abs_diff, spec};
    use super::super::{conv2d_tuned, ConvTuning};
    use crate::{conv2d_direct, Activation, Conv2dGeometry, Padding};

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
}
