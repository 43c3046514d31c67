//! The vector type the math of [`super`] is written against, once: [`Lanes`], with a scalar
//! implementation (`f32`, the portable build, which the compiler may vectorise further) and an
//! AVX2+FMA one (`__m256`, eight lanes). An AVX-512 or NEON build is one more implementation.
//!
//! Semantics every implementation keeps: `min`/`max` return `self` when it is NaN (a NaN input
//! stays NaN through a clamp against constants); `recip_pos` is `1 / x` for positive normal
//! `x`, infinity and NaN (0 for infinity and for values above 1e38, whose reciprocal is below
//! the normal range), within 1 ulp.

/// A vector of `f32` lanes.
pub(super) trait Lanes: Copy {
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
pub(super) use avx2::Avx2;

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Lanes;
    use std::arch::x86_64::*;

    /// Eight lanes in an AVX register. Only built inside functions compiled with
    /// `target_feature(enable = "avx2,fma")`, called when the CPU has both.
    #[derive(Clone, Copy)]
    pub(in crate::vmath) struct Avx2(__m256);

    // SAFETY (every method): the intrinsics need AVX2 and FMA, which every caller of these
    // methods has checked at run time (they are inlined into `target_feature` functions).
    impl Lanes for Avx2 {
        const WIDTH: usize = 8;
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Avx2(_mm256_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm256_storeu_ps(p, self.0)
        }
        #[inline(always)]
        fn splat(v: f32) -> Self {
            unsafe { Avx2(_mm256_set1_ps(v)) }
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            unsafe { Avx2(_mm256_add_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            unsafe { Avx2(_mm256_sub_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn mul(self, o: Self) -> Self {
            unsafe { Avx2(_mm256_mul_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn madd(self, b: Self, c: Self) -> Self {
            unsafe { Avx2(_mm256_fmadd_ps(self.0, b.0, c.0)) }
        }
        #[inline(always)]
        fn min(self, o: Self) -> Self {
            // minps returns its second operand when either is NaN.
            unsafe { Avx2(_mm256_min_ps(o.0, self.0)) }
        }
        #[inline(always)]
        fn max(self, o: Self) -> Self {
            unsafe { Avx2(_mm256_max_ps(o.0, self.0)) }
        }
        #[inline(always)]
        fn recip_pos(self) -> Self {
            unsafe {
                // rcpps (12 bits) and two Newton steps, r + r * (1 - x * r): the second makes
                // 1/1 exactly 1. Above 1e38 the estimate is 0 (flushed) and the steps keep it
                // 0; infinity included.
                let one = _mm256_set1_ps(1.0);
                let x = _mm256_min_ps(_mm256_set1_ps(1e38), self.0);
                let r = _mm256_rcp_ps(x);
                let r = _mm256_fmadd_ps(r, _mm256_fnmadd_ps(x, r, one), r);
                Avx2(_mm256_fmadd_ps(r, _mm256_fnmadd_ps(x, r, one), r))
            }
        }
        #[inline(always)]
        fn lt_select(self, o: Self, a: Self, b: Self) -> Self {
            unsafe {
                let m = _mm256_cmp_ps::<_CMP_LT_OQ>(self.0, o.0);
                Avx2(_mm256_blendv_ps(b.0, a.0, m))
            }
        }
        #[inline(always)]
        fn gt_select(self, o: Self, a: Self, b: Self) -> Self {
            unsafe {
                let m = _mm256_cmp_ps::<_CMP_GT_OQ>(self.0, o.0);
                Avx2(_mm256_blendv_ps(b.0, a.0, m))
            }
        }
        #[inline(always)]
        fn abs(self) -> Self {
            unsafe { Avx2(_mm256_andnot_ps(_mm256_set1_ps(-0.0), self.0)) }
        }
        #[inline(always)]
        fn with_sign_of(self, sign: Self) -> Self {
            unsafe {
                let s = _mm256_set1_ps(-0.0);
                let magnitude = _mm256_andnot_ps(s, self.0);
                Avx2(_mm256_or_ps(magnitude, _mm256_and_ps(s, sign.0)))
            }
        }
        #[inline(always)]
        fn pow2i(self) -> Self {
            unsafe {
                let n = _mm256_cvtps_epi32(self.0);
                let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(n, _mm256_set1_epi32(127)));
                Avx2(_mm256_castsi256_ps(e))
            }
        }
    }
}
