//! Which path a convolution takes, and the buffers that path needs: the one place that decides
//! it.
//!
//! [`kind`] is the decision, from the geometry alone:
//! * depthwise (`groups == in_c > 1`): the direct kernel of [`crate::depthwise`];
//! * Winograd F(4x4, 3x3) for 3x3, stride 1, ungrouped layers with at least 32 channels in
//!   and out and 16 output tiles ([`crate::winograd::applies`]);
//! * pointwise (1x1, stride 1, no padding): im2col + GEMM whose column panels are copies of
//!   the input rows ([`crate::packed`]);
//! * im2col + GEMM on everything else, reading the column matrix in place from a channels-last
//!   copy of the input when a group has at least [`crate::channels_last::MIN_CHANNELS`] input
//!   channels ([`crate::channels_last`]), unfolding it into panels otherwise.
//!
//! The kernels follow it: [`crate::packed::Orientation::of`] (and so [`crate::PackedWeights::new`])
//! packs channels-last weights exactly when it says so, [`crate::channels_last::applies`]
//! forwards to it, and [`plan`] turns the weights' orientation into the tiled [`Plan`] a call
//! runs. [`describe`] reports the decision and the buffer sizes ([`column_buffer_len`]) for
//! `cnn explain`, without running anything.
//!
//! This module does not size tiles (`super::schedule` does) nor run anything (`super::run`).

use super::schedule::{channels_last_tile_pixels, tile_pixels, TileLimits};
use super::ConvTuning;
use crate::channels_last;
use crate::packed::{column_panels_len, Orientation, ALIGN_SLACK};
use crate::{Conv2dGeometry, Kernel};

/// The path a convolution takes (see [`describe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathKind {
    /// Depthwise (`groups == in_c > 1`): the direct kernel of [`crate::depthwise_conv2d`], no
    /// GEMM and no column buffer.
    Depthwise,
    /// A 1x1 convolution with stride 1 and no padding (not depthwise): im2col + GEMM whose
    /// column panels are copied from the input rows as they are (no unfolding).
    Pointwise,
    /// Winograd F(4x4, 3x3) ([`crate::winograd`]): a 3x3, stride 1, ungrouped convolution of
    /// at least 32 input and output channels and 16 tiles, run as 36 GEMMs on transformed
    /// tiles — the same products as the im2col GEMM's, with 4x fewer multiplies.
    Winograd,
    /// im2col + GEMM. With `channels_last` (at least
    /// [`MIN_CHANNELS`](crate::channels_last::MIN_CHANNELS) input channels per group) the
    /// column matrix is never unfolded: the GEMM reads it in place from a zero-padded
    /// channels-last copy of each image ([`crate::channels_last`]). Without, each worker
    /// unfolds tiles of it into column panels.
    Im2colGemm { channels_last: bool },
}

/// What [`describe`] tells of a convolution: its path and the buffers it allocates for one
/// image (batch 1), in `f32` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvPath {
    pub kind: PathKind,
    /// [`column_buffer_len`]: the workers' column panels (or output tiles), plus the
    /// channels-last copy when there is one; 0 for [`PathKind::Depthwise`].
    pub column_buffer_len: usize,
    /// Values of the zero-padded channels-last copy of one image,
    /// [`channels_last::image_len`] (`usize::MAX` when that overflows), when the column matrix
    /// is read in place (`PathKind::Im2colGemm { channels_last: true }`); `None` otherwise.
    /// Part of `column_buffer_len`.
    pub channels_last_copy_len: Option<usize>,
}

/// The path [`crate::conv2d`] and [`crate::conv2d_packed`] (with [`crate::PackedWeights::new`])
/// take for `geom`, with the buffers they allocate for it: the same decision the kernels make
/// at run time (this module's `kind`). `geom` is a resolved geometry ([`Conv2dGeometry::resolve`]).
pub fn describe(geom: &Conv2dGeometry) -> ConvPath {
    let kind = kind(geom);
    let channels_last_copy_len = match kind {
        PathKind::Im2colGemm {
            channels_last: true,
        } => Some(channels_last::image_len(geom).unwrap_or(usize::MAX)),
        _ => None,
    };
    ConvPath {
        kind,
        column_buffer_len: column_buffer_len(geom),
        channels_last_copy_len,
    }
}

/// The decision: which path the production convolution runs `geom` on.
pub(crate) fn kind(geom: &Conv2dGeometry) -> PathKind {
    if !geom.is_depthwise() && crate::winograd::applies(geom) {
        PathKind::Winograd
    } else {
        gemm_kind(geom)
    }
}

/// The path `geom` takes when it is not run as Winograd: what its weights packed for a GEMM
/// ([`crate::packed::Orientation::of`]) run on.
pub(crate) fn gemm_kind(geom: &Conv2dGeometry) -> PathKind {
    if geom.is_depthwise() {
        PathKind::Depthwise
    } else if geom.is_pointwise() {
        PathKind::Pointwise
    } else {
        PathKind::Im2colGemm {
            channels_last: geom.in_c_per_group() >= channels_last::MIN_CHANNELS,
        }
    }
}

/// How a call runs: the path with its tile size, the weights' orientation and the kernel
/// build they were packed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plan {
    Depthwise,
    /// im2col + GEMM (pointwise or not), at most `pixels` output pixels per column tile (a
    /// whole number of column panels).
    Im2col {
        pixels: usize,
        orientation: Orientation,
        kernel: Kernel,
    },
    /// im2col + GEMM with the column matrix read in place from a channels-last copy of the
    /// input ([`crate::channels_last`]), at most `pixels` output pixels per tile.
    ChannelsLast {
        pixels: usize,
        kernel: Kernel,
    },
}

impl Plan {
    /// The bounds of a schedule on this path: the largest tile, in output pixels, and the
    /// output channels per weight panel and output pixels per column panel (1 and 1 for the
    /// depthwise path, which has no panels).
    pub fn limits(self, geom: &Conv2dGeometry) -> TileLimits {
        let (pixels, weight_panel, column_panel) = match self {
            Plan::Depthwise => (geom.col_cols(), 1, 1),
            Plan::Im2col {
                pixels,
                orientation,
                kernel,
            } => (
                pixels,
                orientation.weight_panel(kernel),
                orientation.column_panel(kernel),
            ),
            Plan::ChannelsLast { pixels, kernel } => (pixels, kernel.nr(), kernel.mr()),
        };
        TileLimits {
            pixels,
            weight_panel,
            column_panel,
        }
    }

    /// The same path with tiles of `pixels` output pixels.
    pub fn with_tile(self, pixels: usize) -> Self {
        match self {
            Plan::Depthwise => Plan::Depthwise,
            Plan::Im2col {
                orientation,
                kernel,
                ..
            } => Plan::Im2col {
                pixels,
                orientation,
                kernel,
            },
            Plan::ChannelsLast { kernel, .. } => Plan::ChannelsLast { pixels, kernel },
        }
    }
}

/// The plan of `geom` with weights packed in `orientation` for `kernel`: the depthwise path
/// when [`kind`] says so, else the one the orientation was packed for. With weights packed by
/// [`crate::PackedWeights::new`] ([`Orientation::of`]) that is the path of [`kind`]; tests
/// pack weights in other orientations to run every kernel on every geometry.
pub(super) fn plan(
    geom: &Conv2dGeometry,
    orientation: Orientation,
    kernel: Kernel,
    tuning: &ConvTuning,
) -> Plan {
    if kind(geom) == PathKind::Depthwise {
        Plan::Depthwise
    } else if orientation == Orientation::ChannelsLast {
        Plan::ChannelsLast {
            pixels: channels_last_tile_pixels(geom, kernel, tuning),
            kernel,
        }
    } else {
        Plan::Im2col {
            pixels: tile_pixels(geom, orientation, kernel, tuning),
            orientation,
            kernel,
        }
    }
}

/// Elements of the column buffers [`crate::conv2d`] allocates for one image of `geom` (batch 1):
/// * unfolded panels (few input channels per group, 1x1): per worker thread (at most
///   `rayon::current_num_threads()` of them), the column panels of one tile, `col_rows x
///   pixels_per_tile`, where a tile holds as many output pixels as fit in
///   [`COL_TILE_BYTES`](super::COL_TILE_BYTES) (at least one panel of `nr` or 6 pixels; in
///   practice fewer, sized for the L2 cache), plus scratch for one row of the tile's column
///   matrix and 15 values of alignment slack;
/// * channels-last ([`crate::channels_last`]): the zero-padded channels-last copy of the
///   image, read in place by all workers, plus one worker's output tile (`nr` channels of a
///   tile's pixels) and slack;
/// * 0 for the depthwise path, which needs none.
///
/// The sizes are those of the selected kernel build ([`Kernel::selected`]).
pub fn column_buffer_len(geom: &Conv2dGeometry) -> usize {
    let kernel = Kernel::selected();
    if kind(geom) == PathKind::Winograd {
        return crate::winograd::buffer_len(geom, kernel);
    }
    let plan = plan(
        geom,
        Orientation::of(geom, kernel),
        kernel,
        &ConvTuning::default(),
    );
    let image = match plan {
        Plan::ChannelsLast { .. } => channels_last::image_len(geom).unwrap_or(usize::MAX),
        Plan::Im2col { .. } if phased_copy(geom) => geom.in_len(),
        _ => 0,
    };
    image.saturating_add(worker_buffer_len(geom, plan))
}

/// Whether the unfolded path first copies the image with its rows split by column parity
/// (stride 2, not 1x1: each tap's every-other value is then one contiguous run).
pub(super) fn phased_copy(geom: &Conv2dGeometry) -> bool {
    geom.stride_w == 2 && !geom.is_pointwise() && geom.in_w > 1
}

/// A worker's buffer: for unfolded panels, the column panels of a tile plus
/// [`row_scratch_len`]; for the channels-last path, the output tile; plus the slack that lets
/// them start on a cache line. 0 for the depthwise path.
pub(super) fn worker_buffer_len(geom: &Conv2dGeometry, plan: Plan) -> usize {
    match plan {
        Plan::Depthwise => 0,
        Plan::Im2col {
            pixels,
            orientation,
            kernel,
        } => {
            column_panels_len(geom.col_rows(), pixels, orientation, kernel)
                + row_scratch_len(geom, orientation, kernel, pixels)
                + ALIGN_SLACK
        }
        Plan::ChannelsLast { pixels, kernel } => {
            channels_last::tile_len(pixels, kernel) + ALIGN_SLACK
        }
    }
}

/// Scratch for one row of a tile's column matrix: the whole output rows a tile of `pixels`
/// pixels touches (it may start in the middle of one), padded to whole panels.
pub(super) fn row_scratch_len(
    geom: &Conv2dGeometry,
    orientation: Orientation,
    kernel: Kernel,
    pixels: usize,
) -> usize {
    pixels.next_multiple_of(orientation.column_panel(kernel)) + 2 * geom.out_w
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{data, max_abs_diff, spec};
    use super::super::{conv2d, conv2d_tuned, COL_TILE_BYTES};
    use super::*;
    use crate::{conv2d_direct, scratch, Activation, Conv2dSpec, PackedWeights, Padding};
    use proptest::prelude::*;

    /// The production plan of `g`.
    fn production(g: &Conv2dGeometry) -> Plan {
        let kernel = Kernel::selected();
        plan(
            g,
            Orientation::of(g, kernel),
            kernel,
            &ConvTuning::default(),
        )
    }

    #[test]
    fn paths_are_chosen() {
        // 1x1: no unfolding, but still panels (8 x 25 pixels, padded to 32 with panels of 16
        // or 32): 8*32 values, plus
        // scratch for one row of the tile's matrix (32 pixels + two output rows of 5), plus
        // alignment slack.
        let g = Conv2dGeometry::resolve(8, 5, 5, &spec(4, 1, 1, Padding::Valid, 1)).unwrap();
        assert_eq!(
            production(&g),
            Plan::Im2col {
                pixels: 32,
                orientation: Orientation::PixelsInVectors,
                kernel: Kernel::selected(),
            }
        );
        assert_eq!(column_buffer_len(&g), 8 * 32 + 32 + 10 + ALIGN_SLACK);
        assert_eq!(describe(&g).kind, PathKind::Pointwise);
        let g = Conv2dGeometry::resolve(8, 5, 5, &spec(16, 3, 1, Padding::Same, 8)).unwrap();
        assert_eq!(production(&g), Plan::Depthwise);
        assert_eq!(column_buffer_len(&g), 0);
        assert_eq!(describe(&g).kind, PathKind::Depthwise);
        let g = Conv2dGeometry::resolve(3, 5, 5, &spec(4, 3, 1, Padding::Same, 1)).unwrap();
        assert_eq!(
            production(&g),
            Plan::Im2col {
                pixels: 32,
                orientation: Orientation::PixelsInVectors,
                kernel: Kernel::selected(),
            }
        );
        assert_eq!(column_buffer_len(&g), 27 * 32 + 32 + 10 + ALIGN_SLACK);
        let unfolded = PathKind::Im2colGemm {
            channels_last: false,
        };
        assert_eq!(describe(&g).kind, unfolded);
    }

    #[test]
    fn describe_gives_the_byte_counts_explain_pins() {
        // The cases of crates/model/src/explain.rs's tests. Conv 32 5x5 on 1x28x28: one tile
        // holds the whole matrix (576 pixels are 96 panels of 6), plus one row of scratch (576
        // pixels and two output rows of 24) and 15 values of alignment slack.
        let g = Conv2dGeometry::resolve(1, 28, 28, &spec(32, 5, 1, Padding::Valid, 1)).unwrap();
        let unfolded = PathKind::Im2colGemm {
            channels_last: false,
        };
        let want = ConvPath {
            kind: unfolded,
            column_buffer_len: 25 * 576 + 576 + 48 + 15,
            channels_last_copy_len: None,
        };
        assert_eq!(describe(&g), want);
        // Then a 1x1 with 8 filters: its 32 input channels copied into panels of 16 pixels.
        let g = Conv2dGeometry::resolve(32, 24, 24, &spec(8, 1, 1, Padding::Valid, 1)).unwrap();
        let want = ConvPath {
            kind: PathKind::Pointwise,
            column_buffer_len: 32 * 576 + 576 + 48 + 15,
            channels_last_copy_len: None,
        };
        assert_eq!(describe(&g), want);
        // Then a depthwise 3x3: no buffer.
        let g = Conv2dGeometry::resolve(8, 24, 24, &spec(8, 3, 1, Padding::Valid, 8)).unwrap();
        let want = ConvPath {
            kind: PathKind::Depthwise,
            column_buffer_len: 0,
            channels_last_copy_len: None,
        };
        assert_eq!(describe(&g), want);
        // 16 channels 3x3 on 10x10, padding 1: read in place from a 12 x 12 x 16 copy; one
        // worker's output tile is 102 pixels (17 panels of 6) of nr (16 or 32) channels.
        let nr = Kernel::selected().nr();
        let g = Conv2dGeometry::resolve(16, 10, 10, &spec(32, 3, 1, Padding::Same, 1)).unwrap();
        let want = ConvPath {
            kind: PathKind::Im2colGemm {
                channels_last: true,
            },
            column_buffer_len: 12 * 12 * 16 + 102 * nr + 15,
            channels_last_copy_len: Some(12 * 12 * 16),
        };
        assert_eq!(describe(&g), want);
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
            let got = Orientation::for_shape(m, n, k, Kernel::Avx2);
            assert_eq!(got, want, "{m} x {n}, K = {k}");
        }
        // With 32-wide panels 64 channels on 14x14 (196 pixels pad to 224 as pixel panels,
        // to 198 as panels of 6) turn; with 16-wide ones (208 pixels) they do not.
        assert_eq!(Orientation::for_shape(64, 196, 576, Kernel::Avx2), Pixels);
        assert_eq!(
            Orientation::for_shape(64, 196, 576, Kernel::Avx512),
            Channels
        );
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
            assert_eq!(
                packed.orientation(),
                Orientation::of(&g, Kernel::selected())
            );
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

    /// Resolvable geometries of every path: 1 to 40 input channels, one group, all of them
    /// (depthwise when more than one) or a few, kernels of 1 to 3 per side, strides and
    /// dilations of 1 or 2, valid, same or explicit padding; a fifth of them pointwise (1x1,
    /// stride 1, valid).
    fn geometries() -> impl Strategy<Value = Conv2dGeometry> {
        let sizes = (1usize..=40, 0usize..3, 1usize..=3, 1usize..=16, 1usize..=16);
        let window = (
            [1usize..=3, 1..=3],
            [1usize..=2, 1..=2],
            [1usize..=2, 1..=2],
        );
        let pointwise = prop::bool::weighted(0.2);
        (sizes, window, 0usize..4, pointwise).prop_filter_map(
            "the window must fit the padded input",
            |((in_c, groups, per_group, h, w), (kernel, stride, dilation), pad, pointwise)| {
                let (kernel, stride, pad) = match pointwise {
                    true => ([1, 1], [1, 1], 0),
                    false => (kernel, stride, pad),
                };
                let groups = match groups {
                    0 => 1,
                    1 => in_c,
                    _ => (1..=4).rev().find(|d| in_c % d == 0).unwrap_or(1),
                };
                let padding = match pad {
                    0 => Padding::Valid,
                    1 => Padding::Same,
                    2 => Padding::Explicit { h: 1, w: 0 },
                    _ => Padding::Asymmetric {
                        top: 0,
                        bottom: 1,
                        left: 2,
                        right: 0,
                    },
                };
                let spec = Conv2dSpec {
                    filters: groups * per_group,
                    kernel,
                    stride,
                    dilation,
                    padding,
                    groups,
                };
                Conv2dGeometry::resolve(in_c, h, w, &spec).ok()
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// `describe` gives what crates/model/src/explain.rs derives from the older functions
        /// (written out here as it was before `describe`), and the kernels' own choices agree.
        #[test]
        fn describe_agrees_with_the_kernels(g in geometries()) {
            let d = describe(&g);
            // explain.rs: depthwise, else pointwise, else im2col; channels-last when at least
            // 16 input channels per group and not 1x1 or depthwise.
            let winograd = crate::winograd::applies(&g);
            let in_place = !g.is_depthwise()
                && !g.is_pointwise()
                && !winograd
                && g.in_c_per_group() >= 16;
            let want = if g.is_depthwise() {
                PathKind::Depthwise
            } else if winograd {
                PathKind::Winograd
            } else if g.is_pointwise() {
                PathKind::Pointwise
            } else {
                PathKind::Im2colGemm { channels_last: in_place }
            };
            prop_assert_eq!(d.kind, want);
            prop_assert_eq!(channels_last::applies(&g), in_place);
            // Column bytes: column_buffer_len for im2col and pointwise, 0 for depthwise.
            let columns = match want {
                PathKind::Depthwise => 0,
                _ => column_buffer_len(&g),
            };
            prop_assert_eq!(d.column_buffer_len, columns);
            prop_assert_eq!(column_buffer_len(&g) == 0, want == PathKind::Depthwise);
            // The channels-last copy: image_len when read in place.
            let copy = in_place.then(|| channels_last::image_len(&g).unwrap());
            prop_assert_eq!(d.channels_last_copy_len, copy);
            // The orientation weights are packed in, and the plan a call with them runs.
            let orientation = match in_place {
                true => Orientation::ChannelsLast,
                false => Orientation::for_shape(
                    g.out_c_per_group(),
                    g.col_cols(),
                    g.col_rows(),
                    Kernel::selected(),
                ),
            };
            prop_assert_eq!(Orientation::of(&g, Kernel::selected()), orientation);
            let packed = PackedWeights::new(&g, &vec![0.0; g.weight_len()]).unwrap();
            prop_assert_eq!(packed.orientation(), orientation);
            prop_assert_eq!(packed.depthwise().is_some(), want == PathKind::Depthwise);
            let plan = plan(&g, packed.orientation(), packed.kernel(), &ConvTuning::default());
            let ran = match plan {
                _ if packed.winograd_weights().is_some() => PathKind::Winograd,
                Plan::Depthwise => PathKind::Depthwise,
                Plan::ChannelsLast { .. } => PathKind::Im2colGemm { channels_last: true },
                Plan::Im2col { .. } if g.is_pointwise() => PathKind::Pointwise,
                Plan::Im2col { .. } => PathKind::Im2colGemm { channels_last: false },
            };
            prop_assert_eq!(ran, want);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A call on one thread leaves in that thread's scratch slots exactly the buffers of the
        /// path `describe` names: none for depthwise, a worker's panels (at most the described
        /// buffer) for unfolded panels, the channels-last copy plus an output tile when read in
        /// place. The result matches the direct convolution.
        #[test]
        fn the_call_uses_the_described_buffers(g in geometries()) {
            let input = data(g.in_len(), 21);
            let weights = data(g.weight_len(), 22);
            let d = describe(&g);
            // A fresh thread: its scratch slots start empty.
            let (copies, tiles, out) = std::thread::spawn(move || {
                let tuning = ConvTuning {
                    threads: Some(1),
                    ..ConvTuning::default()
                };
                let mut out = vec![0.0; g.out_len()];
                let act = Activation::Linear;
                conv2d_tuned(&g, &input, 1, &weights, None, act, &mut out, tuning).unwrap();
                (scratch::COPIES.take().len(), scratch::TILES.take().len(), out)
            })
            .join()
            .unwrap();
            match d.kind {
                // Winograd's buffers are its own (not the scratch slots).
                PathKind::Depthwise | PathKind::Winograd => prop_assert_eq!((copies, tiles), (0, 0)),
                PathKind::Pointwise | PathKind::Im2colGemm { channels_last: false } => {
                    // The image with its rows split by column parity, for stride 2.
                    let phased = if phased_copy(&g) { g.in_len() } else { 0 };
                    prop_assert_eq!(copies, phased);
                    prop_assert!(tiles > 0 && tiles <= d.column_buffer_len);
                }
                PathKind::Im2colGemm { channels_last: true } => {
                    prop_assert_eq!(Some(copies), d.channels_last_copy_len);
                    prop_assert!(tiles > 0 && copies + tiles <= d.column_buffer_len);
                }
            }
            let mut slow = vec![0.0; g.out_len()];
            let (input, weights) = (data(g.in_len(), 21), data(g.weight_len(), 22));
            conv2d_direct(&g, &input, 1, &weights, None, Activation::Linear, &mut slow)
                .unwrap();
            let k = g.col_rows() as f32;
            prop_assert!(max_abs_diff(&out, &slow) <= 1e-4 * (1.0 + k));
        }
    }
}
