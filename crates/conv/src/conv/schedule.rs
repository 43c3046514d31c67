//! How a call is cut into work: the size of a tile, and the tasks the workers share.
//!
//! A tile is a run of output pixels (whole column panels of 16, or 6, pixels; it may start and
//! end inside an output row). Unfolded, its panels never exceed [`super::COL_TILE_BYTES`] (but
//! always hold at least one panel), and below that bound they and the output block they
//! produce are sized for the L2 cache (about 1 MiB together); read in place from a
//! channels-last copy, the input rows a tile reads and its output tile are sized alike.
//!
//! The work of a call (on the channels-last path: of each round of copied images) is cut into
//! independent tasks `(image, group, column tile, block of output channels)`, each writing a
//! disjoint block of the output, which the workers claim from a shared counter ([`Tasks`])
//! until none is left. With enough images and groups a task is a whole image and group (or a
//! cache-sized tile of one); with fewer (batch 1) each image is cut further: into column tiles
//! when the column matrix is the larger GEMM operand (early layers), into blocks of output
//! channels when the weights are (deep layers), so that each worker reads only its own share
//! of the larger operand.
//!
//! This module only computes sizes and counts: it allocates nothing, touches no data, does not
//! choose the path (`super::path` does, and hands it the [`TileLimits`] of that path) and does
//! not run the tasks (`super::run` does).

use super::ConvTuning;
use crate::packed::Orientation;
use crate::{Conv2dGeometry, Kernel};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Output pixels per tile of the channels-last path: as many as let the input rows they read
/// (all channels of `stride_h` padded input rows per output row) plus their output tile fit the
/// cache target, and the output tile (`nr` channels of `kernel` per pixel) the buffer bound;
/// whole panels of 6 (at least one); the whole image when it fits.
pub(super) fn channels_last_tile_pixels(
    geom: &Conv2dGeometry,
    kernel: Kernel,
    tuning: &ConvTuning,
) -> usize {
    let (mr, nr) = (kernel.mr(), kernel.nr());
    let f32_bytes = std::mem::size_of::<f32>();
    let padded_w = geom.in_w + geom.pad_left + geom.pad_right;
    let input_per_pixel = (geom.stride_h * padded_w * geom.in_c).div_ceil(geom.out_w.max(1));
    let per_pixel = input_per_pixel.saturating_add(nr).saturating_mul(f32_bytes);
    let pixels = (tuning.cache_bytes / per_pixel.max(1)).min(tuning.tile_bytes / (nr * f32_bytes));
    let spatial = geom.col_cols();
    if pixels >= spatial {
        spatial.next_multiple_of(mr).max(mr)
    } else {
        (pixels / mr * mr).max(mr)
    }
}

/// Output pixels per column tile: as many as let the tile's column panels fit the buffer bound
/// and its panels plus the output block it produces fit the cache target, rounded down to whole
/// column panels (at least one); the whole image when it fits.
pub(super) fn tile_pixels(
    geom: &Conv2dGeometry,
    orientation: Orientation,
    kernel: Kernel,
    tuning: &ConvTuning,
) -> usize {
    let f32_bytes = std::mem::size_of::<f32>();
    let panel = orientation.column_panel(kernel);
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

/// What a path allows a schedule: tiles of at most `pixels` output pixels, made of whole
/// column panels of `column_panel` pixels, and blocks of output channels made of whole weight
/// panels of `weight_panel` channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TileLimits {
    pub pixels: usize,
    pub weight_panel: usize,
    pub column_panel: usize,
}

/// How one call is cut into tasks. Task `i` is `(image, group, tile, chunk)` with the chunk
/// varying fastest, then the tile, then the group; workers claim tasks in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Schedule {
    /// Column tiles per image and group.
    pub tiles: usize,
    /// Output pixels per tile (whole column panels).
    pub tile_len: usize,
    /// Blocks of output channels per image, group and tile.
    pub chunks: usize,
    /// Output channels per block.
    pub chunk_rows: usize,
    /// Workers the tasks are dealt to.
    pub workers: usize,
}

impl Schedule {
    /// The schedule of `batch` images of `geom` on at most `threads` workers, with tiles within
    /// `limits`; calls with fewer than `par_min_macs` multiply-accumulates get one worker.
    pub fn new(
        geom: &Conv2dGeometry,
        limits: TileLimits,
        batch: usize,
        threads: usize,
        par_min_macs: usize,
    ) -> Self {
        let (mg, spatial) = (geom.out_c_per_group(), geom.col_cols());
        // The largest tile the buffer bounds allow, in output pixels.
        let max_tile = limits.pixels;
        // Tiles are whole column panels, blocks of output channels whole weight panels.
        let (w_panel, c_panel) = (limits.weight_panel, limits.column_panel);
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
    pub fn tasks(&self, batch: usize, groups: usize) -> usize {
        batch * groups * self.tiles * self.chunks
    }
}

/// The task counter of one call: workers take the next unclaimed task until all are taken.
pub(super) struct Tasks {
    next: AtomicUsize,
    total: usize,
}

impl Tasks {
    /// A counter handing out the tasks `0..total`.
    pub fn new(total: usize) -> Self {
        Self {
            next: AtomicUsize::new(0),
            total,
        }
    }

    /// Claims a task; every index in `0..total` is handed out exactly once.
    pub fn claim(&self) -> Option<usize> {
        // Relaxed is enough: the counter only has to hand out distinct indices; the outputs
        // are published to the caller by rayon's join at the end of the parallel loop.
        let task = self.next.fetch_add(1, Ordering::Relaxed);
        (task < self.total).then_some(task)
    }
}

#[cfg(test)]
mod tests {
    use super::super::path::{column_buffer_len, plan, worker_buffer_len, Plan};
    use super::super::test_util::{data, max_abs_diff, spec};
    use super::super::{conv2d_tuned, PAR_MIN_MACS};
    use super::*;
    use crate::packed::ALIGN_SLACK;
    use crate::{conv2d_direct, Activation, Padding};

    /// The schedule of `batch` images of `geom` on the path `plan`.
    fn schedule(g: &Conv2dGeometry, plan: Plan, batch: usize, threads: usize) -> Schedule {
        Schedule::new(g, plan.limits(g), batch, threads, PAR_MIN_MACS)
    }

    /// The kernel whose tile sizes these tests pin (planning only: nothing runs on it).
    const K16: Kernel = Kernel::Avx2;

    /// The production plan of `g` with 16-wide tiles.
    fn production(g: &Conv2dGeometry) -> Plan {
        plan(g, Orientation::of(g, K16), K16, &ConvTuning::default())
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
        assert_eq!(
            tile_pixels(&g, Orientation::PixelsInVectors, K16, &tuning),
            16
        );
        assert_eq!(
            tile_pixels(&g, Orientation::PixelsInVectors, Kernel::Avx512, &tuning),
            32
        );
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
        let path = production(&g);
        assert_eq!(
            path,
            Plan::ChannelsLast {
                pixels: 3138,
                kernel: K16
            }
        );
        assert_eq!(worker_buffer_len(&g, path), 3138 * 16 + ALIGN_SLACK);
        // (The production path of this layer is Winograd's, whose buffers explain reports.)
        assert_eq!(
            column_buffer_len(&g),
            crate::winograd::buffer_len(&g, Kernel::selected())
        );
        let s = schedule(&g, path, 1, 2);
        assert_eq!((s.tiles, s.tile_len, s.chunks, s.workers), (4, 786, 1, 2));
        // The same layer as unfolded panels.
        // Sized for the cache: 1 MiB / ((576 + 64) x 4 bytes) = 409 pixels -> 400 (25 panels).
        let pixels = Orientation::PixelsInVectors;
        let path = plan(&g, pixels, K16, &ConvTuning::default());
        assert_eq!(
            path,
            Plan::Im2col {
                pixels: 400,
                orientation: pixels,
                kernel: K16
            }
        );
        assert_eq!(
            worker_buffer_len(&g, path),
            576 * 400 + 400 + 112 + ALIGN_SLACK
        );
        let s = schedule(&g, path, 1, 2);
        assert_eq!((s.tiles, s.tile_len, s.chunks, s.workers), (8, 400, 1, 2));
        // Without the cache target the whole column matrix (576 x 3136) fits the bound;
        // batch 1 on 2 threads is then cut into 4 tiles.
        let loose = ConvTuning {
            cache_bytes: usize::MAX,
            ..ConvTuning::default()
        };
        let path = plan(&g, pixels, K16, &loose);
        assert_eq!(
            path,
            Plan::Im2col {
                pixels: 3136,
                orientation: pixels,
                kernel: K16
            }
        );
        let s = schedule(&g, path, 1, 2);
        assert_eq!((s.tiles, s.tile_len, s.chunks, s.workers), (4, 784, 1, 2));
        // Enough images: one task per image.
        let s = schedule(&g, path, 8, 2);
        assert_eq!((s.tiles, s.chunks, s.workers), (1, 1, 2));
        // One thread: nothing is split.
        let s = schedule(&g, path, 1, 1);
        assert_eq!((s.tiles, s.chunks, s.workers), (1, 1, 1));
        // Deep layer: 512 filters on 7x7: the whole image fits the target ((4608 + 512) x 4
        // bytes per pixel, 51 pixels), so one tile; the weights are larger, so the channels
        // are split, in whole panels of 16.
        let g = Conv2dGeometry::resolve(512, 7, 7, &spec(512, 3, 1, Padding::Same, 1)).unwrap();
        let s = schedule(&g, production(&g), 1, 2);
        assert_eq!((s.tiles, s.chunks, s.chunk_rows, s.workers), (1, 4, 128, 2));
        // 128 channels on 28x28: 1 MiB / ((1152 + 128) x 4 bytes) = 204 pixels -> 192, 5 tiles;
        // on 2 workers 6 tiles of 144 pixels (the last one 64) instead.
        let g = Conv2dGeometry::resolve(128, 28, 28, &spec(128, 3, 1, Padding::Same, 1)).unwrap();
        let path = plan(&g, pixels, K16, &ConvTuning::default());
        assert_eq!(
            path,
            Plan::Im2col {
                pixels: 192,
                orientation: pixels,
                kernel: K16
            }
        );
        let s = schedule(&g, path, 1, 1);
        assert_eq!((s.tiles, s.tile_len), (5, 160));
        let s = schedule(&g, path, 1, 2);
        assert_eq!((s.tiles, s.tile_len, s.workers), (6, 144, 2));
        // Pointwise 64 -> 256 on 56x56: column tiles of whole panels.
        let g = Conv2dGeometry::resolve(64, 56, 56, &spec(256, 1, 1, Padding::Valid, 1)).unwrap();
        let s = schedule(&g, production(&g), 1, 2);
        assert_eq!((s.tiles, s.tile_len, s.chunks), (4, 784, 1));
        // Tiny work stays on one thread.
        let g = Conv2dGeometry::resolve(1, 4, 4, &spec(2, 3, 1, Padding::Same, 1)).unwrap();
        let s = schedule(&g, production(&g), 1, 2);
        assert_eq!(s.workers, 1);
    }

    #[test]
    fn tasks_are_handed_out_once() {
        let tasks = Tasks::new(3);
        let claimed: Vec<_> = std::iter::from_fn(|| tasks.claim()).collect();
        assert_eq!(claimed, [0, 1, 2]);
        assert_eq!(tasks.claim(), None);
    }
}
