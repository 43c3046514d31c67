//! The GEMM micro-kernel: one `MR x NR` tile of a matrix product, `T[i][j] = sum_l
//! bc[l*MR + i] * vc[l*NR + j]`, from two packed panels (`bc`: `MR` values per step, broadcast;
//! `vc`: `NR` values per step, two vectors). A second entry, [`Kernel::gather_tile`], runs the
//! same loop with the `MR` broadcast values read in place (from `MR` places of a channels-last
//! image, tap by tap) instead of from a panel.
//!
//! One loop, written once against [`crate::lanes::Lanes`] in [`generic`], built per
//! instruction set ([`Kernel`]): AVX-512F (6 x 32: two 16-lane vectors per row), AVX2+FMA
//! (6 x 16: two 8-lane vectors), NEON on aarch64 (6 x 16: four 4-lane vectors), portable (6 x 16 in plain arithmetic the compiler vectorises
//! for the baseline target, SSE2 or NEON), and a portable build of the AVX-512 tile's shape
//! (6 x 32), which lets every machine test the packing, edge tiles and stores around a 32-wide
//! tile. Twelve accumulators hide the FMA latency on two FMA pipes; each step loads 2 vectors
//! and broadcasts 6 scalars for 12 FMAs. The tile's shape belongs to the kernel
//! ([`Kernel::nr`]); everything around it (packing in [`crate::packed`] and
//! [`crate::channels_last`], edge tiles, stores) reads it from there.
//!
//! This module only multiplies panels (and finishes stored tiles with bias and a clamping
//! activation, [`Finish`], when asked); it does not pack or loop over blocks.

mod generic;

use crate::activation::{at_least, at_most};
use crate::isa::Isa;
use crate::lanes::Lanes;
use crate::Activation;

/// Values broadcast per step: rows of a tile. The same in every build: six broadcast rows of
/// two vectors are twelve accumulators, what two FMA pipes of latency 4 to 6 need, and leave
/// registers for the loads on the 16 registers of AVX2.
pub(crate) const MR: usize = 6;
/// The widest tile row of any build ([`Kernel::nr`]).
pub(crate) const NR_MAX: usize = 32;
/// One tile, row-major `MR x nr` (`nr` = [`Kernel::nr`]; the values past `MR * nr` unused).
pub(crate) type Tile = [f32; MR * NR_MAX];

/// A build of the micro-kernel: which instructions, and the tile they compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// AVX-512F intrinsics, a 6 x 32 tile; only used when the CPU has AVX-512F.
    Avx512,
    /// AVX2+FMA intrinsics, a 6 x 16 tile; only used when the CPU has them.
    Avx2,
    /// NEON intrinsics (aarch64), a 6 x 16 tile of four 4-lane vectors per row.
    Neon,
    /// Plain Rust for the baseline target, a 6 x 16 tile.
    Portable,
    /// Plain Rust with the AVX-512 build's 6 x 32 tile: runs everywhere, so the logic around a
    /// 32-wide tile is tested on machines without AVX-512. Never chosen by [`Kernel::selected`].
    PortableWide,
}

/// What a kernel build is, for `cnn explain` and `cnn bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelInfo {
    /// The instruction set's name (`CNN_KERNEL` takes it).
    pub name: &'static str,
    /// Rows of a tile: output channels (or pixels) broadcast per step.
    pub mr: usize,
    /// Columns of a tile: values per step held in vectors.
    pub nr: usize,
    /// `f32` lanes of one vector.
    pub lanes: usize,
    /// How the operands are packed.
    pub packing: &'static str,
    /// What the stores apply to a finished tile.
    pub epilogues: &'static str,
}

impl Kernel {
    /// The build [`crate::isa::selected`] names (`CNN_KERNEL`, or the best the CPU runs).
    pub fn selected() -> Self {
        Self::for_isa(crate::isa::selected())
    }

    /// The GEMM build of `isa`.
    pub fn for_isa(isa: Isa) -> Self {
        match isa {
            Isa::Avx512 => Kernel::Avx512,
            Isa::Avx2 => Kernel::Avx2,
            Isa::Neon => Kernel::Neon,
            Isa::Portable => Kernel::Portable,
        }
    }

    /// Every build this CPU runs (the selected one's instruction set need not be the best),
    /// [`Kernel::PortableWide`] included: what the tests run.
    pub fn runnable() -> Vec<Self> {
        let mut all: Vec<Self> = crate::isa::available()
            .into_iter()
            .map(Self::for_isa)
            .collect();
        all.push(Kernel::PortableWide);
        all
    }

    /// Whether this CPU runs this build (the portable ones run everywhere).
    pub fn runs_here(self) -> bool {
        self.isa().supported()
    }

    /// `Ok` when this CPU runs this build, else the error naming it: every public entry that
    /// takes a build checks it before anything runs its instructions.
    pub(crate) fn check(self) -> Result<Self, crate::KernelError> {
        match self.runs_here() {
            true => Ok(self),
            false => Err(crate::KernelError::Invalid {
                what: "kernel build",
                reason: format!("this CPU does not run the {} build", self.info().name),
            }),
        }
    }

    /// The instruction set this build runs on.
    pub fn isa(self) -> Isa {
        match self {
            Kernel::Avx512 => Isa::Avx512,
            Kernel::Avx2 => Isa::Avx2,
            Kernel::Neon => Isa::Neon,
            Kernel::Portable | Kernel::PortableWide => Isa::Portable,
        }
    }

    /// Rows of a tile: values broadcast per step.
    pub fn mr(self) -> usize {
        MR
    }

    /// Columns of a tile: values per step held in vectors (two vectors per row).
    pub fn nr(self) -> usize {
        match self {
            Kernel::Avx512 | Kernel::PortableWide => 32,
            Kernel::Avx2 | Kernel::Neon | Kernel::Portable => 16,
        }
    }

    /// The kernel's description.
    pub fn info(self) -> KernelInfo {
        KernelInfo {
            name: match self {
                Kernel::PortableWide => "portable-wide",
                k => k.isa().name(),
            },
            mr: self.mr(),
            nr: self.nr(),
            lanes: match self {
                Kernel::Portable | Kernel::PortableWide => 1,
                k => k.isa().lanes(),
            },
            packing: "weights packed once into panels of mr or nr output channels; columns \
                      unfolded into panels of nr or mr pixels, or read in place channels-last",
            epilogues: "accumulate onto the output; bias; clamp (ReLU, ReLU6, Clip)",
        }
    }

    /// Computes the tile of `k` steps of the panels `bc` (`k * MR` values) and `vc`
    /// (`k * nr` values) into `out` (rows `nr` apart; overwritten).
    #[inline]
    pub(crate) fn tile(self, k: usize, bc: &[f32], vc: &[f32], out: &mut Tile) {
        let (bc, vc) = (&bc[..k * MR], &vc[..k * self.nr()]);
        let one = Panels {
            count: 1,
            stride: 0,
        };
        // SAFETY: the panels hold exactly `k` steps; `out` holds a whole tile.
        unsafe { self.run(k, bc, vc, one, Dst::Tile(out)) }
    }

    /// Like [`Kernel::tile`], but for `count` tiles side by side, written straight into a
    /// matrix: tile `t` multiplies `bc` by the column panel at `vc[t * stride ..]` (`k` steps);
    /// its row `i` goes to the `nr` values at `c.add(i * rs + t * nr)`, added to what is there
    /// when `accumulate` is set, then finished by `finish` (rows from 0) when given. One
    /// call per row of tiles, not per tile: with a short reduction (K = 27 for a first RGB
    /// layer) a call's own cost is a tenth of a tile's.
    ///
    /// # Panics
    /// If `vc` is shorter than the last panel's end, or `bc` than `k` steps.
    ///
    /// # Safety
    /// For every `i < MR`, the `count * nr` values at `c.add(i * rs)` are valid for reads and
    /// writes and not accessed by anyone else during the call.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn tiles_into(
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
        let vc = &vc[..(count - 1) * stride + k * self.nr()];
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
    /// vc[(t * g.steps + s) * nr + j]`, rows of `out` `nr` apart. Added to `out` when
    /// `accumulate` is set.
    ///
    /// # Panics
    /// If a read would fall outside `g.src` or `vc` is shorter than `taps * steps` steps
    /// (checked once per tile, before the loop), or `out` is shorter than `MR * nr`.
    #[inline]
    pub(crate) fn gather_tile(self, g: &Gather<'_>, vc: &[f32], out: &mut [f32], accumulate: bool) {
        let vc = checked_gather(g, vc, self.nr());
        let out = &mut out[..MR * self.nr()];
        // SAFETY: every read is `src[pixels[i] + taps[t] + s]` with `s < steps`, inside `src`
        // (checked), and `vc` holds the steps; `out` holds MR rows of nr values.
        unsafe { generic::gather_tile(self, g, vc, out, accumulate) }
    }

    /// Row 0 of [`Kernel::gather_tile`] alone (pixel `g.pixels[0]`), into the first `nr`
    /// values of `out`: for a last tile with one pixel. The six-row loop would spend six rows'
    /// FMAs on it; this one runs four steps' products in separate accumulators, about one step
    /// per cycle instead of six. The sum is taken in another order, so it may differ from the
    /// tile's row 0 by rounding.
    ///
    /// # Panics
    /// As [`Kernel::gather_tile`], or if `out` is shorter than `nr`.
    #[inline]
    pub(crate) fn gather_first_row(
        self,
        g: &Gather<'_>,
        vc: &[f32],
        out: &mut [f32],
        accumulate: bool,
    ) {
        let vc = checked_gather(g, vc, self.nr());
        let out = &mut out[..self.nr()];
        // SAFETY: as in `gather_tile`, for `pixels[0]`; `out` holds nr values.
        unsafe { generic::gather_row(self, g, vc, out, accumulate) }
    }

    /// # Safety
    /// `bc` holds `k` steps and `vc` the `k` steps of each of `panels`; a raw destination is
    /// as [`Kernel::tiles_into`]; a tile destination comes with one panel.
    unsafe fn run(self, k: usize, bc: &[f32], vc: &[f32], panels: Panels, dst: Dst<'_>) {
        debug_assert!(matches!(dst, Dst::Raw { .. }) || panels.count == 1);
        // SAFETY: this function's contract.
        unsafe { generic::tiles(self, k, bc, vc, panels, dst) }
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

    /// [`Finish::apply`] to every lane of `v`, all of row `i`, with the same results: `lo.max(x)`
    /// is `at_least(x, lo)` and `hi.min(y)` is `at_most(y, hi)`, NaN operands included.
    #[inline(always)]
    pub(crate) fn apply_lanes<V: Lanes>(&self, i: usize, v: V) -> V {
        let v = match self.bias {
            Some(b) => v.add(V::splat(b[i])),
            None => v,
        };
        match self.clamp {
            Some((lo, hi)) => V::splat(hi).min(V::splat(lo).max(v)),
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
    /// `MR` rows of `nr` values, `rs` apart, at `c` (see [`Kernel::tiles_into`]).
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
    /// (Only the x86-64 builds prefetch.)
    pub prefetch_next: bool,
}

/// `vc` cut to the steps `g` reads, after checking that every read of `g` is inside `g.src`.
///
/// # Panics
/// If a read would fall outside `g.src`, or `vc` is shorter than `taps * steps` steps.
fn checked_gather<'v>(g: &Gather<'_>, vc: &'v [f32], nr: usize) -> &'v [f32] {
    let steps = g.taps.len() * g.steps;
    let reach = g.pixels.iter().max().copied().unwrap_or(0)
        + g.taps.iter().max().copied().unwrap_or(0)
        + g.steps;
    assert!(
        g.taps.is_empty() || g.steps == 0 || reach <= g.src.len(),
        "gathered reads reach {reach}, past the source's {} values",
        g.src.len()
    );
    &vc[..steps * nr]
}

#[cfg(test)]
mod tests;
