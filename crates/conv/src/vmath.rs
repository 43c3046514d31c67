//! Vectorised element-wise math for the activations: `exp`, the logistic function, `tanh`,
//! `erf`, and SiLU, GELU, HardSigmoid, HardSwish and LeakyReLU built on them, over slices in
//! place. Each function is a branch-free polynomial written once against a vector type
//! ([`crate::lanes::Lanes`]): an AVX-512F build (sixteen lanes) or an AVX2+FMA build (eight
//! lanes; both with fused multiply-adds and a reciprocal estimate with Newton steps for the
//! divisions) is chosen at run time ([`crate::isa::selected`]), a portable build (one lane,
//! exact division) runs elsewhere. No libm call per element.
//!
//! Accuracy (tested against f64 in this module's tests, on a dense sweep and random inputs):
//! `exp` within 2 ulp where the result is a normal float (infinity above 88.72, 0 below
//! -103.97, gradual underflow between); the logistic function within 3e-7 absolute and 1e-5
//! relative; `tanh` (a rational fit, no `exp`) within 5e-7 relative; `erf` within 2e-7
//! absolute and 1e-6 relative (series near 0, the Numerical Recipes `erfc` fit beyond); NaN
//! stays NaN through every function.
//!
//! It does not do reductions (softmax keeps its own loop) or anything that needs a neighbour.

use crate::lanes::Lanes;

/// `log2(e)`.
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split in two for the range reduction (Cody and Waite): the high part has few
/// significant bits, so `n * LN2_HI` is exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// `1.5 * 2^23`: adding it rounds a float below 2^22 in magnitude to an integer (to nearest
/// even), which its low mantissa bits then hold.
const ROUNDER: f32 = 12_582_912.0;

/// `e^x`: `2^n * p(r)` with `x = n ln2 + r`; the scale `2^n` applied as two powers of two,
/// so the result underflows gradually; infinity above 88.72, 0 below -103.97.
#[inline(always)]
fn exp<V: Lanes>(x: V) -> V {
    let (hi, lo) = (V::splat(88.722_84), V::splat(-103.972_08));
    // A NaN stays NaN through the clamps (it is `self`).
    let xc = x.min(hi).max(lo);
    let rounder = V::splat(ROUNDER);
    let n = xc.madd(V::splat(LOG2E), rounder).sub(rounder);
    let r = n.madd(V::splat(-LN2_HI), xc);
    let r = n.madd(V::splat(-LN2_LO), r);
    // Cephes' expf polynomial on [-ln2/2, ln2/2].
    let mut p = V::splat(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        p = p.madd(r, V::splat(c));
    }
    let p = p.madd(r.mul(r), r.add(V::splat(1.0)));
    // n in [-150, 128]: halves in [-75, 64], each a normal power of two.
    let n1 = n.madd(V::splat(0.5), rounder).sub(rounder);
    let n2 = n.sub(n1);
    let y = p.mul(n1.pow2i()).mul(n2.pow2i());
    let y = x.gt_select(hi, V::splat(f32::INFINITY), y);
    x.lt_select(lo, V::splat(0.0), y)
}

/// `1 / (1 + e^-x)`: exactly 0 and 1 far out, NaN for NaN; accurate relative to the value in
/// the tails too (not `(1 + tanh(x/2)) / 2`, whose absolute error of 2e-7 is 1e-3 of
/// SiLU's value at -9).
#[inline(always)]
fn sigmoid<V: Lanes>(x: V) -> V {
    exp(V::splat(0.0).sub(x)).add(V::splat(1.0)).recip_pos()
}

/// `tanh(x)` as the rational function `x P(x^2) / Q(x^2)` on `|x| <= 7.9053` (Eigen's fit, as
/// onnxruntime's kernels use; beyond, `tanh` rounds to +-1): one division, no `exp`.
#[inline(always)]
fn tanh<V: Lanes>(x: V) -> V {
    let limit = V::splat(7.905_311);
    // NaN stays NaN through the clamps.
    let xc = x.min(limit).max(V::splat(-7.905_311));
    let z = xc.mul(xc);
    let mut p = V::splat(-2.760_768_5e-16);
    for c in [
        2.000_188e-13,
        -8.604_672e-11,
        5.122_297e-8,
        1.485_722_4e-5,
        6.372_619_3e-4,
        4.893_524_6e-3,
    ] {
        p = p.madd(z, V::splat(c));
    }
    let mut q = V::splat(1.198_258_4e-6);
    for c in [1.185_347e-4, 2.268_434_6e-3, 4.893_525e-3] {
        q = q.madd(z, V::splat(c));
    }
    let y = xc.mul(p).mul(q.recip_pos());
    // Past 7.9 (where tanh is within 3e-7 of +-1) the fit is within an ulp of it: make it
    // exactly that. A NaN fails the comparison and keeps `y`, NaN.
    x.abs()
        .gt_select(V::splat(7.9), V::splat(1.0).with_sign_of(x), y)
}

/// `erf(x)`: the Maclaurin series for |x| < 0.5, `1 - erfc(|x|)` from the Numerical Recipes
/// fit beyond (fractional error of erfc below 1.2e-7), with the sign of `x`.
#[inline(always)]
fn erf<V: Lanes>(x: V) -> V {
    let a = x.abs();
    let z = x.mul(x);
    let minus_z = V::splat(0.0).sub(z);
    // 2/sqrt(pi) * (a - a^3/3 + a^5/10 - a^7/42 + a^9/216 - a^11/1320 + a^13/9360)
    let mut s = V::splat(1.0 / 9360.0);
    for c in [
        1.0 / 1320.0,
        1.0 / 216.0,
        1.0 / 42.0,
        1.0 / 10.0,
        1.0 / 3.0,
        1.0,
    ] {
        s = s.madd(minus_z, V::splat(c));
    }
    let series = s.mul(a).mul(V::splat(std::f32::consts::FRAC_2_SQRT_PI));
    let t = a.madd(V::splat(0.5), V::splat(1.0)).recip_pos();
    let mut q = V::splat(0.170_872_77);
    for c in [
        -0.822_152_23,
        1.488_515_9,
        -1.135_204,
        0.278_868_07,
        -0.186_288_06,
        0.096_784_18,
        0.374_091_96,
        1.000_023_7,
        -1.265_512_2,
    ] {
        q = q.madd(t, V::splat(c));
    }
    let far = V::splat(1.0).sub(t.mul(exp(q.sub(z))));
    a.lt_select(V::splat(0.5), series, far).with_sign_of(x)
}

/// `max(0, min(1, x))`, NaN kept.
#[inline(always)]
fn clamp01<V: Lanes>(x: V) -> V {
    x.max(V::splat(0.0)).min(V::splat(1.0))
}

/// The activations on slices, one build per instruction set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Elementwise {
    Exp,
    Sigmoid,
    Tanh,
    Erf,
    /// `x * sigmoid(x)`.
    Silu,
    /// `x * Phi(x)`, exact (`erf`) or with the `tanh` approximation.
    Gelu {
        tanh: bool,
    },
    /// `max(0, min(1, alpha * x + beta))`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `x * max(0, min(1, x / 6 + 1/2))`.
    HardSwish,
    /// `x` for `x >= 0`, else `alpha * x`.
    LeakyRelu(f32),
}

impl Elementwise {
    /// Applies the function to every element of `data` in place, after adding `bias` (when
    /// given) — on the build [`crate::isa::selected`] names.
    pub fn apply(self, data: &mut [f32], bias: Option<f32>) {
        match crate::isa::selected() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `selected` only names a build the CPU runs.
            crate::isa::Isa::Avx512 => unsafe { self.apply_avx512(data, bias) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            crate::isa::Isa::Avx2 => unsafe { self.apply_avx2(data, bias) },
            #[cfg(target_arch = "aarch64")]
            crate::isa::Isa::Neon => self.run::<crate::lanes::Neon>(data, bias),
            _ => self.apply_portable(data, bias),
        }
    }

    /// The portable build (also what the tests compare the AVX2 build with).
    pub fn apply_portable(self, data: &mut [f32], bias: Option<f32>) {
        self.run::<f32>(data, bias);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn apply_avx2(self, data: &mut [f32], bias: Option<f32>) {
        self.run::<crate::lanes::Avx2>(data, bias);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn apply_avx512(self, data: &mut [f32], bias: Option<f32>) {
        self.run::<crate::lanes::Avx512>(data, bias);
    }

    /// The loop each build compiles (everything inlined into the build's function, so the
    /// vector instructions are those of its instruction set; no closure, which would be a
    /// function of its own without them). One loop per function, so nothing is decided per
    /// vector. The bias is added only when there is one (adding 0 would turn -0 into +0).
    #[inline(always)]
    fn run<V: Lanes>(self, data: &mut [f32], bias: Option<f32>) {
        let b = V::splat(bias.unwrap_or(0.0));
        macro_rules! each {
            (|$x:ident| $body:expr) => {{
                if bias.is_some() {
                    over!(data, V, |$x| {
                        let $x = $x.add(b);
                        $body
                    })
                } else {
                    over!(data, V, |$x| $body)
                }
            }};
        }
        match self {
            Elementwise::Exp => each!(|x| exp(x)),
            Elementwise::Sigmoid => each!(|x| sigmoid(x)),
            Elementwise::Tanh => each!(|x| tanh(x)),
            Elementwise::Erf => each!(|x| erf(x)),
            Elementwise::Silu => each!(|x| x.mul(sigmoid(x))),
            Elementwise::Gelu { tanh: false } => each!(|x| {
                let e = erf(x.mul(V::splat(std::f32::consts::FRAC_1_SQRT_2)));
                x.mul(V::splat(0.5)).mul(e.add(V::splat(1.0)))
            }),
            Elementwise::Gelu { tanh: true } => each!(|x| {
                // sqrt(2 / pi) * (x + 0.044715 x^3)
                let cube = x.mul(x).mul(V::splat(0.044_715));
                let inner = cube.madd(x, x).mul(V::splat(0.797_884_6));
                x.mul(V::splat(0.5)).mul(tanh(inner).add(V::splat(1.0)))
            }),
            Elementwise::HardSigmoid { alpha, beta } => {
                let (a, c) = (V::splat(alpha), V::splat(beta));
                each!(|x| clamp01(x.madd(a, c)))
            }
            Elementwise::HardSwish => {
                let (sixth, half) = (V::splat(1.0 / 6.0), V::splat(0.5));
                each!(|x| x.mul(clamp01(x.madd(sixth, half))))
            }
            Elementwise::LeakyRelu(alpha) => {
                let (zero, a) = (V::splat(0.0), V::splat(alpha));
                each!(|x| x.lt_select(zero, x.mul(a), x))
            }
        }
    }
}

/// `data[i] = body(data[i])` a vector at a time, the last partial vector through a padded
/// copy; a macro, so `body` is inlined into the caller's build.
macro_rules! over {
    ($data:expr, $V:ty, |$x:ident| $body:expr) => {{
        let w = <$V>::WIDTH;
        // Four independent vectors per step: each function is a long dependent chain, and
        // four in flight keep the FMA units busier than one (measured: exp 0.87 -> 0.69 ns
        // per value on a Zen 2; two gave 0.77).
        let mut quads = $data.chunks_exact_mut(4 * w);
        for q in &mut quads {
            let p = q.as_mut_ptr();
            // SAFETY: `q` holds exactly `4 * WIDTH` values.
            unsafe {
                let (x0, x1) = (<$V>::load(p), <$V>::load(p.add(w)));
                let (x2, x3) = (<$V>::load(p.add(2 * w)), <$V>::load(p.add(3 * w)));
                let y0 = {
                    let $x = x0;
                    $body
                };
                let y1 = {
                    let $x = x1;
                    $body
                };
                let y2 = {
                    let $x = x2;
                    $body
                };
                let y3 = {
                    let $x = x3;
                    $body
                };
                y0.store(p);
                y1.store(p.add(w));
                y2.store(p.add(2 * w));
                y3.store(p.add(3 * w));
            }
        }
        let mut chunks = quads.into_remainder().chunks_exact_mut(w);
        for c in &mut chunks {
            // SAFETY: `c` holds exactly `WIDTH` values.
            let $x = unsafe { <$V>::load(c.as_ptr()) };
            let y = $body;
            // SAFETY: as above.
            unsafe { y.store(c.as_mut_ptr()) };
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let mut buf = [0.0f32; 16];
            buf[..tail.len()].copy_from_slice(tail);
            // SAFETY: `buf` holds 16 >= WIDTH values.
            let $x = unsafe { <$V>::load(buf.as_ptr()) };
            let y = $body;
            // SAFETY: as above.
            unsafe { y.store(buf.as_mut_ptr()) };
            tail.copy_from_slice(&buf[..tail.len()]);
        }
    }};
}
use over;

#[cfg(test)]
mod tests;
