//! The vector type the kernels are written against, once: [`Lanes`], with a scalar
//! implementation (`f32`, the portable build, which the compiler may vectorise further), an
//! AVX2+FMA one ([`Avx2`], `__m256`, eight lanes) and an AVX-512F one ([`Avx512`], `__m512`,
//! sixteen lanes) and, on aarch64, a NEON one (`float32x4_t`, four lanes). The element-wise
//! math of [`crate::vmath`] and the GEMM micro-kernel of `crate::microkernel` are generic over
//! it.
//!
//! An implementation's methods are `#[inline(always)]` wrappers of one or a few intrinsics.
//! They are only called from functions compiled with the instruction set enabled
//! (`#[target_feature]`), into which they are inlined, and only after the CPU was checked to
//! have it ([`crate::isa`]).
//!
//! Semantics every implementation keeps: `min`/`max` return `self` when it is NaN (a NaN input
//! stays NaN through a clamp against constants); `recip_pos` is `1 / x` for positive normal
//! `x`, infinity and NaN (0 for infinity and for values above 1e38, whose reciprocal is below
//! the normal range), within 1 ulp.

/// A vector of `f32` lanes.
pub(crate) trait Lanes: Copy {
    const WIDTH: usize;
    /// # Safety
    /// `p` is valid for reading `WIDTH` values.
    unsafe fn load(p: *const f32) -> Self;
    /// # Safety
    /// `p` is valid for writing `WIDTH` values.
    unsafe fn store(self, p: *mut f32);
    fn splat(v: f32) -> Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// `self * b + c` (fused where the instruction set has it).
    fn madd(self, b: Self, c: Self) -> Self;
    /// The smaller of the two; `self` when `self` is NaN.
    fn min(self, o: Self) -> Self;
    /// The larger of the two; `self` when `self` is NaN.
    fn max(self, o: Self) -> Self;
    /// `1 / self` for positive normal `self`, infinity or NaN.
    fn recip_pos(self) -> Self;
    /// `a` in the lanes where `self < o`, else `b`.
    fn lt_select(self, o: Self, a: Self, b: Self) -> Self;
    /// `a` in the lanes where `self > o`, else `b`.
    fn gt_select(self, o: Self, a: Self, b: Self) -> Self;
    /// `|self|`.
    fn abs(self) -> Self;
    /// `self` with the sign bit of `sign`.
    fn with_sign_of(self, sign: Self) -> Self;
    /// `2^n` for lanes holding integers `n` in [-126, 127] (as floats).
    fn pow2i(self) -> Self;
}

impl Lanes for f32 {
    const WIDTH: usize = 1;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        *p
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        *p = self;
    }
    #[inline(always)]
    fn splat(v: f32) -> Self {
        v
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self + o
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self - o
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        self * o
    }
    #[inline(always)]
    fn madd(self, b: Self, c: Self) -> Self {
        // Not `mul_add`: without FMA in the target that is a libm call.
        self * b + c
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        if o < self {
            o
        } else {
            self
        }
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        if o > self {
            o
        } else {
            self
        }
    }
    #[inline(always)]
    fn recip_pos(self) -> Self {
        // Exact; a result below the normal range is flushed as the vector builds do.
        let r = 1.0 / self;
        if r < f32::MIN_POSITIVE {
            0.0
        } else {
            r
        }
    }
    #[inline(always)]
    fn lt_select(self, o: Self, a: Self, b: Self) -> Self {
        if self < o {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    fn gt_select(self, o: Self, a: Self, b: Self) -> Self {
        if self > o {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f32::from_bits(self.to_bits() & 0x7fff_ffff)
    }
    #[inline(always)]
    fn with_sign_of(self, sign: Self) -> Self {
        f32::from_bits((self.to_bits() & 0x7fff_ffff) | (sign.to_bits() & 0x8000_0000))
    }
    #[inline(always)]
    fn pow2i(self) -> Self {
        f32::from_bits(((self as i32 + 127) as u32) << 23)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx2::Avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx512::Avx512;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "aarch64")]
pub(crate) use neon::Neon;
