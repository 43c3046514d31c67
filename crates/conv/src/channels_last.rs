//! im2col without the copy: the production path of convolutions with many input channels.
//!
//! Seen from an output pixel, its column of the im2col matrix is, tap by tap, the input
//! channels of one input pixel: `cols[(c, kh, kw), p] = x[c, y(p) + kh*d_h, x(p) + kw*d_w]`. If
//! the input is stored *channels-last* (`[h, w, c]`) and zero-padded, those `c/groups` values are
//! consecutive in memory, at an offset that is the pixel's plus the tap's. So the GEMM can read
//! the column matrix in place: the micro-kernel holds `nr` output channels in its vectors (16
//! or 32, [`Kernel::nr`]) and broadcasts the values of 6 output pixels, each read from `image[pixel + tap + s]` for the
//! steps `s` of a tap (`Kernel::gather_tile`). The weights are packed once in the same
//! tap-major reduction order ([`crate::packed::Orientation::ChannelsLast`]).
//!
//! The only copy left is the layout change, one pass over the input: the padded channels-last
//! image has `(in_h + pads) * (in_w + pads) * in_c` values, where the column matrix has
//! `in_c*k_h*k_w * out_h*out_w` (9x that for a 3x3 layer with stride 1). The layout change is
//! done once per image and read by every worker; each worker keeps only its output tile (`nr`
//! channels of a tile's pixels, in the kernel's layout) before it is stored transposed into the
//! NCHW output.
//!
//! With few input channels per group a tap is too short a run for the kernel's loop, so those
//! layers (the first layer of an RGB network) keep the unfolded panels of [`crate::packed`].

use crate::gemm::MatMut;
use crate::microkernel::{Finish, Gather, Kernel, MR};
use crate::{Conv2dGeometry, PathKind};
use rayon::prelude::*;
use std::ops::Range;

/// Fewest input channels per group for which the channels-last path is chosen: the kernel's
/// inner loop runs over one tap's channels.
pub const MIN_CHANNELS: usize = 16;

/// Reduction steps a block of the weights aims at (whole taps): `384 x 16` values, 24 KiB,
/// stay in L1 while the tile's pixels stream past them (256 to 512 measured alike on AVX2).
/// The same number of steps for 32-wide panels (48 KiB, the L1 of AVX-512 Zen cores): the
/// blocks, and so the order of the sums, are then the same in every build.
const KC_STEPS: usize = 384;

/// Pixels of the output tile stored into the output at a time (4 KiB of tile).
const STORE_PIXELS: usize = 64;

/// Whether the production path runs `geom` channels-last: a convolution with at least
/// [`MIN_CHANNELS`] input channels per group that needs unfolding (not depthwise, not 1x1).
/// The decision is [`crate::conv::describe`]'s; this asks it.
pub fn applies(geom: &Conv2dGeometry) -> bool {
    crate::conv::path_kind(geom)
        == PathKind::Im2colGemm {
            channels_last: true,
        }
}

/// Height and width of the zero-padded input.
fn padded_dims(geom: &Conv2dGeometry) -> (usize, usize) {
    (
        geom.in_h + geom.pad_top + geom.pad_bottom,
        geom.in_w + geom.pad_left + geom.pad_right,
    )
}

/// Values of one image's zero-padded channels-last copy, `(in_h + pads) * (in_w + pads) * in_c`
/// (`None` when that overflows).
pub fn image_len(geom: &Conv2dGeometry) -> Option<usize> {
    let (hp, wp) = padded_dims(geom);
    hp.checked_mul(wp)?.checked_mul(geom.in_c)
}

/// Writes `image` (`[in_c, in_h, in_w]`) into `dst` (one [`image_len`] block) as the padded
/// channels-last image `[in_h + pads, in_w + pads, in_c]`, zeros in the padding (whatever
/// `dst` held before). With `parallel`, rows are copied on rayon's threads. The kernel build
/// picks the copy's: 8x8 blocks transposed with AVX2 shuffles (the AVX2 and AVX-512 builds),
/// or by the portable code.
pub(crate) fn to_channels_last(
    geom: &Conv2dGeometry,
    image: &[f32],
    dst: &mut [f32],
    parallel: bool,
    kernel: Kernel,
) {
    let (_, wp) = padded_dims(geom);
    let row_len = wp * geom.in_c;
    let (top, rest) = dst.split_at_mut(geom.pad_top * row_len);
    let (interior, bottom) = rest.split_at_mut(geom.in_h * row_len);
    top.fill(0.0);
    bottom.fill(0.0);
    let avx2 = cfg!(target_arch = "x86_64") && kernel.isa().has_avx2();
    let copy_row = |(y, row): (usize, &mut [f32])| {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the AVX2 and AVX-512 builds only run when the CPU has AVX2.
            return unsafe { copy_row_avx2(geom, image, y, row) };
        }
        let _ = avx2;
        copy_row::<false>(geom, image, y, row)
    };
    if parallel {
        interior
            .par_chunks_mut(row_len)
            .enumerate()
            .for_each(copy_row);
    } else {
        interior.chunks_mut(row_len).enumerate().for_each(copy_row);
    }
}

/// [`copy_row`] with its 8x8 blocks transposed by AVX2 shuffles.
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn copy_row_avx2(geom: &Conv2dGeometry, image: &[f32], y: usize, row: &mut [f32]) {
    copy_row::<true>(geom, image, y, row)
}

/// Copies input row `y` of every channel into `row` (one padded channels-last row), in blocks
/// of 8 channels x 8 pixels (by AVX2 shuffles when `AVX2`, which only [`copy_row_avx2`] sets).
#[inline(always)]
fn copy_row<const AVX2: bool>(geom: &Conv2dGeometry, image: &[f32], y: usize, row: &mut [f32]) {
    let (c, w) = (geom.in_c, geom.in_w);
    let (left, rest) = row.split_at_mut(geom.pad_left * c);
    let (row, right) = rest.split_at_mut(w * c);
    left.fill(0.0);
    right.fill(0.0);
    let src = |ch: usize| &image[(ch * geom.in_h + y) * w..][..w];
    let (c8, w8) = (c / 8 * 8, w / 8 * 8);
    for c0 in (0..c8).step_by(8) {
        let rows: [&[f32]; 8] = std::array::from_fn(|i| src(c0 + i));
        for x0 in (0..w8).step_by(8) {
            let out = &mut row[x0 * c..][..7 * c + c0 + 8];
            #[cfg(target_arch = "x86_64")]
            if AVX2 {
                // SAFETY: only reached from `copy_row_avx2`, on a CPU with AVX2.
                unsafe { copy_block_avx2(&rows, x0, out, c, c0) };
                continue;
            }
            // A fixed-size block the compiler keeps in registers.
            let block: [[f32; 8]; 8] =
                std::array::from_fn(|i| std::array::from_fn(|j| rows[i][x0 + j]));
            for (j, pixel) in out.chunks_mut(c).enumerate() {
                let values: [f32; 8] = std::array::from_fn(|i| block[i][j]);
                pixel[c0..c0 + 8].copy_from_slice(&values);
            }
        }
        // The last `w % 8` pixels: still 8 channels written at a time.
        for (x, pixel) in row.chunks_exact_mut(c).enumerate().skip(w8) {
            let values: [f32; 8] = std::array::from_fn(|i| rows[i][x]);
            pixel[c0..c0 + 8].copy_from_slice(&values);
        }
    }
    // The last `c % 8` channels, value by value.
    for ch in c8..c {
        for (x, &v) in src(ch).iter().enumerate() {
            row[x * c + ch] = v;
        }
    }
}

/// Pixels `x0 .. x0 + 8` of the 8 channel rows `rows` into `out`: pixel `j`'s 8 values at
/// `out[j * c + c0 ..]`, by [`transpose8`].
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn copy_block_avx2(rows: &[&[f32]; 8], x0: usize, out: &mut [f32], c: usize, c0: usize) {
    use std::arch::x86_64::*;
    // A loop, not `rows.map(..)`: the closure would not inherit AVX2 and the call was kept.
    let mut r = [_mm256_setzero_ps(); 8];
    for (v, row) in r.iter_mut().zip(rows) {
        *v = _mm256_loadu_ps(row[x0..x0 + 8].as_ptr());
    }
    for (j, v) in transpose8(r).into_iter().enumerate() {
        _mm256_storeu_ps(out[j * c + c0..][..8].as_mut_ptr(), v);
    }
}

/// The 8x8 transpose of `r` (value `j` of vector `i` becomes value `i` of vector `j`): unpack
/// pairs, shuffle quads, swap 128-bit lanes.
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn transpose8(r: [std::arch::x86_64::__m256; 8]) -> [std::arch::x86_64::__m256; 8] {
    use std::arch::x86_64::*;
    let t = [
        _mm256_unpacklo_ps(r[0], r[1]),
        _mm256_unpackhi_ps(r[0], r[1]),
        _mm256_unpacklo_ps(r[2], r[3]),
        _mm256_unpackhi_ps(r[2], r[3]),
        _mm256_unpacklo_ps(r[4], r[5]),
        _mm256_unpackhi_ps(r[4], r[5]),
        _mm256_unpacklo_ps(r[6], r[7]),
        _mm256_unpackhi_ps(r[6], r[7]),
    ];
    // For q < 4, s[q] holds values 0-3 and s[q + 4] values 4-7 of column q (low lanes) and of
    // column q + 4 (high lanes).
    let s = [
        _mm256_shuffle_ps::<0x44>(t[0], t[2]),
        _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
        _mm256_shuffle_ps::<0x44>(t[1], t[3]),
        _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
        _mm256_shuffle_ps::<0x44>(t[4], t[6]),
        _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
        _mm256_shuffle_ps::<0x44>(t[5], t[7]),
        _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
    ];
    [
        _mm256_permute2f128_ps::<0x20>(s[0], s[4]),
        _mm256_permute2f128_ps::<0x20>(s[1], s[5]),
        _mm256_permute2f128_ps::<0x20>(s[2], s[6]),
        _mm256_permute2f128_ps::<0x20>(s[3], s[7]),
        _mm256_permute2f128_ps::<0x31>(s[0], s[4]),
        _mm256_permute2f128_ps::<0x31>(s[1], s[5]),
        _mm256_permute2f128_ps::<0x31>(s[2], s[6]),
        _mm256_permute2f128_ps::<0x31>(s[3], s[7]),
    ]
}

/// Offsets, in a channels-last image, of every tap `(kh, kw)` (in the weights' order) from the
/// top-left input pixel of an output pixel's window.
pub fn tap_offsets(geom: &Conv2dGeometry) -> Vec<usize> {
    let (_, wp) = padded_dims(geom);
    (0..geom.k_h)
        .flat_map(|kh| (0..geom.k_w).map(move |kw| kh * geom.dil_h * wp + kw * geom.dil_w))
        .map(|pixels| pixels * geom.in_c)
        .collect()
}

/// Values of a worker's output tile for a tile of `pixels` output pixels on `kernel`: `nr`
/// channels of each pixel, padded to whole panels of 6 pixels.
pub fn tile_len(pixels: usize, kernel: Kernel) -> usize {
    pixels.next_multiple_of(kernel.mr()) * kernel.nr()
}

/// `c = W x cols` for one block of the convolution: output channels `m0 ..` (`c`'s rows, their
/// weight panels in `weights`, from [`crate::PackedWeights::panels`]) of group `group`, at
/// output pixels `p0 ..` (`c`'s columns), with the column matrix read in place from `image`
/// (one padded channels-last image, [`to_channels_last`]) at the offsets `taps`
/// ([`tap_offsets`]). `scratch` holds at least [`tile_len`] of `c`'s columns. With `onto`, the
/// products are added to what `c` holds.
#[allow(clippy::too_many_arguments)]
pub(crate) fn multiply(
    kernel: Kernel,
    geom: &Conv2dGeometry,
    image: &[f32],
    group: usize,
    p0: usize,
    taps: &[usize],
    weights: &[f32],
    scratch: &mut [f32],
    c: &mut MatMut<'_>,
    finish: Option<Finish<'_>>,
    onto: bool,
) {
    let (m, n) = c.dims();
    if m == 0 || n == 0 {
        return;
    }
    let cpg = geom.in_c_per_group();
    let k = geom.col_rows();
    let (_, wp) = padded_dims(geom);
    // Where each output pixel's window starts, in whole panels; pixels past the block repeat
    // its last one (their tile rows are never stored).
    let starts: Vec<usize> = (0..n.next_multiple_of(MR))
        .map(|p| {
            let p = p0 + p.min(n - 1);
            let (oh, ow) = (p / geom.out_w, p % geom.out_w);
            (oh * geom.stride_h * wp + ow * geom.stride_w) * geom.in_c + group * cpg
        })
        .collect();
    // Blocks of whole taps, of equal length (a checked geometry has at least one tap and one
    // channel per group).
    let nr = kernel.nr();
    let blocks = taps.len().div_ceil((KC_STEPS / cpg).max(1));
    let per_block = taps.len().div_ceil(blocks.max(1)).max(1);
    let tiles = &mut scratch[..tile_len(n, kernel)];
    for (wpanel, rows) in (0..m).step_by(nr).enumerate() {
        let panel = &weights[wpanel * k * nr..][..k * nr];
        for (b, block) in taps.chunks(per_block).enumerate() {
            let t0 = b * per_block;
            let vc = &panel[t0 * cpg * nr..][..block.len() * cpg * nr];
            let tiles = tiles.chunks_exact_mut(MR * nr).zip(starts.chunks_exact(MR));
            for (t, (tile, starts)) in tiles.enumerate() {
                let gather = Gather {
                    src: image,
                    pixels: std::array::from_fn(|i| starts[i]),
                    taps: block,
                    steps: cpg,
                    // The block's first tile fetches the next block of weights, which follows
                    // in memory (the next panel's first after a panel's last): with few pixels
                    // and many channels (c512 at 7x7: 9 tiles, 9.4 MB of weights) they come
                    // from L3 or memory once per call, and would stall that block's first tile.
                    prefetch_next: t == 0,
                };
                // A last tile of one pixel (c512 at 7x7: 49 = 8 * 6 + 1) gets the one-row loop.
                if n - t * MR == 1 {
                    kernel.gather_first_row(&gather, vc, tile, b > 0);
                } else {
                    kernel.gather_tile(&gather, vc, tile, b > 0);
                }
            }
        }
        // The tiles hold pixel-major rows of nr channels; the output is channel-major. Stored
        // `STORE_PIXELS` pixels at a time, so that the tiles' rows are read from L1 by all nr
        // output rows.
        for (b, block) in tiles[..n * nr].chunks(STORE_PIXELS * nr).enumerate() {
            let channels = rows..rows + nr.min(m - rows);
            let q0 = b * STORE_PIXELS;
            #[cfg(target_arch = "x86_64")]
            if kernel.isa().has_avx2() {
                // SAFETY: the AVX2 and AVX-512 builds only run when the CPU has AVX2.
                unsafe { store_avx2(block, nr, c, channels, q0, finish, onto) };
                continue;
            }
            store(block, nr, c, channels, 0, q0, finish, onto);
        }
    }
}

/// Stores the pixel-major `block` (rows of `nr` channels) into the output rows `rows` of `c`
/// from column `q0`, row `rows.start + i` taking tile channel `first + i`:
/// `c[rows.start + i][q0 + p] = block[p * nr + first + i]` (with `onto`, added to it),
/// finished by `finish` (bias and clamp of row `rows.start + i`) when given.
#[allow(clippy::too_many_arguments)]
fn store(
    block: &[f32],
    nr: usize,
    c: &mut MatMut<'_>,
    rows: Range<usize>,
    first: usize,
    q0: usize,
    finish: Option<Finish<'_>>,
    onto: bool,
) {
    for (i, r) in rows.enumerate() {
        let out = &mut c.row(r)[q0..];
        for (d, tile_row) in out.iter_mut().zip(block.chunks_exact(nr)) {
            let v = tile_row[first + i] + if onto { *d } else { 0.0 };
            *d = finish.map_or(v, |f| f.apply(r, v));
        }
    }
}

/// [`store`] of tile channels `0 .. rows.len()`, whole 8x8 blocks (8 pixels of 8 channels)
/// transposed by AVX2 shuffles; the last `pixels % 8` pixels and `rows % 8` channels as
/// [`store`] does them.
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn store_avx2(
    block: &[f32],
    nr: usize,
    c: &mut MatMut<'_>,
    rows: Range<usize>,
    q0: usize,
    finish: Option<Finish<'_>>,
    onto: bool,
) {
    use std::arch::x86_64::*;
    let pixels = block.len() / nr;
    let (p8, c8) = (pixels / 8 * 8, rows.len() / 8 * 8);
    for g in (0..c8).step_by(8) {
        for p0 in (0..p8).step_by(8) {
            let mut r = [_mm256_setzero_ps(); 8];
            for (k, v) in r.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(block[(p0 + k) * nr + g..][..8].as_ptr());
            }
            for (j, mut v) in transpose8(r).into_iter().enumerate() {
                let row = rows.start + g + j;
                let out = &mut c.row(row)[q0 + p0..][..8];
                if onto {
                    v = _mm256_add_ps(v, _mm256_loadu_ps(out.as_ptr()));
                }
                if let Some(f) = &finish {
                    v = f.apply_lanes(row, crate::lanes::Avx2(v)).0;
                }
                _mm256_storeu_ps(out.as_mut_ptr(), v);
            }
        }
        let group = rows.start + g..rows.start + g + 8;
        store(&block[p8 * nr..], nr, c, group, g, q0 + p8, finish, onto);
    }
    store(
        block,
        nr,
        c,
        rows.start + c8..rows.end,
        c8,
        q0,
        finish,
        onto,
    );
}
