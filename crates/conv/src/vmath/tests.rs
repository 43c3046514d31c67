//! Each function of both builds against f64: a dense sweep over the range that matters and
//! random inputs, with the bounds the module documents; the special values; and the two
//! builds against each other.

use super::*;

/// The inputs: a sweep from `lo` to `hi` and a few thousand seeded random values in it.
fn inputs(lo: f32, hi: f32) -> Vec<f32> {
    let mut v: Vec<f32> = (0..=20_000)
        .map(|i| lo + (hi - lo) * i as f32 / 20_000.0)
        .collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..5000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let u = (state >> 40) as f32 / (1u64 << 24) as f32;
        v.push(lo + (hi - lo) * u);
    }
    v.extend([0.0, -0.0, 1e-30, -1e-30, 1e-7, -1e-7]);
    v
}

/// One build: the function, the slice, the bias.
type Build = fn(Elementwise, &mut [f32], Option<f32>);

/// Every build this CPU can run: (name, function).
fn builds() -> Vec<(&'static str, Build)> {
    #[allow(unused_mut)] // only x86-64 adds a build
    let mut b: Vec<(&'static str, Build)> =
        vec![("portable", |e, d, bias| e.apply_portable(d, bias))];
    #[cfg(target_arch = "x86_64")]
    if crate::isa::cpu_has_avx2_fma() {
        // SAFETY: AVX2 and FMA are present.
        b.push(("avx2", |e, d, bias| unsafe { e.apply_avx2(d, bias) }));
    }
    #[cfg(target_arch = "aarch64")]
    b.push(("neon", |e, d, bias| e.run::<crate::lanes::Neon>(d, bias)));
    #[cfg(target_arch = "x86_64")]
    if crate::isa::cpu_has_avx512() {
        // SAFETY: AVX-512F is present.
        b.push(("avx512", |e, d, bias| unsafe { e.apply_avx512(d, bias) }));
    }
    b
}

/// Checks `f` against `reference` on `xs`: `|got - want| <= abs + rel * |want|`.
fn check(f: Elementwise, xs: &[f32], reference: impl Fn(f64) -> f64, abs: f64, rel: f64) {
    for (name, run) in builds() {
        let mut got = xs.to_vec();
        run(f, &mut got, None);
        for (&x, &g) in xs.iter().zip(&got) {
            let want = reference(x as f64);
            let err = (g as f64 - want).abs();
            assert!(
                err <= abs + rel * want.abs(),
                "{name} {f:?}({x:e}) = {g:e}, want {want:e} (error {err:e})"
            );
        }
    }
}

#[test]
fn exp_is_within_two_ulp_of_normal_results() {
    let xs = inputs(-87.0, 88.7);
    // 2 ulp of a normal float: 2 * 2^-23 relative.
    check(
        Elementwise::Exp,
        &xs,
        f64::exp,
        0.0,
        2.0 * f32::EPSILON as f64,
    );
    // Gradual underflow below -87.3: within a few denormal steps.
    let tiny = inputs(-103.9, -87.4);
    check(
        Elementwise::Exp,
        &tiny,
        f64::exp,
        4.0 * 1.4e-45,
        4.0 * f32::EPSILON as f64,
    );
}

#[test]
fn logistic_and_tanh_are_within_their_bounds() {
    let xs = inputs(-30.0, 30.0);
    check(
        Elementwise::Sigmoid,
        &xs,
        |x| 1.0 / (1.0 + (-x).exp()),
        3e-7,
        1e-5,
    );
    check(Elementwise::Tanh, &xs, f64::tanh, 1e-30, 5e-7);
}

#[test]
fn erf_is_within_its_bounds() {
    let xs = inputs(-6.0, 6.0);
    check(Elementwise::Erf, &xs, libm::erf, 2e-7, 1e-6);
    let near = inputs(-0.6, 0.6);
    check(Elementwise::Erf, &near, libm::erf, 1e-12, 1e-6);
}

#[test]
fn the_activations_built_on_them_match_f64() {
    let xs = inputs(-12.0, 12.0);
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    check(Elementwise::Silu, &xs, |x| x * sig(x), 1e-6, 1e-5);
    let gelu = |x: f64| 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
    check(Elementwise::Gelu { tanh: false }, &xs, gelu, 1e-6, 1e-5);
    let gelu_tanh = |x: f64| {
        let c = (2.0 / std::f64::consts::PI).sqrt();
        0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
    };
    check(Elementwise::Gelu { tanh: true }, &xs, gelu_tanh, 1e-6, 1e-5);
    let hs = |x: f64| (0.2 * x + 0.5).clamp(0.0, 1.0);
    let f = Elementwise::HardSigmoid {
        alpha: 0.2,
        beta: 0.5,
    };
    check(f, &xs, hs, 1e-7, 1e-6);
    check(
        Elementwise::HardSwish,
        &xs,
        |x| x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
        1e-6,
        1e-6,
    );
    let leaky = |x: f64| if x < 0.0 { 0.1 * x } else { x };
    check(Elementwise::LeakyRelu(0.1), &xs, leaky, 1e-7, 1e-6);
}

#[test]
fn special_values() {
    let all = [
        Elementwise::Exp,
        Elementwise::Sigmoid,
        Elementwise::Tanh,
        Elementwise::Erf,
        Elementwise::Silu,
        Elementwise::Gelu { tanh: false },
        Elementwise::Gelu { tanh: true },
        Elementwise::HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        },
        Elementwise::HardSwish,
        Elementwise::LeakyRelu(0.1),
    ];
    for (name, run) in builds() {
        for f in all {
            let mut v = [f32::NAN];
            run(f, &mut v, None);
            assert!(v[0].is_nan(), "{name} {f:?}(NaN) = {}", v[0]);
        }
        let limits = |f: Elementwise| {
            let mut v = [f32::NEG_INFINITY, -200.0, 200.0, f32::INFINITY];
            run(f, &mut v, None);
            v
        };
        assert_eq!(
            limits(Elementwise::Exp),
            [0.0, 0.0, f32::INFINITY, f32::INFINITY]
        );
        assert_eq!(limits(Elementwise::Sigmoid), [0.0, 0.0, 1.0, 1.0], "{name}");
        assert_eq!(limits(Elementwise::Tanh), [-1.0, -1.0, 1.0, 1.0], "{name}");
        assert_eq!(limits(Elementwise::Erf), [-1.0, -1.0, 1.0, 1.0], "{name}");
        let mut v = [0.0f32, -0.0];
        run(Elementwise::Tanh, &mut v, None);
        assert_eq!(v.map(f32::to_bits), [0.0f32.to_bits(), (-0.0f32).to_bits()]);
    }
}

#[test]
fn bias_is_added_first_and_the_builds_agree() {
    let xs = inputs(-10.0, 10.0);
    let b = builds();
    for f in [Elementwise::Sigmoid, Elementwise::Silu, Elementwise::Tanh] {
        let mut with_bias = xs.clone();
        f.apply(&mut with_bias, Some(1.5));
        let mut shifted: Vec<f32> = xs.iter().map(|x| x + 1.5).collect();
        f.apply(&mut shifted, None);
        assert_eq!(with_bias, shifted);
        let outs: Vec<Vec<f32>> = b
            .iter()
            .map(|(_, run)| {
                let mut v = xs.clone();
                run(f, &mut v, None);
                v
            })
            .collect();
        for o in &outs[1..] {
            for (a, c) in outs[0].iter().zip(o) {
                assert!((a - c).abs() <= 1e-6 * (1.0 + a.abs()), "{f:?}: {a} vs {c}");
            }
        }
    }
}
