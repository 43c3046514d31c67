//! The micro-kernels against a plain tile product: both builds (AVX2 where the CPU has it, and
//! portable) computing a tile, a row of tiles and a gathered tile, a gather past its source
//! refused, and the store's bias and activation.

use super::*;

fn reference(k: usize, bc: &[f32], vc: &[f32]) -> Tile {
    let mut t = [0.0; MR * NR];
    for l in 0..k {
        for i in 0..MR {
            for j in 0..NR {
                t[i * NR + j] += bc[l * MR + i] * vc[l * NR + j];
            }
        }
    }
    t
}

#[test]
fn both_builds_gather_the_tile() {
    // A source of 200 values; 6 pixels at scattered offsets, taps 0, 7 and 40, 5 steps each.
    let src: Vec<f32> = (0..200).map(|x| (x % 11) as f32 - 5.0).collect();
    let pixels = [0, 3, 17, 60, 61, 150];
    let taps = [0, 7, 40];
    let steps = 5;
    let vc: Vec<f32> = (0..taps.len() * steps * NR)
        .map(|x| (x % 7) as f32 * 0.25)
        .collect();
    let mut want = [0.0; MR * NR];
    for (i, &p) in pixels.iter().enumerate() {
        for (t, &tap) in taps.iter().enumerate() {
            for s in 0..steps {
                for j in 0..NR {
                    want[i * NR + j] += src[p + tap + s] * vc[(t * steps + s) * NR + j];
                }
            }
        }
    }
    for (kernel, prefetch_next) in [Kernel::detect(false), Kernel::Portable]
        .into_iter()
        .flat_map(|k| [(k, false), (k, true)])
    {
        let g = Gather {
            src: &src,
            pixels,
            taps: &taps,
            steps,
            prefetch_next,
        };
        let mut out = [f32::NAN; MR * NR];
        kernel.gather_tile(&g, &vc, &mut out, false);
        assert_eq!(out, want, "{kernel:?} {prefetch_next}");
        kernel.gather_tile(&g, &vc, &mut out, true);
        let twice: Vec<f32> = want.iter().map(|w| 2.0 * w).collect();
        assert_eq!(
            out.to_vec(),
            twice,
            "{kernel:?} {prefetch_next} accumulating"
        );
        // Row 0 alone (another summation order; these values sum exactly).
        let mut row = [f32::NAN; NR];
        kernel.gather_first_row(&g, &vc, &mut row, false);
        assert_eq!(row[..], want[..NR], "{kernel:?} {prefetch_next} row");
        kernel.gather_first_row(&g, &vc, &mut row, true);
        assert_eq!(
            row[..],
            twice[..NR],
            "{kernel:?} {prefetch_next} row accumulating"
        );
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
    let mut out = [0.0; MR * NR];
    Kernel::detect(false).gather_tile(&g, &[0.0; 8 * NR], &mut out, false);
}

#[test]
fn both_builds_compute_the_tile() {
    for k in [0, 1, 2, 7, 33] {
        let bc: Vec<f32> = (0..k * MR).map(|x| (x % 7) as f32 - 3.0).collect();
        let vc: Vec<f32> = (0..k * NR).map(|x| (x % 5) as f32 * 0.5).collect();
        let want = reference(k, &bc, &vc);
        for kernel in [Kernel::detect(false), Kernel::Portable] {
            let mut out = [f32::NAN; MR * NR];
            kernel.tile(k, &bc, &vc, &mut out);
            assert_eq!(out, want, "{kernel:?} k={k}");
            // Direct, with a row stride of 20 and accumulation onto ones.
            let rs = 20;
            let mut c = vec![1.0; (MR - 1) * rs + NR];
            // SAFETY: `c` holds MR rows of NR values at stride rs.
            unsafe { kernel.tiles_into(k, &bc, &vc, 1, 0, c.as_mut_ptr(), rs, true, None) };
            for i in 0..MR {
                for j in 0..NR {
                    assert_eq!(c[i * rs + j], want[i * NR + j] + 1.0);
                }
            }
            // SAFETY: as above.
            unsafe { kernel.tiles_into(k, &bc, &vc, 1, 0, c.as_mut_ptr(), rs, false, None) };
            assert_eq!(c[(MR - 1) * rs + NR - 1], want[MR * NR - 1]);
            assert_eq!(c[NR], 1.0, "the gap between rows is left alone");
        }
    }
}

#[test]
fn both_builds_compute_a_row_of_tiles() {
    // Three column panels of k steps, `stride` values apart (a gap of 5 values between
    // them), into three tiles side by side in rows of 60 values.
    let (k, count, rs) = (9, 3, 60);
    let stride = k * NR + 5;
    let bc: Vec<f32> = (0..k * MR).map(|x| (x % 7) as f32 - 3.0).collect();
    let vc: Vec<f32> = (0..(count - 1) * stride + k * NR)
        .map(|x| (x % 5) as f32 * 0.5 - (x / 150) as f32)
        .collect();
    let want: Vec<Tile> = (0..count)
        .map(|t| reference(k, &bc, &vc[t * stride..][..k * NR]))
        .collect();
    for kernel in [Kernel::detect(false), Kernel::Portable] {
        for accumulate in [false, true] {
            let mut c = vec![1.0; MR * rs];
            // SAFETY: `c` holds MR rows of count * NR values at stride rs.
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
                    let (t, u) = (j / NR, j % NR);
                    let expected = match want.get(t) {
                        Some(tile) => tile[i * NR + u] + if accumulate { 1.0 } else { 0.0 },
                        None => 1.0,
                    };
                    assert_eq!(got, expected, "{kernel:?} {accumulate} ({i}, {j})");
                }
            }
        }
    }
}

#[test]
fn both_builds_finish_tiles_as_bias_and_activation_do() {
    use crate::Activation;
    // A NaN in row 2 of the broadcast panel makes tile row 2 NaN: a clamp turns it into the
    // lower bound, no activation keeps it.
    let k = 5;
    let mut bc: Vec<f32> = (0..k * MR).map(|x| (x % 7) as f32 - 3.0).collect();
    bc[2] = f32::NAN;
    let vc: Vec<f32> = (0..k * NR).map(|x| (x % 5) as f32 * 0.5 - 1.0).collect();
    let want = reference(k, &bc, &vc);
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
    for kernel in [Kernel::detect(false), Kernel::Portable] {
        for act in acts {
            for with_bias in [false, true] {
                let finish = Finish {
                    bias: with_bias.then_some(&bias[..]),
                    clamp: act.as_clamp().expect("a clamp"),
                };
                let mut c = vec![f32::NAN; MR * NR];
                // SAFETY: `c` holds MR rows of NR values.
                unsafe {
                    let p = c.as_mut_ptr();
                    kernel.tiles_into(k, &bc, &vc, 1, 0, p, NR, false, Some(finish))
                };
                for (i, (got, row)) in c.chunks(NR).zip(want.chunks(NR)).enumerate() {
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
