//! [`Lanes`] on AVX2+FMA: eight lanes in a `__m256`.

use super::Lanes;
use std::arch::x86_64::*;

/// Eight lanes in an AVX register. Only built inside functions compiled with
/// `target_feature(enable = "avx2,fma")`, called when the CPU has both.
#[derive(Clone, Copy)]
pub(crate) struct Avx2(pub(crate) __m256);

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
