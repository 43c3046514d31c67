//! The kernels of `ops.rs` against numpy's rules and per-element loops over multi-indices.

use super::ops::*;
use crate::op::{BinaryOp, ReduceOp};
use proptest::prelude::*;

/// The multi-index of flat offset `i` in `shape`.
fn index_of(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

fn offset_of(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |o, (&i, &d)| o * d + i)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Both reduction paths (trailing axes in runs, any axes by strides) against a
    /// per-element loop over multi-indices, within 1e-5 relative.
    #[test]
    fn reductions_equal_a_loop_over_indices(
        shape in proptest::collection::vec(1usize..5, 1..5),
        mask in 0u32..32, which in 0usize..5, seed in 0u64..1000,
    ) {
        let rank = shape.len();
        let mut axes: Vec<usize> = (0..rank).filter(|d| mask & (1 << d) != 0).collect();
        if axes.is_empty() {
            axes.push(rank - 1);
        }
        let op = [ReduceOp::Mean, ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::L2][which];
        let n: usize = shape.iter().product();
        let x: Vec<f32> = (0..n)
            .map(|i| (((i as u64 + seed) * 2654435761 % 1000) as f32) / 500.0 - 1.0)
            .collect();
        let got = reduce(op, &shape, &axes, &x);
        let out_shape: Vec<usize> = (0..rank)
            .map(|d| if axes.contains(&d) { 1 } else { shape[d] })
            .collect();
        let mut groups: Vec<Vec<f32>> = vec![Vec::new(); got.len()];
        for (i, &v) in x.iter().enumerate() {
            let mut idx = index_of(i, &shape);
            axes.iter().for_each(|&a| idx[a] = 0);
            groups[offset_of(&idx, &out_shape)].push(v);
        }
        for (g, vals) in got.iter().zip(&groups) {
            let want = match op {
                ReduceOp::Mean => vals.iter().map(|&v| v as f64).sum::<f64>() / vals.len() as f64,
                ReduceOp::Sum => vals.iter().map(|&v| v as f64).sum::<f64>(),
                ReduceOp::Max => vals.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64)),
                ReduceOp::Min => vals.iter().fold(f64::INFINITY, |m, &v| m.min(v as f64)),
                ReduceOp::L2 => vals.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt(),
            };
            prop_assert!((*g as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()), "{} vs {}", g, want);
        }
    }

    /// Broadcasting (allocating, and in place into the full-shape operand) against indexing
    /// each operand by its broadcast multi-index: exact, for every op and operand order.
    #[test]
    fn broadcasts_equal_a_loop_over_indices(
        out in proptest::collection::vec(1usize..5, 1..5),
        mask in 0u32..64, prefix in 0usize..3, which in 0usize..5, seed in 0u64..1000,
    ) {
        // `b`: `out` with some dims set to 1 and some leading dims dropped.
        let rank = out.len();
        let drop = prefix.min(rank - 1);
        let b_shape: Vec<usize> = (drop..rank)
            .map(|d| if mask & (1 << d) != 0 { 1 } else { out[d] })
            .collect();
        let op = [BinaryOp::Add, BinaryOp::Mul, BinaryOp::Sub, BinaryOp::Div, BinaryOp::Greater][which];
        let n: usize = out.iter().product();
        let value = |i: usize, k: u64| (((i as u64 + seed + k) * 2654435761 % 1000) as f32) / 250.0 - 1.5037;
        let a: Vec<f32> = (0..n).map(|i| value(i, 0)).collect();
        let b: Vec<f32> = (0..b_shape.iter().product::<usize>()).map(|i| value(i, 7)).collect();
        let b_at = |o: usize| {
            let idx = index_of(o, &out);
            let bi: Vec<usize> = idx[drop..]
                .iter()
                .zip(&b_shape)
                .map(|(&i, &d)| if d == 1 { 0 } else { i })
                .collect();
            b[offset_of(&bi, &b_shape)]
        };
        let want: Vec<f32> = (0..n).map(|o| op.apply(a[o], b_at(o))).collect();
        let got = binary(op, &out, &a, &b_shape, &b, &out);
        prop_assert_eq!(&got, &want);
        let mut acc = a.clone();
        binary_broadcast_in_place(op, &mut acc, &out, &b, &b_shape, true);
        prop_assert_eq!(&acc, &want);
        // b op a, with `a` as the accumulator.
        let flipped: Vec<f32> = (0..n).map(|o| op.apply(b_at(o), a[o])).collect();
        let got = binary(op, &b_shape, &b, &out, &a, &out);
        prop_assert_eq!(&got, &flipped);
        let mut acc = a.clone();
        binary_broadcast_in_place(op, &mut acc, &out, &b, &b_shape, false);
        prop_assert_eq!(&acc, &flipped);
    }

    /// Batched matmul (one shared `b` folded into the rows, or per batch item, on rayon
    /// tasks) against a triple loop over broadcast multi-indices, within 1e-5 relative.
    #[test]
    fn matmuls_equal_a_loop_over_indices(
        batch in proptest::collection::vec(1usize..4, 0..3), shared_b: bool, a_bcast: bool,
        m in 1usize..40, k in 0usize..9, n in 1usize..7, seed in 0u64..1000,
    ) {
        let count: usize = batch.iter().product();
        let a_batch: Vec<usize> = if a_bcast { vec![1; batch.len()] } else { batch.clone() };
        let b_batch: Vec<usize> = if shared_b { Vec::new() } else { batch.clone() };
        let a_shape: Vec<usize> = a_batch.iter().copied().chain([m, k]).collect();
        let b_shape: Vec<usize> = b_batch.iter().copied().chain([k, n]).collect();
        let value = |i: usize, s: u64| (((i as u64 + seed * s) * 2654435761 % 1000) as f32) / 500.0 - 1.0;
        let a: Vec<f32> = (0..a_shape.iter().product::<usize>()).map(|i| value(i, 1)).collect();
        let b: Vec<f32> = (0..b_shape.iter().product::<usize>()).map(|i| value(i, 3)).collect();
        let got = matmul(&a_shape, &a, &b_shape, &b, &batch);
        prop_assert_eq!(got.len(), count * m * n);
        for item in 0..count {
            let idx = index_of(item, &batch);
            let at = |shape_batch: &[usize]| {
                let bi: Vec<usize> = idx.iter().zip(shape_batch).map(|(&i, &d)| if d == 1 { 0 } else { i }).collect();
                offset_of(&bi, shape_batch)
            };
            let (ia, ib) = (at(&a_batch), if shared_b { 0 } else { at(&b_batch) });
            for r in 0..m {
                for c in 0..n {
                    let want: f64 = (0..k)
                        .map(|t| a[(ia * m + r) * k + t] as f64 * b[(ib * k + t) * n + c] as f64)
                        .sum();
                    let g = got[(item * m + r) * n + c] as f64;
                    prop_assert!((g - want).abs() <= 1e-5 * (1.0 + want.abs()), "{} vs {}", g, want);
                }
            }
        }
    }

    /// A transpose against indexing by the permuted multi-index.
    #[test]
    fn transposes_equal_a_loop_over_indices(
        shape in proptest::collection::vec(1usize..5, 1..5), seed in 0u64..1000,
    ) {
        let rank = shape.len();
        let mut perm: Vec<usize> = (0..rank).collect();
        let mut s = seed;
        for i in (1..rank).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            perm.swap(i, (s >> 33) as usize % (i + 1));
        }
        let n: usize = shape.iter().product();
        let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let got = transpose(&shape, &perm, &x);
        let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        for (o, &g) in got.iter().enumerate() {
            let oi = index_of(o, &out_shape);
            let mut ii = vec![0; rank];
            for (d, &p) in perm.iter().enumerate() {
                ii[p] = oi[d];
            }
            prop_assert_eq!(g, x[offset_of(&ii, &shape)]);
        }
    }
}

#[test]
fn broadcasting_matches_numpy_rules() {
    // [2, 3] + [3]
    let r = binary(
        BinaryOp::Add,
        &[2, 3],
        &[1., 2., 3., 4., 5., 6.],
        &[3],
        &[10., 20., 30.],
        &[2, 3],
    );
    assert_eq!(r, vec![11., 22., 33., 14., 25., 36.]);
    // [2, 1] * [1, 3]
    let r = binary(
        BinaryOp::Mul,
        &[2, 1],
        &[1., 2.],
        &[1, 3],
        &[1., 2., 3.],
        &[2, 3],
    );
    assert_eq!(r, vec![1., 2., 3., 2., 4., 6.]);
    // [3, 1] + [] scalar into [3, 1]
    let r = binary(BinaryOp::Add, &[3, 1], &[1., 2., 3.], &[], &[1.], &[3, 1]);
    assert_eq!(r, vec![2., 3., 4.]);
}

#[test]
fn pad_pads_and_crops() {
    // [2, 2] padded by 1 before on axis 1, cropped by 1 at the end of axis 0.
    let (s, v) = pad(&[2, 2], &[1., 2., 3., 4.], &[0, 1], &[-1, 0], 9.);
    assert_eq!(s, vec![1, 3]);
    assert_eq!(v, vec![9., 1., 2.]);
}

#[test]
fn transposed_gemm_uses_strides() {
    // a^T with a = [[1, 2], [3, 4]] stored [k=2, m=2]; b = identity.
    let mut out = vec![0.0; 4];
    sgemm(
        2,
        2,
        2,
        1.0,
        &[1., 2., 3., 4.],
        true,
        &[1., 0., 0., 1.],
        false,
        0.0,
        &mut out,
    );
    assert_eq!(out, vec![1., 3., 2., 4.]);
}

/// Above `PAR_MIN` values the element-wise kernels split the work over rayon tasks: the
/// results must be those of the one-task code, for every broadcast pattern.
#[test]
fn element_wise_work_on_many_tasks_equals_one_task() {
    let out = [2usize, 40, 33, 17];
    let n: usize = out.iter().product();
    assert!(n > PAR_MIN);
    let a: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32) / 50.0 - 1.0)
        .collect();
    for b_shape in [vec![40, 1, 1], vec![1, 33, 17], vec![17], vec![2, 1, 33, 1]] {
        let len: usize = b_shape.iter().product();
        let b: Vec<f32> = (0..len)
            .map(|i| ((i * 13 % 29) as f32) / 7.0 - 2.0)
            .collect();
        for op in [BinaryOp::Mul, BinaryOp::Add, BinaryOp::Sub] {
            let want = binary(op, &out, &a, &b_shape, &b, &out);
            let mut got = a.clone();
            binary_broadcast_in_place(op, &mut got, &out, &b, &b_shape, true);
            assert_eq!(got, want, "{op:?} {b_shape:?}");
            let want = binary(op, &b_shape, &b, &out, &a, &out);
            let mut got = a.clone();
            binary_broadcast_in_place(op, &mut got, &out, &b, &b_shape, false);
            assert_eq!(got, want, "{op:?} {b_shape:?} flipped");
        }
    }
    let other: Vec<f32> = a.iter().map(|v| v * 0.5 + 0.25).collect();
    let mut got = a.clone();
    binary_in_place(BinaryOp::Sub, &mut got, &other);
    let want: Vec<f32> = a.iter().zip(&other).map(|(x, y)| x - y).collect();
    assert_eq!(got, want);
    let mut blocks = a.clone();
    par_blocks(&mut blocks, |b| {
        b.iter_mut().for_each(|v| *v = v.mul_add(2.0, 1.0))
    });
    let want: Vec<f32> = a.iter().map(|v| v.mul_add(2.0, 1.0)).collect();
    assert_eq!(blocks, want);
}
