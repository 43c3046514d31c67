//! The micro-kernels against a plain tile product: every build the CPU runs (AVX-512 and AVX2
//! where it has them, portable, and the portable build of the 32-wide tile) computing a tile,
//! a row of tiles and a gathered tile, a gather past its source refused, and the store's bias
//! and activation.

use super::*;

/// The plain `MR x nr` product of `k` steps, rows `nr` apart.
fn reference(k: usize, nr: usize, bc: &[f32], vc: &[f32]) -> Vec<f32> {
    let mut t = vec![0.0; MR * nr];
    for l in 0..k {
        for i in 0..MR {
            for j in 0..nr {
                t[i * nr + j] += bc[l * MR + i] * vc[l * nr + j];
            }
        }
    }
    t
}

/// Every build the tests run: those the CPU runs, and the 32-wide portable one.
fn builds() -> Vec<Kernel> {
    let all = Kernel::runnable();
    assert!(all.contains(&Kernel::Portable) && all.contains(&Kernel::PortableWide));
    all
}

#[test]
fn every_build_gathers_the_tile() {
    // A source of 200 values; 6 pixels at scattered offsets, taps 0, 7 and 40, 5 steps each.
    let src: Vec<f32> = (0..200).map(|x| (x % 11) as f32 - 5.0).collect();
    let pixels = [0, 3, 17, 60, 61, 150];
    let taps = [0, 7, 40];
    let steps = 5;
    for kernel in builds() {
        let nr = kernel.nr();
        let vc: Vec<f32> = (0..taps.len() * steps * nr)
            .map(|x| (x % 7) as f32 * 0.25)
            .collect();
        let mut want = vec![0.0; MR * nr];
        for (i, &p) in pixels.iter().enumerate() {
            for (t, &tap) in taps.iter().enumerate() {
                for s in 0..steps {
                    for j in 0..nr {
                        want[i * nr + j] += src[p + tap + s] * vc[(t * steps + s) * nr + j];
                    }
                }
            }
        }
        let twice: Vec<f32> = want.iter().map(|w| 2.0 * w).collect();
        for prefetch_next in [false, true] {
            let g = Gather {
                src: &src,
                pixels,
                taps: &taps,
                steps,
                prefetch_next,
            };
            // One value more than the tile: it must be left alone.
            let mut out = vec![f32::NAN; MR * nr + 1];
            kernel.gather_tile(&g, &vc, &mut out, false);
            assert_eq!(out[..MR * nr], want[..], "{kernel:?} {prefetch_next}");
            assert!(out[MR * nr].is_nan());
            kernel.gather_tile(&g, &vc, &mut out, true);
            assert_eq!(
                out[..MR * nr],
                twice[..],
                "{kernel:?} {prefetch_next} accumulating"
            );
            // Row 0 alone (another summation order; these values sum exactly).
            let mut row = vec![f32::NAN; nr + 1];
            kernel.gather_first_row(&g, &vc, &mut row, false);
            assert_eq!(row[..nr], want[..nr], "{kernel:?} {prefetch_next} row");
            assert!(row[nr].is_nan());
            kernel.gather_first_row(&g, &vc, &mut row, true);
            assert_eq!(
                row[..nr],
                twice[..nr],
                "{kernel:?} {prefetch_next} row accumulating"
            );
        }
    }
}

#[test]
#[should_panic(expected = "past the source")]
fn gathering_past_the_source_is_refused() {
    let src = [1.0; 20];
    let g = Gather {
        src: &src,
        pixels: [0, 1, 2, 3, 4, 15],
        taps: &[0, 2],
        steps: 4,
        prefetch_next: false,
    };
    let mut out = [0.0; MR * NR_MAX];
    Kernel::selected().gather_tile(&g, &[0.0; 8 * NR_MAX], &mut out, false);
}

#[test]
fn every_build_computes_the_tile() {
    for kernel in builds() {
        let nr = kernel.nr();
        for k in [0, 1, 2, 7, 33] {
            let bc: Vec<f32> = (0..k * MR).map(|x| (x % 7) as f32 - 3.0).collect();
            let vc: Vec<f32> = (0..k * nr).map(|x| (x % 5) as f32 * 0.5).collect();
            let want = reference(k, nr, &bc, &vc);
            let mut out = [f32::NAN; MR * NR_MAX];
            kernel.tile(k, &bc, &vc, &mut out);
            assert_eq!(out[..MR * nr], want[..], "{kernel:?} k={k}");
            // Direct, with a row stride of nr + 4 and accumulation onto ones.
            let rs = nr + 4;
            let mut c = vec![1.0; (MR - 1) * rs + nr];
            // SAFETY: `c` holds MR rows of nr values at stride rs.
            unsafe { kernel.tiles_into(k, &bc, &vc, 1, 0, c.as_mut_ptr(), rs, true, None) };
            for i in 0..MR {
                for j in 0..nr {
                    assert_eq!(c[i * rs + j], want[i * nr + j] + 1.0, "{kernel:?}");
                }
            }
            // SAFETY: as above.
            unsafe { kernel.tiles_into(k, &bc, &vc, 1, 0, c.as_mut_ptr(), rs, false, None) };
            assert_eq!(c[(MR - 1) * rs + nr - 1], want[MR * nr - 1]);
            assert_eq!(c[nr], 1.0, "the gap between rows is left alone");
        }
    }
}

#[test]
fn every_build_computes_a_row_of_tiles() {
    for kernel in builds() {
        let nr = kernel.nr();
        // Three column panels of k steps, `stride` values apart (a gap of 5 values between
        // them), into three tiles side by side in rows of 3 * nr + 12 values.
        let (k, count, rs) = (9, 3, 3 * nr + 12);
        let stride = k * nr + 5;
        let bc: Vec<f32> = (0..k * MR).map(|x| (x % 7) as f32 - 3.0).collect();
        let vc: Vec<f32> = (0..(count - 1) * stride + k * nr)
            .map(|x| (x % 5) as f32 * 0.5 - (x / 150) as f32)
            .collect();
        let want: Vec<Vec<f32>> = (0..count)
            .map(|t| reference(k, nr, &bc, &vc[t * stride..][..k * nr]))
            .collect();
        for accumulate in [false, true] {
            let mut c = vec![1.0; MR * rs];
            // SAFETY: `c` holds MR rows of count * nr values at stride rs.
            unsafe {
                kernel.tiles_into(
                    k,
                    &bc,
                    &vc,
                    count,
                    stride,
                    c.as_mut_ptr(),
                    rs,
                    accumulate,
                    None,
                )
            };
            for (i, row) in c.chunks_exact(rs).enumerate() {
                for (j, &got) in row.iter().enumerate() {
                    let (t, u) = (j / nr, j % nr);
                    let expected = match want.get(t) {
                        Some(tile) => tile[i * nr + u] + if accumulate { 1.0 } else { 0.0 },
                        None => 1.0,
                    };
                    assert_eq!(got, expected, "{kernel:?} {accumulate} ({i}, {j})");
                }
            }
        }
    }
}

#[test]
fn every_build_finishes_tiles_as_bias_and_activation_do() {
    use crate::Activation;
    let bias = [0.5, -1.0, 2.0, 0.0, -0.25, 3.0];
    let acts = [
        Activation::Linear,
        Activation::Relu,
        Activation::Clip { min: 0.0, max: 6.0 },
        Activation::Clip {
            min: -2.0,
            max: f32::NAN,
        },
    ];
    for kernel in builds() {
        let nr = kernel.nr();
        // A NaN in row 2 of the broadcast panel makes tile row 2 NaN: a clamp turns it into
        // the lower bound, no activation keeps it.
        let k = 5;
        let mut bc: Vec<f32> = (0..k * MR).map(|x| (x % 7) as f32 - 3.0).collect();
        bc[2] = f32::NAN;
        let vc: Vec<f32> = (0..k * nr).map(|x| (x % 5) as f32 * 0.5 - 1.0).collect();
        let want = reference(k, nr, &bc, &vc);
        for act in acts {
            for with_bias in [false, true] {
                let finish = Finish {
                    bias: with_bias.then_some(&bias[..]),
                    clamp: act.as_clamp().expect("a clamp"),
                };
                let mut c = vec![f32::NAN; MR * nr];
                // SAFETY: `c` holds MR rows of nr values.
                unsafe {
                    let p = c.as_mut_ptr();
                    kernel.tiles_into(k, &bc, &vc, 1, 0, p, nr, false, Some(finish))
                };
                for (i, (got, row)) in c.chunks(nr).zip(want.chunks(nr)).enumerate() {
                    let mut expected = row.to_vec();
                    match with_bias {
                        true => act.apply_with_bias(&mut expected, bias[i]),
                        false => act.apply(&mut expected),
                    }
                    let same = got
                        .iter()
                        .zip(&expected)
                        .all(|(g, e)| g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan()));
                    assert!(same, "{kernel:?} {act:?} {with_bias} row {i}: {got:?}");
                }
            }
        }
    }
}

#[test]
fn every_kernel_describes_its_tile() {
    for kernel in builds() {
        let info = kernel.info();
        assert_eq!((info.mr, info.nr), (kernel.mr(), kernel.nr()));
        assert_eq!(info.nr % info.lanes, 0, "{info:?}");
        assert!(info.nr <= NR_MAX);
    }
    assert_eq!(Kernel::Avx512.info().nr, 32);
    assert_eq!(Kernel::Avx2.info().nr, 16);
    assert_eq!(Kernel::selected().isa(), crate::isa::selected());
}
