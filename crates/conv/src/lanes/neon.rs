//! [`Lanes`] on NEON (aarch64, where it is baseline): four lanes in a `float32x4_t`.
//!
//! NEON's `vminq`/`vmaxq` return NaN when either operand is NaN; the trait wants `self` back
//! when `self` is NaN (and the other operand when only it is, as `minps` gives), so `min` and
//! `max` are a compare and a select, like the scalar build. The reciprocal estimate (8 bits)
//! gets three Newton steps, and results below the normal range are flushed to 0, as the x86-64
//! builds do.

use super::Lanes;
use std::arch::aarch64::*;

/// Four lanes in a NEON register.
#[derive(Clone, Copy)]
pub(crate) struct Neon(pub(crate) float32x4_t);

// SAFETY (every method): NEON is part of the aarch64 baseline; the intrinsics need nothing the
// target does not have.
impl Lanes for Neon {
    const WIDTH: usize = 4;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Neon(vld1q_f32(p))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        vst1q_f32(p, self.0)
    }
    #[inline(always)]
    fn splat(v: f32) -> Self {
        unsafe { Neon(vdupq_n_f32(v)) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        unsafe { Neon(vaddq_f32(self.0, o.0)) }
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        unsafe { Neon(vsubq_f32(self.0, o.0)) }
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        unsafe { Neon(vmulq_f32(self.0, o.0)) }
    }
    #[inline(always)]
    fn madd(self, b: Self, c: Self) -> Self {
        // vfmaq(c, a, b) = c + a * b, fused.
        unsafe { Neon(vfmaq_f32(c.0, self.0, b.0)) }
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        unsafe { Neon(vbslq_f32(vcltq_f32(o.0, self.0), o.0, self.0)) }
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        unsafe { Neon(vbslq_f32(vcgtq_f32(o.0, self.0), o.0, self.0)) }
    }
    #[inline(always)]
    fn recip_pos(self) -> Self {
        unsafe {
            // Above 1e38 the reciprocal is below the normal range: clamp (NaN stays NaN, the
            // compare being false), estimate, refine, flush.
            let big = vdupq_n_f32(1e38);
            let x = vbslq_f32(vcgtq_f32(self.0, big), big, self.0);
            let mut r = vrecpeq_f32(x);
            for _ in 0..3 {
                // vrecps(x, r) = 2 - x * r.
                r = vmulq_f32(r, vrecpsq_f32(x, r));
            }
            let tiny = vcltq_f32(r, vdupq_n_f32(f32::MIN_POSITIVE));
            Neon(vbslq_f32(tiny, vdupq_n_f32(0.0), r))
        }
    }
    #[inline(always)]
    fn lt_select(self, o: Self, a: Self, b: Self) -> Self {
        unsafe { Neon(vbslq_f32(vcltq_f32(self.0, o.0), a.0, b.0)) }
    }
    #[inline(always)]
    fn gt_select(self, o: Self, a: Self, b: Self) -> Self {
        unsafe { Neon(vbslq_f32(vcgtq_f32(self.0, o.0), a.0, b.0)) }
    }
    #[inline(always)]
    fn abs(self) -> Self {
        unsafe { Neon(vabsq_f32(self.0)) }
    }
    #[inline(always)]
    fn with_sign_of(self, sign: Self) -> Self {
        unsafe { Neon(vbslq_f32(vdupq_n_u32(0x8000_0000), sign.0, self.0)) }
    }
    #[inline(always)]
    fn pow2i(self) -> Self {
        unsafe {
            let n = vcvtnq_s32_f32(self.0);
            let e = vshlq_n_s32::<23>(vaddq_s32(n, vdupq_n_s32(127)));
            Neon(vreinterpretq_f32_s32(e))
        }
    }
}
