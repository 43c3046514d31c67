//! The GEMM micro-kernel: one `6 x 16` tile of a matrix product, `T[i][j] = sum_l
//! bc[l*6 + i] * vc[l*16 + j]`, from two packed panels (`bc`: 6 values per step, broadcast;
//! `vc`: 16 values per step, two 8-lane vectors). Twelve accumulators are enough to hide the
//! FMA latency on two FMA pipes, and each step loads 2 vectors and 6 scalars for 12 FMAs.
//! A second entry, `Kernel::gather_tile`, runs the same loop with the 6 broadcast values read
//! in place (from 6 places of a channels-last image, tap by tap) instead of from a panel.
//!
//! Two builds of the same loop: [`tile_avx2`] with AVX2+FMA intrinsics, chosen at run time by
//! [`has_avx2_fma`], and a portable one the compiler vectorises for the baseline target (SSE2
//! on x86-64, NEON on aarch64). Packing and the loops around the kernel live in
//! [`crate::packed`]; this module only multiplies panels (and finishes stored tiles with bias and
//! a clamping activation, [`Finish`], when asked).

use crate::activation::{at_least, at_most};
use crate::Activation;

/// Values broadcast per step: rows of a tile.
pub(crate) const MR: usize = 6;
/// Values per step held in vectors: columns of a tile.
pub(crate) const NR: usize = 16;
/// One tile, row-major `MR x NR`.
pub(crate) type Tile = [f32; MR * NR];

/// Whether the kernels run their AVX2+FMA builds: the CPU has them and `CNN_KERNEL` does not
/// ask for another build ([`crate::isa::selected`]).
pub(crate) fn has_avx2_fma() -> bool {
    crate::isa::selected() == crate::isa::Isa::Avx2
}

/// Which build of the kernel a call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// AVX2+FMA intrinsics; only constructed when the CPU has them ([`Kernel::detect`]).
    Avx2,
    /// Plain Rust for the baseline target.
    Portable,
}

impl Kernel {
    /// The fastest build this CPU runs, or the portable one when `portable` is set.
    pub fn detect(portable: bool) -> Self {
        if !portable && has_avx2_fma() {
            Kernel::Avx2
        } else {
            Kernel::Portable
        }
    }

    /// Computes the tile of `k` steps of the panels `bc` (`k * MR` values) and `vc`
    /// (`k * NR` values) into `out` (overwritten).
    #[inline]
    pub fn tile(self, k: usize, bc: &[f32], vc: &[f32], out: &mut Tile) {
        let (bc, vc) = (&bc[..k * MR], &vc[..k * NR]);
        let one = Panels {
            count: 1,
            stride: 0,
        };
        // SAFETY: the panels hold exactly `k` steps; `out` holds a whole tile.
        unsafe { self.run(k, bc, vc, one, Dst::Tile(out)) }
    }

    /// Like [`Kernel::tile`], but for `count` tiles side by side, written straight into a
    /// matrix: tile `t` multiplies `bc` by the column panel at `vc[t * stride ..]` (`k` steps);
    /// its row `i` goes to the `NR` values at `c.add(i * rs + t * NR)`, added to what is there
    /// when `accumulate` is set, then finished by `finish` (rows from 0) when given. One
    /// call per row of tiles, not per tile: with a short reduction (K = 27 for a first RGB
    /// layer) a call's own cost is a tenth of a tile's.
    ///
    /// # Panics
    /// If `vc` is shorter than the last panel's end, or `bc` than `k` steps.
    ///
    /// # Safety
    /// For every `i < MR`, the `count * NR` values at `c.add(i * rs)` are valid for reads and
    /// writes and not accessed by anyone else during the call.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn tiles_into(
        self,
        k: usize,
        bc: &[f32],
        vc: &[f32],
        count: usize,
        stride: usize,
        c: *mut f32,
        rs: usize,
        accumulate: bool,
        finish: Option<Finish<'_>>,
    ) {
        if count == 0 {
            return;
        }
        let bc = &bc[..k * MR];
        let vc = &vc[..(count - 1) * stride + k * NR];
        let panels = Panels { count, stride };
        let dst = Dst::Raw {
            c,
            rs,
            accumulate,
            finish,
        };
        // SAFETY: the panels hold `k` steps each (sliced above); the destination is the
        // caller's promise.
        unsafe { self.run(k, bc, vc, panels, dst) }
    }

    /// The tile of a product whose broadcast operand is read in place, not from a panel:
    /// `out[i][j] (+)= sum over taps t, steps s of src[g.pixels[i] + g.taps[t] + s] *
    /// vc[(t * g.steps + s) * NR + j]`. Added to `out` when `accumulate` is set.
    ///
    /// # Panics
    /// If a read would fall outside `g.src` or `vc` is shorter than `taps * steps` steps
    /// (checked once per tile, before the loop).
    #[inline]
    pub fn gather_tile(self, g: &Gather<'_>, vc: &[f32], out: &mut Tile, accumulate: bool) {
        let vc = checked_gather(g, vc);
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx2` is only built by `detect` when the CPU has AVX2 and FMA; every read
            // is `src[pixels[i] + taps[t] + s]` with `s < steps`, inside `src` (checked).
            Kernel::Avx2 => unsafe {
                if g.prefetch_next {
                    gather_tile_avx2::<true>(g, vc.as_ptr(), out, accumulate)
                } else {
                    gather_tile_avx2::<false>(g, vc.as_ptr(), out, accumulate)
                }
            },
            _ => gather_tile_portable::<MR>(g, vc, out, accumulate),
        }
    }

    /// Row 0 of [`Kernel::gather_tile`] alone (pixel `g.pixels[0]`), into `out`: for a last
    /// tile with one pixel. The six-row loop would spend six rows' FMAs on it; this one runs
    /// four steps' products in separate accumulators, about one step per cycle instead of six.
    /// The sum is taken in another order, so it may differ from the tile's row 0 by rounding.
    ///
    /// # Panics
    /// As [`Kernel::gather_tile`].
    #[inline]
    pub fn gather_first_row(
        self,
        g: &Gather<'_>,
        vc: &[f32],
        out: &mut [f32; NR],
        accumulate: bool,
    ) {
        let vc = checked_gather(g, vc);
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as in `gather_tile`; only `pixels[0]` is read.
            Kernel::Avx2 => unsafe { gather_row_avx2(g, vc.as_ptr(), out, accumulate) },
            _ => gather_tile_portable::<1>(g, vc, out, accumulate),
        }
    }

    /// # Safety
    /// `bc` holds `k` steps and `vc` the `k` steps of each of `panels`; a raw destination is
    /// as [`Kernel::tiles_into`]; a tile destination comes with one panel.
    unsafe fn run(self, k: usize, bc: &[f32], vc: &[f32], panels: Panels, dst: Dst<'_>) {
        debug_assert!(matches!(dst, Dst::Raw { .. }) || panels.count == 1);
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx2` is only built by `detect` when the CPU has AVX2 and FMA; the
            // rest is this function's contract.
            Kernel::Avx2 => unsafe { tile_avx2(k, bc.as_ptr(), vc.as_ptr(), panels, dst) },
            // SAFETY: this function's contract.
            _ => unsafe { tile_portable(k, bc, vc, panels, dst) },
        }
    }
}

/// Bias and a clamping activation, applied to values as they are stored instead of in a
/// separate pass over the output: row `i` of what is stored gets `x + bias[i]`, then is clamped
/// to `[lo, hi]` as the activations do (`at_most(at_least(x, lo), hi)`: a NaN becomes `lo`).
/// ReLU is `(0, inf)`, Clip its bounds; no activation is no clamp (a NaN stays NaN).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Finish<'a> {
    pub bias: Option<&'a [f32]>,
    pub clamp: Option<(f32, f32)>,
}

impl<'a> Finish<'a> {
    /// The finish of `bias` and `act`, or `None` when `act` is not a clamp (sigmoid, tanh).
    pub fn of(bias: Option<&'a [f32]>, act: Activation) -> Option<Self> {
        Some(Self {
            bias,
            clamp: act.as_clamp()?,
        })
    }

    /// The same finish for the rows from `i0` on (its row 0 is this one's row `i0`).
    pub fn rows_from(self, i0: usize) -> Self {
        Self {
            bias: self.bias.map(|b| &b[i0..]),
            ..self
        }
    }

    /// `x` finished as row `i`.
    #[inline(always)]
    pub fn apply(&self, i: usize, x: f32) -> f32 {
        let x = match self.bias {
            Some(b) => x + b[i],
            None => x,
        };
        match self.clamp {
            Some((lo, hi)) => at_most(at_least(x, lo), hi),
            None => x,
        }
    }

    /// [`Finish::apply`] to the 8 values of `v`, all of row `i`.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[inline]
    pub unsafe fn apply8(
        &self,
        i: usize,
        v: std::arch::x86_64::__m256,
    ) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        let v = match self.bias {
            Some(b) => _mm256_add_ps(v, _mm256_set1_ps(b[i])),
            None => v,
        };
        match self.clamp {
            // maxps gives its second operand for a NaN: `at_least`'s `lo`.
            Some((lo, hi)) => {
                _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(lo)), _mm256_set1_ps(hi))
            }
            None => v,
        }
    }
}

/// The column panels of a row of tiles: `count` panels, `stride` values apart.
#[derive(Clone, Copy)]
struct Panels {
    count: usize,
    stride: usize,
}

/// Where a kernel puts its tile.
enum Dst<'a> {
    Tile(&'a mut Tile),
    /// `MR` rows of `NR` values, `rs` apart, at `c` (see [`Kernel::tiles_into`]).
    Raw {
        c: *mut f32,
        rs: usize,
        accumulate: bool,
        finish: Option<Finish<'a>>,
    },
}

/// The broadcast operand of [`Kernel::gather_tile`], read in place: tile row `i` reads, for each
/// tap offset `t` in `taps`, the `steps` consecutive values at `src[pixels[i] + t ..]`.
pub(crate) struct Gather<'a> {
    pub src: &'a [f32],
    pub pixels: [usize; MR],
    pub taps: &'a [usize],
    pub steps: usize,
    /// Also asks the CPU to fetch, one cache line per step, the values that follow the weights
    /// `vc` in memory, as many as `vc` has: the next block of weights, which would otherwise
    /// come from L3 or memory in the next block's first tile. Only a hint: nothing is read.
    /// (Only the AVX2 build prefetches.)
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub prefetch_next: bool,
}

/// `vc` cut to the steps `g` reads, after checking that every read of `g` is inside `g.src`.
///
/// # Panics
/// If a read would fall outside `g.src`, or `vc` is shorter than `taps * steps` steps.
fn checked_gather<'v>(g: &Gather<'_>, vc: &'v [f32]) -> &'v [f32] {
    let steps = g.taps.len() * g.steps;
    let reach = g.pixels.iter().max().copied().unwrap_or(0)
        + g.taps.iter().max().copied().unwrap_or(0)
        + g.steps;
    assert!(
        g.taps.is_empty() || g.steps == 0 || reach <= g.src.len(),
        "gathered reads reach {reach}, past the source's {} values",
        g.src.len()
    );
    &vc[..steps * NR]
}

/// The portable build of [`Kernel::gather_tile`] (`ROWS` = `MR`), and of
/// [`Kernel::gather_first_row`] (`ROWS` = 1): rows `0 .. ROWS` of the tile into `out`.
fn gather_tile_portable<const ROWS: usize>(
    g: &Gather<'_>,
    vc: &[f32],
    out: &mut [f32],
    accumulate: bool,
) {
    let mut acc = [[0.0f32; NR]; ROWS];
    let mut steps = vc.chunks_exact(NR);
    for &tap in g.taps {
        for (s, v) in steps.by_ref().take(g.steps).enumerate() {
            for (row, &p) in acc.iter_mut().zip(&g.pixels) {
                let b = g.src[p + tap + s];
                row.iter_mut().zip(v).for_each(|(a, &vj)| *a += b * vj);
            }
        }
    }
    for (d, row) in out.chunks_exact_mut(NR).zip(&acc) {
        if accumulate {
            d.iter_mut().zip(row).for_each(|(d, &a)| *d += a);
        } else {
            d.copy_from_slice(row);
        }
    }
}

/// The AVX2+FMA build of [`Kernel::gather_tile`].
///
/// `PREFETCH` is `g.prefetch_next`, made a constant so that the loop without it has no test.
///
/// # Safety
/// The CPU has AVX2 and FMA; `vc` points to `taps * steps * NR` readable values; every
/// `src[pixels[i] + taps[t] + s]`, `s < steps`, is inside `g.src`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gather_tile_avx2<const PREFETCH: bool>(
    g: &Gather<'_>,
    vc: *const f32,
    out: &mut Tile,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let src = g.src.as_ptr();
    // The distance from a step's weights to the same step's in the next block (one cache line
    // of 16 values per step). Prefetching never faults, so the address may lie past `vc`'s
    // allocation (the last block); `wrapping_add` keeps computing it defined.
    let ahead = g.taps.len() * g.steps * NR;
    let mut v = vc;
    for &tap in g.taps {
        // SAFETY (whole loop): the reads are the caller's promise; `v` advances by NR values per
        // step, `taps * steps` steps in all.
        let p = g.pixels.map(|p| src.add(p + tap));
        for s in 0..g.steps {
            let v0 = _mm256_loadu_ps(v);
            let v1 = _mm256_loadu_ps(v.add(8));
            for (row, &pi) in acc.iter_mut().zip(&p) {
                let b = _mm256_broadcast_ss(&*pi.add(s));
                row[0] = _mm256_fmadd_ps(b, v0, row[0]);
                row[1] = _mm256_fmadd_ps(b, v1, row[1]);
            }
            if PREFETCH {
                _mm_prefetch::<_MM_HINT_T1>(v.wrapping_add(ahead).cast::<i8>());
            }
            v = v.add(NR);
        }
    }
    let o = out.as_mut_ptr();
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: `out` holds MR rows of NR values.
        let (mut r0, mut r1) = (row[0], row[1]);
        if accumulate {
            r0 = _mm256_add_ps(r0, _mm256_loadu_ps(o.add(i * NR)));
            r1 = _mm256_add_ps(r1, _mm256_loadu_ps(o.add(i * NR + 8)));
        }
        _mm256_storeu_ps(o.add(i * NR), r0);
        _mm256_storeu_ps(o.add(i * NR + 8), r1);
    }
}

/// The AVX2+FMA build of [`Kernel::gather_first_row`]: steps `4u .. 4u + 4` of a tap go to
/// four pairs of accumulators, so that eight FMA chains hide the FMA latency.
///
/// # Safety
/// As [`gather_tile_avx2`], for `pixels[0]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gather_row_avx2(g: &Gather<'_>, vc: *const f32, out: &mut [f32; NR], accumulate: bool) {
    use std::arch::x86_64::*;
    const SETS: usize = 4;
    let mut acc = [[_mm256_setzero_ps(); 2]; SETS];
    let src = g.src.as_ptr().add(g.pixels[0]);
    let mut v = vc;
    for &tap in g.taps {
        // SAFETY (whole loop): as in `gather_tile_avx2`.
        let p = src.add(tap);
        let whole = g.steps / SETS * SETS;
        for s in (0..whole).step_by(SETS) {
            for (u, a) in acc.iter_mut().enumerate() {
                let b = _mm256_broadcast_ss(&*p.add(s + u));
                a[0] = _mm256_fmadd_ps(b, _mm256_loadu_ps(v.add(u * NR)), a[0]);
                a[1] = _mm256_fmadd_ps(b, _mm256_loadu_ps(v.add(u * NR + 8)), a[1]);
            }
            v = v.add(SETS * NR);
        }
        for s in whole..g.steps {
            let b = _mm256_broadcast_ss(&*p.add(s));
            acc[0][0] = _mm256_fmadd_ps(b, _mm256_loadu_ps(v), acc[0][0]);
            acc[0][1] = _mm256_fmadd_ps(b, _mm256_loadu_ps(v.add(8)), acc[0][1]);
            v = v.add(NR);
        }
    }
    let sum = |h: usize| {
        let pair = |x: usize, y: usize| _mm256_add_ps(acc[x][h], acc[y][h]);
        _mm256_add_ps(pair(0, 1), pair(2, 3))
    };
    let (mut r0, mut r1) = (sum(0), sum(1));
    let o = out.as_mut_ptr();
    // SAFETY: `out` holds NR values.
    if accumulate {
        r0 = _mm256_add_ps(r0, _mm256_loadu_ps(o));
        r1 = _mm256_add_ps(r1, _mm256_loadu_ps(o.add(8)));
    }
    _mm256_storeu_ps(o, r0);
    _mm256_storeu_ps(o.add(8), r1);
}

/// The portable kernel: the same tiles with plain arithmetic.
///
/// # Safety
/// As [`Kernel::run`].
unsafe fn tile_portable(k: usize, bc: &[f32], vc: &[f32], panels: Panels, mut dst: Dst<'_>) {
    for t in 0..panels.count {
        let vc = &vc[t * panels.stride..][..k * NR];
        let mut acc = [[0.0f32; NR]; MR];
        for (b, v) in bc.chunks_exact(MR).zip(vc.chunks_exact(NR)) {
            for (row, &bi) in acc.iter_mut().zip(b) {
                for (a, &vj) in row.iter_mut().zip(v) {
                    *a += bi * vj;
                }
            }
        }
        match &mut dst {
            &mut Dst::Raw {
                c,
                rs,
                accumulate,
                finish,
            } => {
                for (i, row) in acc.iter().enumerate() {
                    // SAFETY: the caller's promise: row i's NR values of tile t are ours.
                    let d = unsafe { std::slice::from_raw_parts_mut(c.add(i * rs + t * NR), NR) };
                    if accumulate {
                        d.iter_mut().zip(row).for_each(|(d, &a)| *d += a);
                    } else {
                        d.copy_from_slice(row);
                    }
                    if let Some(f) = &finish {
                        d.iter_mut().for_each(|d| *d = f.apply(i, *d));
                    }
                }
            }
            Dst::Tile(out) => {
                for (d, row) in out.chunks_exact_mut(NR).zip(&acc) {
                    d.copy_from_slice(row);
                }
            }
        }
    }
}

/// The AVX2+FMA kernel.
///
/// # Safety
/// The CPU has AVX2 and FMA; `bc` points to `k * MR` readable values and `vc` to `panels`
/// (each `k * NR` values); the destination is as [`Kernel::run`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(k: usize, bc: *const f32, vc: *const f32, panels: Panels, mut dst: Dst<'_>) {
    use std::arch::x86_64::*;
    for t in 0..panels.count {
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        let (mut b, mut v) = (bc, vc.add(t * panels.stride));
        for _ in 0..k {
            // SAFETY (whole loop): step l reads bc[l*MR .. l*MR + MR] and the panel's
            // [l*NR .. l*NR + NR], inside the panels for l < k.
            let v0 = _mm256_loadu_ps(v);
            let v1 = _mm256_loadu_ps(v.add(8));
            for (i, row) in acc.iter_mut().enumerate() {
                let a = _mm256_broadcast_ss(&*b.add(i));
                row[0] = _mm256_fmadd_ps(a, v0, row[0]);
                row[1] = _mm256_fmadd_ps(a, v1, row[1]);
            }
            b = b.add(MR);
            v = v.add(NR);
        }
        match &mut dst {
            &mut Dst::Raw {
                c,
                rs,
                accumulate,
                finish,
            } => {
                for (i, row) in acc.iter().enumerate() {
                    // SAFETY: the caller's promise: row i's NR values of tile t are ours.
                    let p = c.add(i * rs + t * NR);
                    let (mut r0, mut r1) = (row[0], row[1]);
                    if accumulate {
                        r0 = _mm256_add_ps(r0, _mm256_loadu_ps(p));
                        r1 = _mm256_add_ps(r1, _mm256_loadu_ps(p.add(8)));
                    }
                    if let Some(f) = &finish {
                        (r0, r1) = (f.apply8(i, r0), f.apply8(i, r1));
                    }
                    _mm256_storeu_ps(p, r0);
                    _mm256_storeu_ps(p.add(8), r1);
                }
            }
            Dst::Tile(out) => {
                let o = out.as_mut_ptr();
                for (i, row) in acc.iter().enumerate() {
                    // SAFETY: `out` holds MR rows of NR values.
                    _mm256_storeu_ps(o.add(i * NR), row[0]);
                    _mm256_storeu_ps(o.add(i * NR + 8), row[1]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
