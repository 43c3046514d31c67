//! Property tests: every fast kernel against its naive reference on random geometries.
//!
//! Error bound. The references accumulate in f64 and round once, so they are (almost) exact.
//! The fast kernels sum `n` f32 products (n = K + 1 with the bias, K = (in_c/groups)*k_h*k_w
//! <= 64*3*3 = 576 here), and for any summation order the rounding error of an f32 sum of
//! products is at most about `n * u * S`, with `u = 2^-24 ~ 6e-8` and `S = |b| + sum |w*x|`
//! (the sum of absolute values of the terms): here at most `577 * 6e-8 ~ 3.5e-5 * S`. The
//! activations are 1-Lipschitz (sigmoid 1/4), so they do not enlarge the error, and their own
//! rounding adds at most a few `u` relative to a value bounded by `1 + S`. We therefore assert
//!
//! `|fast - reference| <= 1e-4 * (1 + S)`
//!
//! per output, computing `S` exactly with the reference kernel on `|x|`, `|w|`, `|b|`. The
//! margin over the worst case is ~3x (~8x for K <= 200), and the `1 +` covers outputs whose
//! sum cancels to ~0. The deep-layer cases (K up to 2,340, to reach the GEMM's long reduction
//! blocks) use twice the worst case instead, `2 * (K + 1) * u` (2.8e-4 at K = 2,340).
//! Inputs, weights and biases are uniform in [-1, 1].

use cnn_conv::conv::{conv2d_packed_onto_tuned, conv2d_packed_tuned, conv2d_tuned, ConvTuning};
use cnn_conv::depthwise::depthwise_conv2d_tuned;
use cnn_conv::packed::Orientation;
use cnn_conv::*;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TOL: f32 = 1e-4;

fn uniform(len: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..=1.0)).collect()
}

fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

/// Asserts `|got - want| <= TOL * (1 + scale)` element-wise.
fn assert_close(got: &[f32], want: &[f32], scale: &[f32]) -> Result<(), TestCaseError> {
    assert_close_tol(got, want, scale, TOL)
}

/// The tolerance for sums of `k` products (plus a bias): [`TOL`], or twice the worst-case
/// rounding bound `(k + 1) * 2^-24` when that is larger (k > ~830).
fn tol_for(k: usize) -> f32 {
    TOL.max(2.0 * (k + 1) as f32 * f32::EPSILON / 2.0)
}

/// Asserts `|got - want| <= tol * (1 + scale)` element-wise.
fn assert_close_tol(
    got: &[f32],
    want: &[f32],
    scale: &[f32],
    tol: f32,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (i, ((g, w), s)) in got.iter().zip(want).zip(scale).enumerate() {
        let bound = tol * (1.0 + s);
        prop_assert!(
            (g - w).abs() <= bound,
            "output {}: got {}, reference {}, bound {}",
            i,
            g,
            w,
            bound
        );
    }
    Ok(())
}

fn padding() -> impl Strategy<Value = Padding> {
    prop_oneof![
        Just(Padding::Valid),
        Just(Padding::Same),
        (0..3usize, 0..3usize).prop_map(|(h, w)| Padding::Explicit { h, w }),
        (0..3usize, 0..3usize, 0..3usize, 0..3usize).prop_map(|(top, bottom, left, right)| {
            Padding::Asymmetric {
                top,
                bottom,
                left,
                right,
            }
        }),
    ]
}

fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::Linear),
        Just(Activation::Relu),
        Just(Activation::Sigmoid),
        Just(Activation::Tanh),
        Just(Activation::Clip {
            min: -0.25,
            max: 0.5
        }),
        Just(Activation::LeakyRelu(0.1)),
        Just(Activation::Silu),
        Just(Activation::HardSigmoid {
            alpha: 0.2,
            beta: 0.5
        }),
        Just(Activation::HardSwish),
        Just(Activation::Gelu { tanh: false }),
        Just(Activation::Gelu { tanh: true }),
    ]
}

/// One convolution test case: the input size, the spec, and what to run.
#[derive(Debug, Clone)]
struct Case {
    batch: usize,
    in_c: usize,
    in_h: usize,
    in_w: usize,
    spec: Conv2dSpec,
    bias: bool,
    act: Activation,
    /// Column tile bound as a number of output pixels (0: the production default); tiles are
    /// whole panels of 16 or 6 pixels, at least one, and may start inside an output row.
    tile_pixels: usize,
    /// Force the work to be split for `threads` workers, however small it is.
    force_split: bool,
    threads: usize,
    seed: u64,
}

/// Strategy for a case with `in_c` channels, `groups` dividing it, `mg` filters per group.
#[allow(clippy::too_many_arguments)]
fn case(
    batch: impl Strategy<Value = usize>,
    in_c: impl Strategy<Value = usize>,
    groups_of: fn(usize) -> BoxedStrategy<usize>,
    mg: impl Strategy<Value = usize> + Clone + 'static,
    hw: std::ops::RangeInclusive<usize>,
    kernel: std::ops::RangeInclusive<usize>,
    stride: std::ops::RangeInclusive<usize>,
    padding: BoxedStrategy<Padding>,
    tile_pixels: BoxedStrategy<usize>,
) -> impl Strategy<Value = Case> {
    let sizes = (batch, in_c)
        .prop_flat_map(move |(batch, in_c)| (Just(batch), Just(in_c), groups_of(in_c), mg.clone()));
    let window = (
        hw.clone(),
        hw,
        [kernel.clone(), kernel],
        [stride.clone(), stride],
        [1..=3usize, 1..=3usize],
        padding,
    );
    let run = (
        (any::<bool>(), activation(), tile_pixels),
        (any::<bool>(), 1..=4usize, any::<u64>()),
    );
    (sizes, window, run).prop_map(
        |((batch, in_c, groups, mg), (in_h, in_w, kernel, stride, dilation, padding), run)| {
            let ((bias, act, tile_pixels), (force_split, threads, seed)) = run;
            Case {
                batch,
                in_c,
                in_h,
                in_w,
                spec: Conv2dSpec {
                    filters: groups * mg,
                    kernel,
                    stride,
                    dilation,
                    padding,
                    groups,
                },
                bias,
                act,
                tile_pixels,
                force_split,
                threads,
                seed,
            }
        },
    )
}

fn any_divisor(in_c: usize) -> BoxedStrategy<usize> {
    let divisors: Vec<usize> = (1..=in_c).filter(|g| in_c.is_multiple_of(*g)).collect();
    prop::sample::select(divisors).boxed()
}

fn all_channels(in_c: usize) -> BoxedStrategy<usize> {
    Just(in_c).boxed()
}

/// Random data for a case: (input, weights, bias).
fn data(geom: &Conv2dGeometry, c: &Case) -> (Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
    let input = uniform(c.batch * geom.in_len(), &mut rng);
    let weights = uniform(geom.weight_len(), &mut rng);
    let bias = c.bias.then(|| uniform(geom.out_c, &mut rng));
    (input, weights, bias)
}

/// The reference output and the per-output scale `S = |b| + sum |w*x|`.
fn reference(
    geom: &Conv2dGeometry,
    c: &Case,
    input: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let len = c.batch * geom.out_len();
    let mut want = vec![0.0; len];
    conv2d_direct(geom, input, c.batch, weights, bias, c.act, &mut want).unwrap();
    let mut scale = vec![0.0; len];
    let abs_bias = bias.map(abs);
    conv2d_direct(
        geom,
        &abs(input),
        c.batch,
        &abs(weights),
        abs_bias.as_deref(),
        Activation::Linear,
        &mut scale,
    )
    .unwrap();
    (want, scale)
}

/// The convolution added onto a residual (`conv2d_packed_onto`): `act(residual + conv +
/// bias)` against the direct convolution plus the residual, in every orientation of every
/// kernel build (depthwise weights: their own path).
#[allow(clippy::too_many_arguments)]
fn check_onto(
    geom: &Conv2dGeometry,
    c: &Case,
    input: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    scale: &[f32],
    tol: f32,
    tuning: &ConvTuning,
) -> Result<(), TestCaseError> {
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed ^ 0x5eed);
    let residual = uniform(scale.len(), &mut rng);
    let mut want = vec![0.0; scale.len()];
    conv2d_direct(
        geom,
        input,
        c.batch,
        weights,
        bias,
        Activation::Linear,
        &mut want,
    )
    .unwrap();
    want.iter_mut().zip(&residual).for_each(|(w, r)| *w += r);
    c.act.apply(&mut want);
    let scale: Vec<f32> = scale
        .iter()
        .zip(&residual)
        .map(|(s, r)| s + r.abs())
        .collect();
    let mut packings = Vec::new();
    if geom.is_depthwise() {
        packings.push(PackedWeights::new(geom, weights).unwrap());
    } else {
        for orientation in [
            Orientation::PixelsInVectors,
            Orientation::ChannelsInVectors,
            Orientation::ChannelsLast,
        ] {
            for kernel in Kernel::runnable() {
                let p = PackedWeights::with_orientation(geom, weights, orientation, kernel);
                packings.push(p.unwrap());
            }
        }
    }
    for packed in packings {
        let mut got = residual.clone();
        conv2d_packed_onto_tuned(
            geom, input, c.batch, &packed, bias, c.act, &mut got, *tuning,
        )
        .unwrap();
        assert_close_tol(&got, &want, &scale, tol).map_err(|e| {
            let o = packed.orientation();
            fail_on(packed.kernel(), format!("onto a residual, {o:?}: {e}"))
        })?;
    }
    Ok(())
}

/// The failure `e` of kernel build `kernel`.
fn fail_on(kernel: Kernel, e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(format!("{} kernel: {e}", kernel.info().name))
}

/// Runs the production path (with the case's tuning) and the plain path against the direct
/// reference. Geometries that do not resolve are skipped.
fn check_conv(c: Case) -> Result<(), TestCaseError> {
    let geom = Conv2dGeometry::resolve(c.in_c, c.in_h, c.in_w, &c.spec);
    prop_assume!(geom.is_ok());
    let geom = geom.unwrap();
    let (input, weights, bias) = data(&geom, &c);
    let (want, scale) = reference(&geom, &c, &input, &weights, bias.as_deref());
    let tol = tol_for(geom.col_rows());
    let tuning = ConvTuning {
        tile_bytes: match c.tile_pixels {
            0 => ConvTuning::default().tile_bytes,
            pixels => pixels * 4 * geom.col_rows(),
        },
        par_min_macs: if c.force_split {
            0
        } else {
            ConvTuning::default().par_min_macs
        },
        threads: c.force_split.then_some(c.threads),
        ..ConvTuning::default()
    };
    let mut got = vec![f32::NAN; want.len()];
    let b = bias.as_deref();
    conv2d_tuned(&geom, &input, c.batch, &weights, b, c.act, &mut got, tuning).unwrap();
    assert_close_tol(&got, &want, &scale, tol)?;
    // Every other kernel build this CPU runs (the default above is the best one), and the
    // portable build of the AVX-512 tile's shape (6 x 32).
    for kernel in Kernel::runnable() {
        let tuning = ConvTuning {
            kernel: Some(kernel),
            ..tuning
        };
        let mut got = vec![f32::NAN; want.len()];
        conv2d_tuned(&geom, &input, c.batch, &weights, b, c.act, &mut got, tuning).unwrap();
        assert_close_tol(&got, &want, &scale, tol).map_err(|e| fail_on(kernel, e))?;
    }
    // Weights packed once, used for two calls.
    let packed = PackedWeights::new(&geom, &weights).unwrap();
    for _ in 0..2 {
        let mut got = vec![f32::NAN; want.len()];
        conv2d_packed(&geom, &input, c.batch, &packed, b, c.act, &mut got).unwrap();
        assert_close_tol(&got, &want, &scale, tol)?;
    }
    // Every orientation of the packed GEMM, whichever the production path picks for this
    // geometry: unfolded panels with pixels or channels in the vectors, and the column matrix
    // read in place from a channels-last copy (with tiles of a few pixels too, and one image per
    // round of copies when splits are forced); every kernel build.
    if !geom.is_depthwise() {
        let orientations = [
            Orientation::PixelsInVectors,
            Orientation::ChannelsInVectors,
            Orientation::ChannelsLast,
        ];
        for (orientation, kernel) in orientations
            .into_iter()
            .flat_map(|o| Kernel::runnable().into_iter().map(move |k| (o, k)))
        {
            let packed =
                PackedWeights::with_orientation(&geom, &weights, orientation, kernel).unwrap();
            let tuning = ConvTuning {
                cache_bytes: match c.tile_pixels {
                    0 => ConvTuning::default().cache_bytes,
                    _ => tuning.tile_bytes,
                },
                channels_last_bytes: if c.force_split { 1 } else { usize::MAX },
                ..tuning
            };
            let mut got = vec![f32::NAN; want.len()];
            conv2d_packed_tuned(&geom, &input, c.batch, &packed, b, c.act, &mut got, tuning)
                .unwrap();
            assert_close_tol(&got, &want, &scale, tol)
                .map_err(|e| fail_on(kernel, format!("{orientation:?}: {e}")))?;
        }
    }
    check_onto(&geom, &c, &input, &weights, b, &scale, tol, &tuning)?;
    let mut plain = vec![f32::NAN; want.len()];
    conv2d_im2col_plain(&geom, &input, c.batch, &weights, b, c.act, &mut plain).unwrap();
    assert_close_tol(&plain, &want, &scale, tol)?;
    if geom.groups == geom.in_c {
        let mut dw = vec![f32::NAN; want.len()];
        depthwise_conv2d(&geom, &input, c.batch, &weights, b, c.act, &mut dw).unwrap();
        assert_close(&dw, &want, &scale)?;
        // The portable code too (the default above is the SIMD build on x86 with AVX2).
        let mut dw = vec![f32::NAN; want.len()];
        let (x, w) = (&input, &weights);
        depthwise_conv2d_tuned(&geom, x, c.batch, w, b, c.act, &mut dw, true).unwrap();
        assert_close(&dw, &want, &scale)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Everything random: groups, non-square inputs and kernels, strides, dilation, padding,
    /// bias, activation, and tiles of 1-40 pixels (whole panels) or the default bound.
    #[test]
    fn conv2d_matches_direct(c in case(
        1..=3usize, 1..=8usize, any_divisor, 1..=3usize, 1..=14, 1..=5, 1..=3,
        padding().boxed(), prop_oneof![Just(0usize), 1..=40usize].boxed(),
    )) {
        check_conv(c)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    /// Pointwise: 1x1, stride 1, no padding (the no-im2col path).
    #[test]
    fn pointwise_matches_direct(c in case(
        1..=3usize, 1..=8usize, any_divisor, 1..=4usize, 1..=14, 1..=1, 1..=1,
        prop_oneof![Just(Padding::Valid), Just(Padding::Same)].boxed(), Just(0usize).boxed(),
    )) {
        prop_assert!(
            Conv2dGeometry::resolve(c.in_c, c.in_h, c.in_w, &c.spec).map_or(true, |g| g.is_pointwise())
        );
        check_conv(c)?;
    }

    /// Depthwise: groups == in_c, depth multiplier 1-3 (also run through depthwise_conv2d);
    /// kernels up to 7 wide (rows of 3, 5 and 7 taps run as one pass each).
    #[test]
    fn depthwise_matches_direct(c in case(
        1..=3usize, 1..=8usize, all_channels, 1..=3usize, 1..=14, 1..=7, 1..=3,
        padding().boxed(), Just(0usize).boxed(),
    )) {
        check_conv(c)?;
    }

    /// Depthwise 3x3 with unit dilation (the nine-tap fused loop), stride 1 or 2 (the pairwise
    /// de-interleaving copy), planes up to 40x40.
    #[test]
    fn depthwise_3x3_matches_direct(c in case(
        1..=2usize, 1..=6usize, all_channels, 1..=2usize, 1..=40, 3..=3, 1..=2,
        padding().boxed(), Just(0usize).boxed(),
    ).prop_map(|mut c| { c.spec.dilation = [1, 1]; c })) {
        check_conv(c)?;
    }

    /// Larger outputs with tiny tiles: the column matrix is split into many tiles of one to a
    /// few panels, starting and ending inside output rows.
    #[test]
    fn tiled_conv2d_matches_direct(c in case(
        1..=2usize, 1..=4usize, any_divisor, 1..=3usize, 10..=40, 1..=4, 1..=2,
        padding().boxed(), (1..=60usize).boxed(),
    )) {
        check_conv(c)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// Many filters per group on small images, so that forced splits of single images cut
    /// the output channels into blocks (the weights are the larger operand), with tiling.
    #[test]
    fn wide_conv2d_matches_direct(c in case(
        1..=2usize, 1..=4usize, any_divisor, 16..=40usize, 4..=16, 1..=3, 1..=2,
        padding().boxed(), prop_oneof![Just(0usize), 1..=40usize].boxed(),
    )) {
        check_conv(c)?;
    }

    /// Wide output rows (up to 90 pixels) cut into tiles of up to 200 pixels (several panels
    /// per row, tiles starting and ending inside rows).
    #[test]
    fn wide_rows_conv2d_matches_direct(c in case(
        1..=2usize, 1..=3usize, any_divisor, 1..=7usize, 30..=90, 1..=5, 1..=1,
        padding().boxed(), prop_oneof![Just(0usize), 1..=200usize].boxed(),
    )) {
        check_conv(c)?;
    }

    /// Deep layers: long reductions (K = in_c * 9 up to 2,340: several reduction blocks
    /// added into the output), with few pixels and many channels (the GEMM holds channels in
    /// its vectors and stores tiles transposed) or more pixels (whole 6 x 16 tiles written
    /// straight into the output).
    #[test]
    fn deep_conv2d_matches_direct(c in case(
        1..=2usize, prop_oneof![30..=64usize, 228..=260usize], |_| Just(1usize).boxed(),
        6..=40usize, 1..=12, 3..=3, 1..=1,
        Just(Padding::Same).boxed(), Just(0usize).boxed(),
    )) {
        check_conv(c)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 60, ..ProptestConfig::default() })]

    /// GEMM edges: many input channels (K = in_c/groups * k_h * k_w up to 576, and small K
    /// like 27), odd numbers of filters, tiles of a few panels.
    #[test]
    fn gemm_edges_match_direct(c in case(
        1..=2usize, prop_oneof![Just(3usize), 20..=64usize], |in_c| {
            prop::sample::select(vec![1, if in_c % 2 == 0 { 2 } else { 1 }]).boxed()
        }, 1..=20usize, 1..=12, 1..=3, 1..=2,
        padding().boxed(), prop_oneof![Just(0usize), 1..=40usize].boxed(),
    )) {
        check_conv(c)?;
    }
}

/// A locally connected case.
#[derive(Debug, Clone)]
struct LocalCase {
    batch: usize,
    in_c: usize,
    in_h: usize,
    in_w: usize,
    spec: Conv2dSpec,
    bias: bool,
    act: Activation,
    seed: u64,
}

fn local_case() -> impl Strategy<Value = LocalCase> {
    (
        (1..=2usize, 1..=4usize, 1..=10usize, 1..=10usize, 1..=5usize),
        (
            [1..=4usize, 1..=4usize],
            [1..=3usize, 1..=3usize],
            [1..=2usize, 1..=2usize],
        ),
        (padding(), any::<bool>(), activation(), any::<u64>()),
    )
        .prop_map(
            |((batch, in_c, in_h, in_w, filters), (kernel, stride, dilation), rest)| {
                let (padding, bias, act, seed) = rest;
                LocalCase {
                    batch,
                    in_c,
                    in_h,
                    in_w,
                    spec: Conv2dSpec {
                        filters,
                        kernel,
                        stride,
                        dilation,
                        padding,
                        groups: 1,
                    },
                    bias,
                    act,
                    seed,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Locally connected (unshared weights) against its reference.
    #[test]
    fn locally_connected_matches_direct(c in local_case()) {
        let geom = Conv2dGeometry::resolve(c.in_c, c.in_h, c.in_w, &c.spec);
        prop_assume!(geom.is_ok());
        let g = geom.unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
        let input = uniform(c.batch * g.in_len(), &mut rng);
        let weights = uniform(g.col_cols() * g.out_c * g.col_rows(), &mut rng);
        let bias = c.bias.then(|| uniform(g.out_len(), &mut rng));
        let len = c.batch * g.out_len();
        let (mut got, mut want, mut scale) = (vec![f32::NAN; len], vec![0.0; len], vec![0.0; len]);
        let b = bias.as_deref();
        locally_connected2d(&g, &input, c.batch, &weights, b, c.act, &mut got).unwrap();
        locally_connected2d_direct(&g, &input, c.batch, &weights, b, c.act, &mut want).unwrap();
        let abs_bias = bias.as_deref().map(abs);
        locally_connected2d_direct(
            &g, &abs(&input), c.batch, &abs(&weights), abs_bias.as_deref(),
            Activation::Linear, &mut scale,
        ).unwrap();
        assert_close(&got, &want, &scale)?;
    }

    /// Dense against its reference.
    #[test]
    fn dense_matches_direct(
        batch in 1..=4usize,
        in_features in 1..=64usize,
        units in 1..=20usize,
        bias in any::<bool>(),
        act in activation(),
        seed in any::<u64>(),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let input = uniform(batch * in_features, &mut rng);
        let weights = uniform(units * in_features, &mut rng);
        let bias = bias.then(|| uniform(units, &mut rng));
        let b = bias.as_deref();
        let len = batch * units;
        let (mut got, mut want, mut scale) = (vec![f32::NAN; len], vec![0.0; len], vec![0.0; len]);
        dense(&input, batch, in_features, &weights, b, act, &mut got).unwrap();
        dense_direct(&input, batch, in_features, &weights, b, act, &mut want).unwrap();
        let abs_bias = bias.as_deref().map(abs);
        dense_direct(
            &abs(&input), batch, in_features, &abs(&weights), abs_bias.as_deref(),
            Activation::Linear, &mut scale,
        ).unwrap();
        assert_close(&got, &want, &scale)?;
    }

    /// Pooling: the output is a max / mean of a subset of the real window cells; checked
    /// against a brute-force scan of the window with explicit bounds tests.
    #[test]
    fn pools_match_brute_force(
        c in 1..=3usize, h in 1..=9usize, w in 1..=9usize,
        pool in [1..=4usize, 1..=4usize], stride in [1..=3usize, 1..=3usize],
        same in any::<bool>(), seed in any::<u64>(),
    ) {
        let spec = Pool2dSpec {
            pool,
            stride,
            padding: if same { Padding::Same } else { Padding::Valid },
        };
        let g = Pool2dGeometry::resolve(c, h, w, &spec);
        prop_assume!(g.is_ok());
        let g = g.unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let input = uniform(2 * g.in_len(), &mut rng);
        // NaN-filled: every output is written (the ONNX executor hands pools reused buffers).
        let (mut mx, mut avg) = (vec![f32::NAN; 2 * g.out_len()], vec![f32::NAN; 2 * g.out_len()]);
        max_pool2d(&g, &input, 2, &mut mx).unwrap();
        avg_pool2d(&g, &input, 2, &mut avg).unwrap();
        for plane in 0..2 * c {
            for oh in 0..g.out_h {
                for ow in 0..g.out_w {
                    let (mut m, mut s, mut n) = (f32::NEG_INFINITY, 0.0f64, 0usize);
                    for ph in 0..g.pool_h {
                        for pw in 0..g.pool_w {
                            let ih = (oh * g.stride_h + ph) as isize - g.pad_top as isize;
                            let iw = (ow * g.stride_w + pw) as isize - g.pad_left as isize;
                            if ih >= 0 && iw >= 0 && (ih as usize) < h && (iw as usize) < w {
                                let v = input[(plane * h + ih as usize) * w + iw as usize];
                                m = m.max(v);
                                s += f64::from(v);
                                n += 1;
                            }
                        }
                    }
                    let o = (plane * g.out_h + oh) * g.out_w + ow;
                    prop_assert!(n > 0);
                    prop_assert_eq!(mx[o], m);
                    prop_assert!((f64::from(avg[o]) - s / n as f64).abs() <= 1e-5);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Transposed convolution: the GEMM + col2im path against the scatter loop (f64), on
    /// random strides, dilations, pads, output padding and groups; bound
    /// `1e-4 * (1 + max |reference|)`.
    #[test]
    fn transposed_convolution_equals_the_scatter_loop(
        batch in 1usize..3, cpg in 1usize..4, groups in 1usize..3, mpg in 1usize..4,
        h in 1usize..7, w in 1usize..7, kh in 1usize..4, kw in 1usize..4,
        stride in 1usize..4, dilation in 1usize..3, pads in proptest::array::uniform4(0usize..3),
        op in 0usize..2, bias: bool, seed: u64,
    ) {
        let output_padding = [op.min(stride.max(dilation) - 1); 2];
        let Some(g) = ConvTranspose2dGeometry::resolve(
            cpg * groups, [h, w], mpg * groups, [kh, kw], [stride; 2], [dilation; 2], pads,
            output_padding, groups,
        ) else {
            return Ok(());
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = uniform(batch * g.in_c * h * w, &mut rng);
        let wt = uniform(g.in_c * mpg * kh * kw, &mut rng);
        let b = bias.then(|| uniform(g.out_c, &mut rng));
        let len = batch * g.out_c * g.out_h * g.out_w;
        let (mut fast, mut slow) = (vec![f32::NAN; len], vec![0.0; len]);
        conv_transpose2d(&g, &x, batch, &wt, b.as_deref(), &mut fast).unwrap();
        conv_transpose2d_direct(&g, &x, batch, &wt, b.as_deref(), &mut slow).unwrap();
        let largest = slow.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (a, r) in fast.iter().zip(&slow) {
            prop_assert!((a - r).abs() <= 1e-4 * (1.0 + largest), "{} vs {} ({:?})", a, r, g);
        }
    }
}
