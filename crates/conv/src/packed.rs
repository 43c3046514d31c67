//! The packed GEMM of the convolution: weights packed once into micro-kernel panels
//! ([`PackedWeights`]), each column tile unfolded by im2col *straight into* panels
//! (`pack_columns`), and the blocked loops that run the `MR x nr` micro-kernel of
//! `crate::microkernel` over them (`multiply`). The tile's shape is the kernel build's
//! ([`Kernel::nr`]: 16 for AVX2 and portable, 32 for AVX-512); weights are packed for one
//! build and carry it, so a call runs the build its weights were packed for.
//!
//! A panel holds one operand's values for every step `l` of the reduction (`K = c*kh*kw`)
//! side by side: `panel[l*w + t]` is row/column `t` of the panel at step `l`, with `w` the
//! panel width (`MR` = 6, or the kernel's `nr`). Panels are zero-padded at the matrix edge, so the kernel always
//! computes whole tiles; only the valid part of an edge tile is stored.
//!
//! Which operand fills the kernel's vectors is the [`Orientation`]: normally `nr` output pixels
//! (pixel panels of `nr`, weight panels of 6 output channels), whose tiles are stored as
//! contiguous row pieces; for layers with few pixels per image (deep 7x7 layers: 49 pixels
//! would pad to 64) the weights go in the vectors (`nr` channels) and the pixels are broadcast
//! (6 at a time, 49 pads to 54), and tiles are stored transposed. Layers with 16 or more input
//! channels per group (not 1x1) have no column panels at all: their weights are packed in
//! channel panels of `nr` in tap-major order (`Orientation::ChannelsLast`), and the column
//! matrix is read in place by [`crate::channels_last`].
//!
//! The reduction is cut into blocks of equal length (at most `KC_PIXELS` or `KC_CHANNELS`
//! steps); within a block, one weight panel's block stays in cache while all the tile's column
//! panels (their blocks kept in L2: a tile is sized for it) stream past it, so the output is
//! written along its rows, and blocks after the first add to the output tile.

use crate::error::check_len;
use crate::gemm::MatMut;
use crate::im2col::fill_col_row;
use crate::microkernel::{Finish, Kernel, Tile, MR, NR_MAX};
use crate::winograd::WinogradWeights;
use crate::{Conv2dGeometry, KernelError, PathKind};
use std::ops::Range;

/// Reduction steps per block when pixels are in the vectors: the tile goes straight into the
/// output, so blocks can be short (a weight panel's block, `256 x 6` values, is 6 KiB of L1).
const KC_PIXELS: usize = 256;
/// Reduction steps per block when channels are in the vectors: a transposed tile is stored
/// element by element, so blocks are long to make that rare.
const KC_CHANNELS: usize = 2048;

/// The cost of storing a transposed tile, in reduction steps of the kernel (96 scalar stores
/// against 12 FMAs per step).
const TRANSPOSED_STORE_STEPS: u128 = 16;

/// Floats of slack a buffer needs so that a 64-byte aligned run of any length fits in it.
pub(crate) const ALIGN_SLACK: usize = 64 / std::mem::size_of::<f32>() - 1;

/// The first `len` values of `buf` from its first 64-byte aligned element (cache-line aligned
/// panels keep every 16-value piece of a kernel's step inside one line). `buf` has
/// [`ALIGN_SLACK`] values more than `len`.
pub(crate) fn aligned_mut(buf: &mut [f32], len: usize) -> &mut [f32] {
    let skip = buf.as_ptr().align_offset(64).min(ALIGN_SLACK);
    &mut buf[skip..skip + len]
}

/// Which operand the micro-kernel holds in its vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orientation {
    /// Pixels in vectors (panels of `nr` output pixels), output channels broadcast (panels of
    /// 6); tiles are stored as row pieces of the output.
    PixelsInVectors,
    /// Output channels in vectors (panels of `nr`), pixels broadcast (panels of 6); tiles are
    /// stored transposed. For layers with few pixels.
    ChannelsInVectors,
    /// Output channels in vectors, pixels broadcast, like `ChannelsInVectors`, but the column
    /// matrix is never unfolded: the kernel reads it in place from a channels-last copy of the
    /// input (see [`crate::channels_last`]), so the weights' reduction runs tap by tap (`l =
    /// (kh*k_w + kw) * in_c/groups + c`). For layers with enough input channels per group.
    ChannelsLast,
}

impl Orientation {
    /// The orientation that costs an `m x n` product (channels x pixels) with a reduction of
    /// `k` steps least on `kernel`: pixels in vectors unless the other saves more than a tenth of the work,
    /// counting the padding of both operands to whole panels and, with channels in the vectors,
    /// the transposed store of every tile (element by element: about as long as
    /// `TRANSPOSED_STORE_STEPS` reduction steps, which matters for short reductions such as
    /// the 27 steps of a first RGB layer).
    pub fn for_shape(m: usize, n: usize, k: usize, kernel: Kernel) -> Self {
        let k = k.max(1) as u128;
        let nr = kernel.nr();
        let pixels = m.next_multiple_of(MR) as u128 * n.next_multiple_of(nr) as u128 * k;
        let channels = m.next_multiple_of(nr) as u128
            * n.next_multiple_of(MR) as u128
            * (k + TRANSPOSED_STORE_STEPS);
        if channels * 10 < pixels * 9 {
            Orientation::ChannelsInVectors
        } else {
            Orientation::PixelsInVectors
        }
    }

    /// The orientation the GEMM path runs a convolution in (the production path, unless it is
    /// Winograd's): `ChannelsLast` when that path reads the column matrix in place, else
    /// [`Orientation::for_shape`] of one group's output channels and the output pixels of one
    /// image, on `kernel`.
    pub fn of(geom: &Conv2dGeometry, kernel: Kernel) -> Self {
        match crate::conv::gemm_kind(geom) {
            PathKind::Im2colGemm {
                channels_last: true,
            } => Orientation::ChannelsLast,
            _ => Self::for_shape(
                geom.out_c_per_group(),
                geom.col_cols(),
                geom.col_rows(),
                kernel,
            ),
        }
    }

    /// Output channels per weight panel on `kernel`.
    pub fn weight_panel(self, kernel: Kernel) -> usize {
        match self {
            Orientation::PixelsInVectors => kernel.mr(),
            Orientation::ChannelsInVectors | Orientation::ChannelsLast => kernel.nr(),
        }
    }

    /// Output pixels per column panel on `kernel`.
    pub fn column_panel(self, kernel: Kernel) -> usize {
        match self {
            Orientation::PixelsInVectors => kernel.nr(),
            Orientation::ChannelsInVectors | Orientation::ChannelsLast => kernel.mr(),
        }
    }
}

/// A convolution's weights `[out_c, in_c/groups * k_h * k_w]` packed into micro-kernel panels
/// of one kernel build, once, for every call that uses them: per group, `ceil(mg / w)` panels
/// of `w` output channels (`w` = [`Orientation::weight_panel`]), each `K x w`, the last one
/// zero-padded.
/// A depthwise convolution runs a direct kernel, not a GEMM: its weights are kept as given.
///
/// The panels start on a cache line (a clone keeps the values, not necessarily the alignment).
#[derive(Debug, Clone)]
pub struct PackedWeights {
    /// Kept as given, for the depthwise kernel.
    depthwise: bool,
    orientation: Orientation,
    /// The build the panels are shaped for, and that runs them.
    kernel: Kernel,
    groups: usize,
    /// Output channels per group.
    mg: usize,
    /// Reduction length `in_c/groups * k_h * k_w`.
    k: usize,
    /// `[k_h, k_w]` (the channels-last order depends on the split of `k`).
    window: [usize; 2],
    /// The weights transformed for Winograd F(4x4, 3x3) instead of GEMM panels (then `data`
    /// holds nothing): what runs a geometry [`crate::winograd::applies`] to.
    winograd: Option<Box<WinogradWeights>>,
    /// The values are `data[start..start + len]`; the slack before and after lets `start` fall
    /// on a cache line.
    data: Vec<f32>,
    start: usize,
    len: usize,
}

impl PartialEq for PackedWeights {
    /// Same shape and the same packed values (wherever they are aligned).
    fn eq(&self, other: &Self) -> bool {
        (
            self.depthwise,
            self.orientation,
            self.kernel,
            self.groups,
            self.mg,
            self.k,
            self.window,
        ) == (
            other.depthwise,
            other.orientation,
            other.kernel,
            other.groups,
            other.mg,
            other.k,
            other.window,
        ) && self.values() == other.values()
            && self.winograd == other.winograd
    }
}

impl PackedWeights {
    /// Packs `weights` (`[out_c, in_c/groups, k_h, k_w]`, PyTorch's layout) for `geom`, for
    /// the selected kernel build ([`Kernel::selected`]), in the orientation the production
    /// path runs it in ([`Orientation::of`]).
    pub fn new(geom: &Conv2dGeometry, weights: &[f32]) -> Result<Self, KernelError> {
        Self::for_kernel(geom, weights, Kernel::selected())
    }

    /// [`PackedWeights::new`] for a given kernel build (which must be one the CPU runs,
    /// [`Kernel::runnable`]). Not part of the stable API.
    #[doc(hidden)]
    pub fn for_kernel(
        geom: &Conv2dGeometry,
        weights: &[f32],
        kernel: Kernel,
    ) -> Result<Self, KernelError> {
        if crate::winograd::applies(geom) {
            return Self::winograd(geom, weights, kernel);
        }
        Self::with_orientation(geom, weights, Orientation::of(geom, kernel), kernel)
    }

    /// The weights transformed for Winograd F(4x4, 3x3) ([`crate::winograd`]), which the
    /// convolution then runs; `geom` must be one [`crate::winograd::applies`] to. Not part of
    /// the stable API (tests and benches compare it with the GEMM packings).
    #[doc(hidden)]
    pub fn winograd(
        geom: &Conv2dGeometry,
        weights: &[f32],
        kernel: Kernel,
    ) -> Result<Self, KernelError> {
        crate::error::check_conv_geometry(geom)?;
        kernel.check()?;
        if !crate::winograd::applies(geom) {
            return Err(KernelError::Invalid {
                what: "winograd weights",
                reason: "the geometry is not a 3x3, stride 1, ungrouped convolution of at \
                         least 32 channels"
                    .into(),
            });
        }
        let transformed = WinogradWeights::new(geom, weights, kernel)?;
        Ok(Self {
            depthwise: false,
            orientation: Orientation::of(geom, kernel),
            kernel,
            groups: geom.groups,
            mg: geom.out_c_per_group(),
            k: geom.col_rows(),
            window: [geom.k_h, geom.k_w],
            winograd: Some(Box::new(transformed)),
            data: Vec::new(),
            start: 0,
            len: 0,
        })
    }

    /// [`PackedWeights::for_kernel`] in a given orientation, which the convolution then runs
    /// in (tests run every orientation of every build on every geometry). Not part of the
    /// stable API.
    #[doc(hidden)]
    pub fn with_orientation(
        geom: &Conv2dGeometry,
        weights: &[f32],
        orientation: Orientation,
        kernel: Kernel,
    ) -> Result<Self, KernelError> {
        crate::error::check_conv_geometry(geom)?;
        kernel.check()?;
        check_len("weights", weights.len(), geom.weight_len())?;
        let (mg, k) = (geom.out_c_per_group(), geom.col_rows());
        let depthwise = geom.is_depthwise();
        let w = orientation.weight_panel(kernel);
        let panels = mg.div_ceil(w);
        let len = match depthwise {
            true => weights.len(),
            false => crate::error::mul_len("packed weights", geom.groups * panels * w, k)?,
        };
        let total = len.checked_add(ALIGN_SLACK).ok_or(KernelError::Invalid {
            what: "packed weights",
            reason: format!("{len} values overflow the address space"),
        })?;
        let mut data = cnn_tensor::try_zeroed(total, "the packed convolution weights")?;
        let start = data.as_ptr().align_offset(64).min(ALIGN_SLACK);
        let values = &mut data[start..start + len];
        if depthwise {
            values.copy_from_slice(weights);
        } else if k > 0 {
            // Where reduction step `l = c*taps + tap` of the im2col order goes.
            let taps = geom.k_h * geom.k_w;
            let cpg = geom.in_c_per_group();
            let step = |l: usize| match orientation {
                Orientation::ChannelsLast => (l % taps) * cpg + l / taps,
                _ => l,
            };
            for (g, group) in values.chunks_exact_mut(panels * w * k).enumerate() {
                for (p, panel) in group.chunks_exact_mut(w * k).enumerate() {
                    let rows = w.min(mg - p * w);
                    for t in 0..rows {
                        let row = &weights[(g * mg + p * w + t) * k..][..k];
                        for (l, &v) in row.iter().enumerate() {
                            panel[step(l) * w + t] = v;
                        }
                    }
                }
            }
        }
        Ok(Self {
            depthwise,
            orientation,
            kernel,
            groups: geom.groups,
            mg,
            k,
            window: [geom.k_h, geom.k_w],
            winograd: None,
            data,
            start,
            len,
        })
    }

    /// The packed values (or the depthwise weights as given).
    fn values(&self) -> &[f32] {
        &self.data[self.start..self.start + self.len]
    }

    /// Whether these weights were packed for a geometry of this shape. Weights transformed for
    /// Winograd fit only geometries the Winograd path takes (not the same layer on an image
    /// too small for it: pack them again for that one).
    pub fn fits(&self, geom: &Conv2dGeometry) -> bool {
        self.depthwise == geom.is_depthwise()
            && self.groups == geom.groups
            && self.mg == geom.out_c_per_group()
            && self.k == geom.col_rows()
            && self.window == [geom.k_h, geom.k_w]
            && self.winograd.as_ref().is_none_or(|w| w.fits(geom))
    }

    /// The transformed weights, when the convolution runs as Winograd F(4x4, 3x3).
    pub(crate) fn winograd_weights(&self) -> Option<&WinogradWeights> {
        self.winograd.as_deref()
    }

    /// The weights as given, when they are a depthwise convolution's.
    pub(crate) fn depthwise(&self) -> Option<&[f32]> {
        self.depthwise.then(|| self.values())
    }

    pub fn orientation(&self) -> Orientation {
        self.orientation
    }

    /// The kernel build the panels are shaped for (and that runs them).
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * std::mem::size_of::<f32>()
            + self.winograd.as_ref().map_or(0, |w| w.bytes())
    }

    /// The panels of output channels `m0 .. m0 + m` of group `g` (`m0` a multiple of the
    /// panel width).
    pub(crate) fn panels(&self, g: usize, m0: usize, m: usize) -> &[f32] {
        let w = self.orientation.weight_panel(self.kernel);
        let per_group = self.mg.div_ceil(w) * w * self.k;
        let start = g * per_group + m0 * self.k;
        &self.values()[start..start + m.div_ceil(w) * w * self.k]
    }
}

/// Values of the column panels of an `n`-pixel tile (zero-padded to whole panels).
pub(crate) fn column_panels_len(
    k: usize,
    n: usize,
    orientation: Orientation,
    kernel: Kernel,
) -> usize {
    let w = orientation.column_panel(kernel);
    k * n.next_multiple_of(w)
}

/// Unfolds rows `rows` of the column matrix of [`crate::im2col()`] (group `group` of `image`),
/// for output pixels `pixels` (`oh*out_w + ow`), into column panels: `panels[p]` holds those
/// rows of panel `p` (`rows.len() * w` values, `w` the panel width), so that disjoint row
/// ranges of the same panels can be unfolded by different threads ([`panel_rows`] cuts them).
/// Each row of the matrix is unfolded, for the whole output rows the tile touches, into `row`
/// (cache-resident scratch of at least `pixels.len().next_multiple_of(nr) + 2 * out_w`
/// values) and then dealt out to the panels in whole-panel pieces. Pixels past the tile's end
/// in the last panel get whatever the scratch holds there (stale values); they only feed
/// output columns that are never stored. With `phased`, `image`'s rows are split by column
/// parity ([`crate::im2col::phase_rows`], stride 2).
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_columns(
    geom: &Conv2dGeometry,
    image: &[f32],
    group: usize,
    pixels: Range<usize>,
    rows: Range<usize>,
    orientation: Orientation,
    kernel: Kernel,
    panels: &mut [&mut [f32]],
    row: &mut [f32],
    phased: bool,
) {
    let w = orientation.column_panel(kernel);
    let args = (geom, image, group, pixels, rows);
    match w {
        32 => pack_columns_w::<32>(args, panels, row, phased),
        16 => pack_columns_w::<16>(args, panels, row, phased),
        _ => {
            debug_assert_eq!(w, MR);
            pack_columns_w::<MR>(args, panels, row, phased)
        }
    }
}

/// What [`pack_columns_w`] unfolds: geometry, image, group, output pixels, reduction rows.
type Unfolding<'a> = (
    &'a Conv2dGeometry,
    &'a [f32],
    usize,
    Range<usize>,
    Range<usize>,
);

/// The column panels of an `n`-pixel tile in `buf` (at least [`column_panels_len`] values),
/// each cut at the reduction rows in `cuts` (increasing, inside `0..k`): one list of panel
/// pieces per row range `[0, cuts[0])`, `[cuts[0], cuts[1])`, …, `[cuts[last], k)`.
pub(crate) fn panel_rows<'b>(
    buf: &'b mut [f32],
    k: usize,
    n: usize,
    orientation: Orientation,
    kernel: Kernel,
    cuts: &[usize],
) -> Vec<Vec<&'b mut [f32]>> {
    let w = orientation.column_panel(kernel);
    let mut ranges: Vec<Vec<&mut [f32]>> = (0..=cuts.len()).map(|_| Vec::new()).collect();
    let len = column_panels_len(k, n, orientation, kernel);
    for mut panel in buf[..len].chunks_mut(k * w) {
        let mut done = 0;
        for (range, &cut) in ranges.iter_mut().zip(cuts) {
            let (piece, rest) = panel.split_at_mut((cut - done) * w);
            range.push(piece);
            (panel, done) = (rest, cut);
        }
        if let Some(last) = ranges.last_mut() {
            last.push(panel);
        }
    }
    ranges
}

/// [`pack_columns`] for panels of `W` pixels.
fn pack_columns_w<const W: usize>(
    (geom, image, group, pixels, rows): Unfolding<'_>,
    panels: &mut [&mut [f32]],
    row: &mut [f32],
    phased: bool,
) {
    let (p0, p1) = (pixels.start, pixels.end);
    let n = p1 - p0;
    let plane = geom.in_h * geom.in_w;
    let first_channel = group * geom.in_c_per_group();
    let taps = geom.k_h * geom.k_w;
    let padded = n.next_multiple_of(W);
    // The whole output rows the tile touches, and where the tile starts in the first.
    let (oh0, oh1) = (p0 / geom.out_w, p1.div_ceil(geom.out_w));
    let (off, span) = (p0 - oh0 * geom.out_w, (oh1 - oh0) * geom.out_w);
    let r0 = rows.start;
    for r in rows {
        let c = first_channel + r / taps;
        let src = &image[c * plane..(c + 1) * plane];
        let piece = if geom.is_pointwise() {
            // The column matrix of a 1x1 convolution is the input itself.
            &src[p0..p0 + padded.min(plane - p0)]
        } else {
            let (kh, kw) = ((r / geom.k_w) % geom.k_h, r % geom.k_w);
            fill_col_row(geom, src, kh, kw, oh0, &mut row[..span], phased);
            &row[off..off + padded]
        };
        let at = (r - r0) * W;
        // Whole panels as fixed-size copies (a variable-length copy would be a memcpy call).
        let mut pieces = piece.chunks_exact(W);
        for (panel, piece) in panels.iter_mut().zip(pieces.by_ref()) {
            let d = &mut panel[at..at + W];
            if let (Ok(d), Ok(piece)) = (<&mut [f32; W]>::try_from(d), <&[f32; W]>::try_from(piece))
            {
                *d = *piece;
            }
        }
        // The input's last pixels: the rest of that panel is never stored.
        let tail = pieces.remainder();
        if let Some(panel) = panels.get_mut(piece.len() / W).filter(|_| !tail.is_empty()) {
            panel[at..at + tail.len()].copy_from_slice(tail);
        }
    }
}

/// `c = W x cols` for one block: `weights` are the panels of the block's `m` output channels
/// (from [`PackedWeights::panels`]), `cols` the column panels of its `n` pixels (from
/// [`pack_columns`]), `k` the reduction length; `c` is `m x n` and is overwritten (with
/// `onto`, added to), then finished by `finish` when given.
#[allow(clippy::too_many_arguments)]
pub(crate) fn multiply(
    kernel: Kernel,
    orientation: Orientation,
    k: usize,
    weights: &[f32],
    cols: &[f32],
    c: &mut MatMut<'_>,
    finish: Option<Finish<'_>>,
    onto: bool,
) {
    debug_assert_ne!(
        orientation,
        Orientation::ChannelsLast,
        "has no column panels"
    );
    let (m, n) = c.dims();
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            let row = c.row(i);
            match onto {
                true => row
                    .iter_mut()
                    .for_each(|x| *x = finish.map_or(*x, |f| f.apply(i, *x))),
                false => row.fill(finish.map_or(0.0, |f| f.apply(i, 0.0))),
            }
        }
        return;
    }
    let (ww, cw) = (
        orientation.weight_panel(kernel),
        orientation.column_panel(kernel),
    );
    let (w_panels, c_panels) = (m.div_ceil(ww), n.div_ceil(cw));
    let nr = kernel.nr();
    let mut tile: Tile = [0.0; MR * NR_MAX];
    let kc_max = match orientation {
        Orientation::PixelsInVectors => KC_PIXELS,
        Orientation::ChannelsInVectors | Orientation::ChannelsLast => KC_CHANNELS,
    };
    // Blocks of equal size (576 = 3 x 192 rather than 256 + 256 + 64).
    let kc_even = k.div_ceil(k.div_ceil(kc_max));
    for pc in (0..k).step_by(kc_even) {
        let kc = kc_even.min(k - pc);
        let accumulate = pc > 0 || onto;
        // The last reduction block stores the finished values.
        let finish = finish.filter(|_| pc + kc == k);
        // A tile at the block's edge: computed whole, its valid part stored.
        let mut edge = |c: &mut MatMut<'_>, wp: usize, cp: usize| {
            let col_panel = &cols[(cp * k + pc) * cw..][..kc * cw];
            let w_panel = &weights[(wp * k + pc) * ww..][..kc * ww];
            match orientation {
                Orientation::PixelsInVectors => {
                    kernel.tile(kc, w_panel, col_panel, &mut tile);
                    let at = (wp * MR, cp * nr);
                    store(c, &tile, nr, at, false, accumulate, finish);
                }
                Orientation::ChannelsInVectors | Orientation::ChannelsLast => {
                    kernel.tile(kc, col_panel, w_panel, &mut tile);
                    let at = (wp * nr, cp * MR);
                    store(c, &tile, nr, at, true, accumulate, finish);
                }
            }
        };
        // One weight panel's block stays in L1 while the tile's column panels (their block of
        // this reduction step range, kept in L2) stream past it; the output is written
        // along its rows.
        for wp in 0..w_panels {
            // The whole tiles of a row of tiles in one kernel call, the rest one by one.
            let mut done = 0;
            if orientation == Orientation::PixelsInVectors {
                let whole = n / nr;
                if let Some((ptr, rs)) = c.sub_block_ptr(wp * MR, 0, MR, whole * nr) {
                    let w_panel = &weights[(wp * k + pc) * ww..][..kc * ww];
                    // SAFETY: the MR x whole*nr sub-block at (wp*MR, 0) lies inside `c`, whose
                    // elements the `&mut` borrow makes ours; panel t's block starts at
                    // cols[(t*k + pc)*nr].
                    unsafe {
                        let vc = &cols[pc * cw..];
                        let (count, stride) = (whole, k * cw);
                        kernel.tiles_into(
                            kc,
                            w_panel,
                            vc,
                            count,
                            stride,
                            ptr,
                            rs,
                            accumulate,
                            finish.map(|f| f.rows_from(wp * MR)),
                        );
                    }
                    done = whole;
                }
            }
            for cp in done..c_panels {
                edge(c, wp, cp);
            }
        }
    }
}

/// Writes (or adds) the valid part of a tile (rows of `nr`) into `c` at `(i0, j0)`: tile
/// element `(t, u)` goes to `(i0 + t, j0 + u)`, or to `(i0 + u, j0 + t)` when `transposed`;
/// then `finish`es it.
fn store(
    c: &mut MatMut<'_>,
    tile: &Tile,
    nr: usize,
    (i0, j0): (usize, usize),
    transposed: bool,
    add: bool,
    finish: Option<Finish<'_>>,
) {
    let (m, n) = c.dims();
    let done = |i: usize, x: f32| finish.map_or(x, |f| f.apply(i, x));
    if !transposed {
        // Whole row pieces (the last weight panel of 64 channels has 4 of 6 rows: a sixteenth
        // of the tiles of a first RGB layer, stored as vectors, not value by value).
        let len = nr.min(n - j0);
        for (i, src) in tile.chunks_exact(nr).take(MR.min(m - i0)).enumerate() {
            let dst = &mut c.row(i0 + i)[j0..j0 + len];
            if add {
                dst.iter_mut().zip(src).for_each(|(d, &v)| *d += v);
            } else if let Ok(whole) = <&mut [f32; 16]>::try_from(&mut *dst) {
                // A fixed-size copy: two vector moves, not a call to `memcpy`.
                whole.copy_from_slice(&src[..16]);
            } else if let Ok(whole) = <&mut [f32; 32]>::try_from(&mut *dst) {
                whole.copy_from_slice(src);
            } else {
                dst.copy_from_slice(&src[..len]);
            }
            if finish.is_some() {
                dst.iter_mut().for_each(|d| *d = done(i0 + i, *d));
            }
        }
        return;
    }
    for i in 0..nr.min(m - i0) {
        let row = &mut c.row(i0 + i)[j0..];
        for (j, d) in row.iter_mut().take(MR.min(n - j0)).enumerate() {
            let v = tile[j * nr + i];
            *d = done(i0 + i, if add { *d + v } else { v });
        }
    }
}
