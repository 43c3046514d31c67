//! The micro-kernel's loops, written once against [`Lanes`] and instantiated per build: a row
//! of the tile is `NV` vectors of `V::WIDTH` lanes (`nr = NV * V::WIDTH`). The x86-64 builds
//! are these loops inlined into `#[target_feature]` functions (NEON, baseline on aarch64, needs
//! none) (so the vector type's intrinsics
//! compile to that instruction set); the portable builds are the same loops on `f32` with
//! `NV` = 16 or 32 one-lane "vectors", which the compiler vectorises for the baseline target.
//!
//! No closures in the loops: a closure is a function of its own, compiled without the
//! caller's target features, and would keep the intrinsics out of line.

use super::{Dst, Gather, Kernel, Panels, MR};
use crate::lanes::Lanes;

/// Runs [`tiles_lanes`] for `kernel`'s build.
///
/// # Safety
/// As `Kernel::run`; `kernel` is a build the CPU runs.
pub(super) unsafe fn tiles(
    kernel: Kernel,
    k: usize,
    bc: &[f32],
    vc: &[f32],
    panels: Panels,
    dst: Dst<'_>,
) {
    let (bc, vc) = (bc.as_ptr(), vc.as_ptr());
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => tiles_avx512(k, bc, vc, panels, dst),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => tiles_avx2(k, bc, vc, panels, dst),
        #[cfg(target_arch = "aarch64")]
        Kernel::Neon => tiles_lanes::<crate::lanes::Neon, 4>(k, bc, vc, panels, dst),
        Kernel::PortableWide => tiles_lanes::<f32, 32>(k, bc, vc, panels, dst),
        _ => tiles_lanes::<f32, 16>(k, bc, vc, panels, dst),
    }
}

/// Runs [`gather_lanes`] for `kernel`'s build.
///
/// # Safety
/// Every read `g` describes is inside `g.src` and `vc` holds its steps (`Kernel::gather_tile`
/// checked both); `out` holds `MR * kernel.nr()` values; `kernel` is a build the CPU runs.
pub(super) unsafe fn gather_tile(
    kernel: Kernel,
    g: &Gather<'_>,
    vc: &[f32],
    out: &mut [f32],
    accumulate: bool,
) {
    debug_assert!(out.len() >= MR * kernel.nr());
    let (vc, out) = (vc.as_ptr(), out.as_mut_ptr());
    match (kernel, g.prefetch_next) {
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, true) => gather_avx512::<true>(g, vc, out, accumulate),
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, false) => gather_avx512::<false>(g, vc, out, accumulate),
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx2, true) => gather_avx2::<true>(g, vc, out, accumulate),
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx2, false) => gather_avx2::<false>(g, vc, out, accumulate),
        #[cfg(target_arch = "aarch64")]
        (Kernel::Neon, _) => gather_lanes::<crate::lanes::Neon, 4, false>(g, vc, out, accumulate),
        (Kernel::PortableWide, _) => gather_lanes::<f32, 32, false>(g, vc, out, accumulate),
        _ => gather_lanes::<f32, 16, false>(g, vc, out, accumulate),
    }
}

/// Runs [`gather_row_lanes`] for `kernel`'s build.
///
/// # Safety
/// As [`gather_tile`], for `g.pixels[0]`; `out` holds `kernel.nr()` values.
pub(super) unsafe fn gather_row(
    kernel: Kernel,
    g: &Gather<'_>,
    vc: &[f32],
    out: &mut [f32],
    accumulate: bool,
) {
    let (vc, out) = (vc.as_ptr(), out.as_mut_ptr());
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => gather_row_avx512(g, vc, out, accumulate),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => gather_row_avx2(g, vc, out, accumulate),
        #[cfg(target_arch = "aarch64")]
        Kernel::Neon => gather_row_lanes::<crate::lanes::Neon, 4>(g, vc, out, accumulate),
        Kernel::PortableWide => gather_row_lanes::<f32, 32>(g, vc, out, accumulate),
        _ => gather_row_lanes::<f32, 16>(g, vc, out, accumulate),
    }
}

/// The x86-64 builds: each loop inlined into a function compiled for the instruction set.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use crate::lanes::{Avx2, Avx512};

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tiles_avx2(
        k: usize,
        bc: *const f32,
        vc: *const f32,
        p: Panels,
        d: Dst<'_>,
    ) {
        tiles_lanes::<Avx2, 2>(k, bc, vc, p, d)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tiles_avx512(
        k: usize,
        bc: *const f32,
        vc: *const f32,
        p: Panels,
        d: Dst<'_>,
    ) {
        tiles_lanes::<Avx512, 2>(k, bc, vc, p, d)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gather_avx2<const PREFETCH: bool>(
        g: &Gather<'_>,
        vc: *const f32,
        out: *mut f32,
        acc: bool,
    ) {
        gather_lanes::<Avx2, 2, PREFETCH>(g, vc, out, acc)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gather_avx512<const PREFETCH: bool>(
        g: &Gather<'_>,
        vc: *const f32,
        out: *mut f32,
        acc: bool,
    ) {
        gather_lanes::<Avx512, 2, PREFETCH>(g, vc, out, acc)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gather_row_avx2(g: &Gather<'_>, vc: *const f32, out: *mut f32, acc: bool) {
        gather_row_lanes::<Avx2, 2>(g, vc, out, acc)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gather_row_avx512(
        g: &Gather<'_>,
        vc: *const f32,
        out: *mut f32,
        acc: bool,
    ) {
        gather_row_lanes::<Avx512, 2>(g, vc, out, acc)
    }
}
#[cfg(target_arch = "x86_64")]
use x86::*;

/// Asks the CPU to fetch the cache line at `p` into L2 (x86-64; nothing elsewhere). Never
/// faults, whatever `p` is.
#[inline(always)]
fn prefetch(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it reads nothing and cannot fault. SSE is baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        _mm_prefetch::<_MM_HINT_T1>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// `count` tiles of `k` steps: tile `t` multiplies the `MR`-wide panel `bc` by the `nr`-wide
/// panel at `vc + t * stride`, into `dst`.
///
/// # Safety
/// As `Kernel::run`, with `bc` and `vc` the panels' starts.
#[inline(always)]
unsafe fn tiles_lanes<V: Lanes, const NV: usize>(
    k: usize,
    bc: *const f32,
    vc: *const f32,
    panels: Panels,
    mut dst: Dst<'_>,
) {
    let w = V::WIDTH;
    let nr = NV * w;
    for t in 0..panels.count {
        let mut acc = [[V::splat(0.0); NV]; MR];
        let (mut b, mut v) = (bc, vc.add(t * panels.stride));
        for _ in 0..k {
            // SAFETY (whole loop): step l reads bc[l*MR .. l*MR + MR] and the panel's
            // [l*nr .. l*nr + nr], inside the panels for l < k.
            let mut vs = [V::splat(0.0); NV];
            for (j, x) in vs.iter_mut().enumerate() {
                *x = V::load(v.add(j * w));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let a = V::splat(*b.add(i));
                for (r, &x) in row.iter_mut().zip(&vs) {
                    *r = a.madd(x, *r);
                }
            }
            b = b.add(MR);
            v = v.add(nr);
        }
        match &mut dst {
            &mut Dst::Raw {
                c,
                rs,
                accumulate,
                finish,
            } => {
                for (i, row) in acc.iter().enumerate() {
                    // SAFETY: the caller's promise: row i's nr values of tile t are ours.
                    let p = c.add(i * rs + t * nr);
                    for (j, &r) in row.iter().enumerate() {
                        let mut r = r;
                        if accumulate {
                            r = r.add(V::load(p.add(j * w)));
                        }
                        if let Some(f) = &finish {
                            r = f.apply_lanes(i, r);
                        }
                        r.store(p.add(j * w));
                    }
                }
            }
            Dst::Tile(out) => store_rows::<V, NV>(&acc, out.as_mut_ptr(), false),
        }
    }
}

/// Stores (or, with `accumulate`, adds onto) the accumulators' rows at `out`, `nr` apart.
///
/// # Safety
/// `out` is valid for reading and writing `MR * nr` values.
#[inline(always)]
unsafe fn store_rows<V: Lanes, const NV: usize>(acc: &[[V; NV]], out: *mut f32, accumulate: bool) {
    let w = V::WIDTH;
    for (i, row) in acc.iter().enumerate() {
        let o = out.add(i * NV * w);
        for (j, &r) in row.iter().enumerate() {
            let r = match accumulate {
                true => r.add(V::load(o.add(j * w))),
                false => r,
            };
            r.store(o.add(j * w));
        }
    }
}

/// The gathered tile of `Kernel::gather_tile` into `out` (`MR` rows, `nr` apart).
/// `PREFETCH` is `g.prefetch_next`, made a constant so that the loop without it has no test.
///
/// # Safety
/// `vc` points to `taps * steps * nr` readable values; every `src[pixels[i] + taps[t] + s]`,
/// `s < steps`, is inside `g.src`; `out` holds `MR * nr` values.
#[inline(always)]
unsafe fn gather_lanes<V: Lanes, const NV: usize, const PREFETCH: bool>(
    g: &Gather<'_>,
    vc: *const f32,
    out: *mut f32,
    accumulate: bool,
) {
    let w = V::WIDTH;
    let nr = NV * w;
    let mut acc = [[V::splat(0.0); NV]; MR];
    let src = g.src.as_ptr();
    // The distance from a step's weights to the same step's in the next block. Prefetching
    // never faults, so the address may lie past `vc`'s allocation (the last block);
    // `wrapping_add` keeps computing it defined.
    let ahead = g.taps.len() * g.steps * nr;
    let mut v = vc;
    for &tap in g.taps {
        // SAFETY (whole loop): the reads are the caller's promise; `v` advances by nr values
        // per step, `taps * steps` steps in all.
        let mut p = [src; MR];
        for (pi, &pixel) in p.iter_mut().zip(&g.pixels) {
            *pi = src.add(pixel + tap);
        }
        for s in 0..g.steps {
            let mut vs = [V::splat(0.0); NV];
            for (j, x) in vs.iter_mut().enumerate() {
                *x = V::load(v.add(j * w));
            }
            for (row, &pi) in acc.iter_mut().zip(&p) {
                let b = V::splat(*pi.add(s));
                for (r, &x) in row.iter_mut().zip(&vs) {
                    *r = b.madd(x, *r);
                }
            }
            if PREFETCH {
                // One cache line (16 values) at a time.
                for line in (0..nr).step_by(16) {
                    prefetch(v.wrapping_add(ahead + line));
                }
            }
            v = v.add(nr);
        }
    }
    store_rows::<V, NV>(&acc, out, accumulate);
}

/// Row 0 of the gathered tile (`Kernel::gather_first_row`) into `out` (`nr` values): steps
/// `4u .. 4u + 4` of a tap go to four sets of accumulators, so that independent FMA chains
/// hide the FMA latency.
///
/// # Safety
/// As [`gather_lanes`], for `pixels[0]`; `out` holds `nr` values.
#[inline(always)]
unsafe fn gather_row_lanes<V: Lanes, const NV: usize>(
    g: &Gather<'_>,
    vc: *const f32,
    out: *mut f32,
    accumulate: bool,
) {
    const SETS: usize = 4;
    let w = V::WIDTH;
    let nr = NV * w;
    let mut acc = [[V::splat(0.0); NV]; SETS];
    let src = g.src.as_ptr().add(g.pixels[0]);
    let mut v = vc;
    for &tap in g.taps {
        // SAFETY (whole loop): as in `gather_lanes`.
        let p = src.add(tap);
        let whole = g.steps / SETS * SETS;
        for s in (0..whole).step_by(SETS) {
            for (u, set) in acc.iter_mut().enumerate() {
                let b = V::splat(*p.add(s + u));
                for (j, r) in set.iter_mut().enumerate() {
                    *r = b.madd(V::load(v.add(u * nr + j * w)), *r);
                }
            }
            v = v.add(SETS * nr);
        }
        for s in whole..g.steps {
            let b = V::splat(*p.add(s));
            for (j, r) in acc[0].iter_mut().enumerate() {
                *r = b.madd(V::load(v.add(j * w)), *r);
            }
            v = v.add(nr);
        }
    }
    let mut sum = [V::splat(0.0); NV];
    for (j, s) in sum.iter_mut().enumerate() {
        *s = acc[0][j].add(acc[1][j]).add(acc[2][j].add(acc[3][j]));
    }
    store_rows::<V, NV>(&[sum], out, accumulate);
}
