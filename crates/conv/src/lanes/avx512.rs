//! [`Lanes`] on AVX-512F: sixteen lanes in a `__m512`. Only AVX-512F instructions (no DQ or
//! VL): the bitwise operations go through the integer view, the selects through a mask.
//!
//! Every method is the same operation as [`super::Avx2`]'s on twice the lanes, with the same
//! results within the trait's contract: `vminps`/`vmaxps` return their second operand when
//! either is NaN; the reciprocal estimate (`vrcp14ps`, 14 bits) gets the same two Newton steps.
//! (Outside `recip_pos`'s contract — negative or subnormal inputs — the builds may differ.)

use super::Lanes;
use std::arch::x86_64::*;

/// Sixteen lanes in an AVX-512 register. Only built inside functions compiled with
/// `target_feature(enable = "avx512f")`, called when the CPU has it.
#[derive(Clone, Copy)]
pub(crate) struct Avx512(pub(crate) __m512);

// SAFETY (every method): the intrinsics need AVX-512F, which every caller of these methods
// has checked at run time (they are inlined into `target_feature` functions).
impl Lanes for Avx512 {
    const WIDTH: usize = 16;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Avx512(_mm512_loadu_ps(p))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm512_storeu_ps(p, self.0)
    }
    #[inline(always)]
    fn splat(v: f32) -> Self {
        unsafe { Avx512(_mm512_set1_ps(v)) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        unsafe { Avx512(_mm512_add_ps(self.0, o.0)) }
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        unsafe { Avx512(_mm512_sub_ps(self.0, o.0)) }
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        unsafe { Avx512(_mm512_mul_ps(self.0, o.0)) }
    }
    #[inline(always)]
    fn madd(self, b: Self, c: Self) -> Self {
        unsafe { Avx512(_mm512_fmadd_ps(self.0, b.0, c.0)) }
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        // vminps returns its second operand when either is NaN.
        unsafe { Avx512(_mm512_min_ps(o.0, self.0)) }
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        unsafe { Avx512(_mm512_max_ps(o.0, self.0)) }
    }
    #[inline(always)]
    fn recip_pos(self) -> Self {
        unsafe {
            // As the AVX2 build: estimate (14 bits here) and two Newton steps. Above 1e38 the
            // estimate of the clamped value is subnormal here (rcpps gives 0); the compare
            // below flushes it to 0 as there.
            let one = _mm512_set1_ps(1.0);
            let x = _mm512_min_ps(_mm512_set1_ps(1e38), self.0);
            let r = _mm512_rcp14_ps(x);
            let r = _mm512_fmadd_ps(r, _mm512_fnmadd_ps(x, r, one), r);
            let r = _mm512_fmadd_ps(r, _mm512_fnmadd_ps(x, r, one), r);
            // rcp14 does not flush a subnormal result; the AVX2 build's rcpps does: match it.
            let tiny = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(r, _mm512_set1_ps(f32::MIN_POSITIVE));
            Avx512(_mm512_mask_blend_ps(tiny, r, _mm512_setzero_ps()))
        }
    }
    #[inline(always)]
    fn lt_select(self, o: Self, a: Self, b: Self) -> Self {
        unsafe {
            let m = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(self.0, o.0);
            // The blend takes its second operand where the mask is set.
            Avx512(_mm512_mask_blend_ps(m, b.0, a.0))
        }
    }
    #[inline(always)]
    fn gt_select(self, o: Self, a: Self, b: Self) -> Self {
        unsafe {
            let m = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(self.0, o.0);
            Avx512(_mm512_mask_blend_ps(m, b.0, a.0))
        }
    }
    #[inline(always)]
    fn abs(self) -> Self {
        unsafe {
            let bits = _mm512_and_si512(_mm512_castps_si512(self.0), _mm512_set1_epi32(i32::MAX));
            Avx512(_mm512_castsi512_ps(bits))
        }
    }
    #[inline(always)]
    fn with_sign_of(self, sign: Self) -> Self {
        unsafe {
            let magnitude =
                _mm512_and_si512(_mm512_castps_si512(self.0), _mm512_set1_epi32(i32::MAX));
            let s = _mm512_and_si512(_mm512_castps_si512(sign.0), _mm512_set1_epi32(i32::MIN));
            Avx512(_mm512_castsi512_ps(_mm512_or_si512(magnitude, s)))
        }
    }
    #[inline(always)]
    fn pow2i(self) -> Self {
        unsafe {
            let n = _mm512_cvtps_epi32(self.0);
            let e = _mm512_slli_epi32::<23>(_mm512_add_epi32(n, _mm512_set1_epi32(127)));
            Avx512(_mm512_castsi512_ps(e))
        }
    }
}
