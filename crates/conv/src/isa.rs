//! Which instruction set the kernels run on: the best one the CPU has, or the one the
//! `CNN_KERNEL` environment variable names (`avx512`, `avx2`, `neon` or `portable`), so tests and benchmarks can
//! run every build a CPU supports; and the measured multiply-add peak of a build on one core
//! (the roofline `cnn bench` reports against).
//!
//! Every kernel with more than one build (the GEMM micro-kernel, depthwise, the vectorised
//! activations) asks [`selected`]. It does not decide tile sizes or paths.

use std::time::Instant;

/// The environment variable that overrides the detected instruction set.
pub const KERNEL_VAR: &str = "CNN_KERNEL";

/// A build of the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// AVX-512F (with AVX2 and FMA, which every AVX-512 CPU has): 16-lane vectors, the 6x32
    /// GEMM micro-kernel; the kernels without an AVX-512 build run their AVX2 one.
    Avx512,
    /// AVX2 and FMA: 8-lane vectors, fused multiply-adds, the 6x16 GEMM micro-kernel.
    Avx2,
    /// NEON on aarch64 (baseline there): 4-lane vectors, fused multiply-adds, the 6x16 GEMM
    /// micro-kernel as four vectors per row.
    Neon,
    /// The baseline target's code, whatever the CPU.
    Portable,
}

impl Isa {
    /// The name `CNN_KERNEL` takes and reports show.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Neon => "neon",
            Isa::Portable => "portable",
        }
    }

    /// The build called `name`, if there is one.
    pub fn parse(name: &str) -> Option<Isa> {
        match name.trim().to_ascii_lowercase().as_str() {
            "avx512" => Some(Isa::Avx512),
            "avx2" => Some(Isa::Avx2),
            "neon" => Some(Isa::Neon),
            "portable" => Some(Isa::Portable),
            _ => None,
        }
    }

    /// Every build, best first.
    pub const ALL: [Isa; 4] = [Isa::Avx512, Isa::Avx2, Isa::Neon, Isa::Portable];

    /// Whether this build may run AVX2+FMA code: the kernels with no build of their own for
    /// it (depthwise, the layout copies) run their AVX2 one on an AVX-512 CPU.
    pub fn has_avx2(self) -> bool {
        matches!(self, Isa::Avx512 | Isa::Avx2)
    }

    /// `f32` lanes of this build's vectors (what the baseline target gives for the portable
    /// build: 4 with SSE2 or NEON).
    pub fn lanes(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2 => 8,
            Isa::Neon | Isa::Portable => 4,
        }
    }

    /// Whether the CPU runs this build.
    pub fn supported(self) -> bool {
        match self {
            Isa::Avx512 => cpu_has_avx512(),
            Isa::Avx2 => cpu_has_avx2_fma(),
            Isa::Neon => cfg!(target_arch = "aarch64"),
            Isa::Portable => true,
        }
    }
}

/// Whether the CPU has AVX2 and FMA (detected once).
pub fn cpu_has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU has AVX-512F, AVX2 and FMA (detected once).
pub fn cpu_has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f") && cpu_has_avx2_fma())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The builds this CPU runs, best first.
pub fn available() -> Vec<Isa> {
    Isa::ALL.into_iter().filter(|i| i.supported()).collect()
}

/// What `CNN_KERNEL` asks for: `Ok(None)` when unset or empty, the build when the CPU runs
/// it, else the one-line reason.
pub fn requested() -> Result<Option<Isa>, String> {
    let Ok(value) = std::env::var(KERNEL_VAR) else {
        return Ok(None);
    };
    if value.trim().is_empty() {
        return Ok(None);
    }
    let names = || {
        available()
            .iter()
            .map(|i| i.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match Isa::parse(&value) {
        Some(isa) if available().contains(&isa) => Ok(Some(isa)),
        Some(isa) => Err(format!(
            "{KERNEL_VAR}={value}: this CPU has no {} (it runs: {})",
            isa.name(),
            names()
        )),
        None => Err(format!(
            "{KERNEL_VAR}={value}: not a kernel build (this CPU runs: {})",
            names()
        )),
    }
}

/// The build the kernels run: `CNN_KERNEL`'s when it names one the CPU runs, else the best
/// available (read once; a front end checks [`requested`] first to report a bad value).
pub fn selected() -> Isa {
    static SELECTED: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *SELECTED.get_or_init(|| requested().ok().flatten().unwrap_or_else(|| available()[0]))
}

/// Independent accumulators in the vector peak loops: enough to cover the FMA latency.
#[cfg(target_arch = "x86_64")]
const CHAINS: usize = 12;

/// The multiply-add peak of `isa` on one core, in GFLOP/s (2 per multiply-add): a loop of
/// independent fused (AVX-512, AVX2) or separate (portable) multiply-adds run for about
/// `millis`.
pub fn fma_peak_gflops(isa: Isa, millis: u64) -> f64 {
    let mut iters = 1u64 << 16;
    loop {
        let start = Instant::now();
        let lanes = match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if cpu_has_avx512() => {
                // SAFETY: the CPU has AVX-512F.
                std::hint::black_box(unsafe { peak_avx512(iters) });
                CHAINS * 16
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 if cpu_has_avx2_fma() => {
                // SAFETY: the CPU has AVX2 and FMA.
                std::hint::black_box(unsafe { peak_avx2(iters) });
                CHAINS * 8
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => {
                std::hint::black_box(peak_neon(iters));
                CHAINS * 4
            }
            _ => {
                std::hint::black_box(peak_portable(iters));
                PORTABLE_LANES
            }
        };
        let secs = start.elapsed().as_secs_f64();
        if secs * 1e3 >= millis as f64 || iters >= 1 << 40 {
            let flops = iters as f64 * lanes as f64 * 2.0;
            return flops / secs / 1e9;
        }
        iters *= 2;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn peak_avx2(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(0.0); CHAINS];
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    let mut sum = 0.0;
    for v in acc {
        let mut out = [0.0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), v);
        sum += out.iter().sum::<f32>();
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn peak_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(0.0); CHAINS];
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
}

/// Independent accumulators in the NEON peak loop (of its 32 registers).
#[cfg(target_arch = "aarch64")]
const CHAINS: usize = 12;

#[cfg(target_arch = "aarch64")]
fn peak_neon(iters: u64) -> f32 {
    use std::arch::aarch64::*;
    // SAFETY: NEON is part of the aarch64 baseline.
    unsafe {
        let mut acc = [vdupq_n_f32(0.0); CHAINS];
        let (a, b) = (vdupq_n_f32(0.999_999), vdupq_n_f32(1e-7));
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = vfmaq_f32(b, *v, a);
            }
        }
        acc.iter().map(|&v| vaddvq_f32(v)).sum()
    }
}

/// Lanes of the portable loop: as many as the baseline target's registers hold (eight SSE
/// registers of four), so the accumulators stay in registers.
const PORTABLE_LANES: usize = 32;

/// The portable build's loop: `PORTABLE_LANES` independent lanes in one flat array, which the
/// compiler turns into the baseline target's vectors (separate multiply and add).
fn peak_portable(iters: u64) -> f32 {
    let mut acc = [0.0f32; PORTABLE_LANES];
    let (a, b) = (
        std::hint::black_box(0.999_999f32),
        std::hint::black_box(1e-7f32),
    );
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = *x * a + b;
        }
    }
    acc.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_portable_is_always_there() {
        for isa in Isa::ALL {
            assert_eq!(Isa::parse(isa.name()), Some(isa));
        }
        assert_eq!(Isa::parse(" AVX2 "), Some(Isa::Avx2));
        assert_eq!(Isa::parse("avx-512"), None);
        assert!(available().contains(&Isa::Portable));
        let best = match (cpu_has_avx512(), cpu_has_avx2_fma()) {
            (true, _) => Isa::Avx512,
            (false, true) => Isa::Avx2,
            _ if cfg!(target_arch = "aarch64") => Isa::Neon,
            _ => Isa::Portable,
        };
        assert_eq!(available()[0], best);
    }

    #[test]
    fn the_peak_is_a_positive_rate() {
        for isa in available() {
            let p = fma_peak_gflops(isa, 5);
            assert!(p.is_finite() && p > 0.0, "{isa:?}: {p}");
        }
    }
}
