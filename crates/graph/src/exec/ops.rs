//! The kernels the `cnn-conv` crate has no counterpart for, written over flat f32 slices:
//! numpy-broadcast element-wise ops, batched matrix products (on `matrixmultiply`'s sgemm, the
//! same GEMM the convolutions use), pooling with every ONNX attribute (dilations, ceil mode,
//! `count_include_pad`), constant padding (negative pads crop), concatenation and the channel
//! sum. Callers check the lengths; nothing here allocates more than its result.

use crate::ir::Shape;
use crate::op::{truth, BinaryOp, PoolGeometry, ReduceOp};

pub use super::norm::{group_norm, instance_norm, layer_norm, lrn};

/// Row-major strides of `shape`, aligned right to `rank` dims, 0 on broadcast dims.
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let rank = out.len();
    let mut strides = vec![0; rank];
    let mut step = 1;
    for i in (0..shape.len()).rev() {
        let o = i + rank - shape.len();
        strides[o] = if shape[i] == 1 && out[o] != 1 {
            0
        } else {
            step
        };
        step *= shape[i];
    }
    strides
}

/// Walks every index of `out` (all dims but the last), calling `f(offset_a, offset_b,
/// offset_out)` for the start of each innermost row.
fn for_rows(out: &[usize], sa: &[usize], sb: &[usize], mut f: impl FnMut(usize, usize, usize)) {
    let rank = out.len();
    if rank == 0 {
        f(0, 0, 0);
        return;
    }
    let outer: usize = out[..rank - 1].iter().product();
    let inner = out[rank - 1];
    let mut idx = vec![0usize; rank - 1];
    let (mut oa, mut ob) = (0usize, 0usize);
    for row in 0..outer {
        f(oa, ob, row * inner);
        // Advance the odometer over the leading dims.
        for d in (0..rank - 1).rev() {
            idx[d] += 1;
            oa += sa[d];
            ob += sb[d];
            if idx[d] < out[d] {
                break;
            }
            oa -= sa[d] * out[d];
            ob -= sb[d] * out[d];
            idx[d] = 0;
        }
    }
}

/// `acc[i] = op(acc[i], other[i])` for two tensors of the same shape, in place (both ops are
/// commutative, so `acc` may be either operand). `other` must be as long as `acc`.
pub fn binary_in_place(op: BinaryOp, acc: &mut [f32], other: &[f32]) {
    debug_assert_eq!(acc.len(), other.len());
    let run = |acc: &mut [f32], other: &[f32]| match op {
        BinaryOp::Add => acc.iter_mut().zip(other).for_each(|(x, &y)| *x += y),
        BinaryOp::Mul => acc.iter_mut().zip(other).for_each(|(x, &y)| *x *= y),
        _ => acc
            .iter_mut()
            .zip(other)
            .for_each(|(x, &y)| *x = op.apply(*x, y)),
    };
    if acc.len() < PAR_MIN {
        return run(acc, other);
    }
    use rayon::prelude::*;
    acc.par_chunks_mut(PAR_BLOCK)
        .zip(other.par_chunks(PAR_BLOCK))
        .for_each(|(a, o)| run(a, o));
}

/// Element-wise work below this many values runs on the calling thread.
pub const PAR_MIN: usize = 1 << 15;
/// Values per rayon task of element-wise work.
const PAR_BLOCK: usize = 1 << 14;

/// `f` over `data` in blocks on rayon tasks (on the calling thread when it is small).
pub fn par_blocks(data: &mut [f32], f: impl Fn(&mut [f32]) + Sync + Send) {
    if data.len() < PAR_MIN {
        return f(data);
    }
    use rayon::prelude::*;
    data.par_chunks_mut(PAR_BLOCK).for_each(f);
}

/// Merges neighbouring dimensions of `out` that both operands walk alike (contiguously, or
/// both broadcast), so the innermost rows are as long as they can be: `[N, C, H, W]` against
/// `[N, C, 1, 1]` walks `N*C` rows of `H*W`.
fn collapse(out: &[usize], sa: &[usize], sb: &[usize]) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let (mut o, mut a, mut b) = (vec![], vec![], vec![]);
    for d in 0..out.len() {
        if let (Some(&la), Some(&lb)) = (a.last(), b.last()) {
            let follows = |outer: usize, inner: usize| outer == inner * out[d];
            if follows(la, sa[d]) && follows(lb, sb[d]) {
                let last = o.len() - 1;
                o[last] *= out[d];
                a[last] = sa[d];
                b[last] = sb[d];
                continue;
            }
        }
        o.push(out[d]);
        a.push(sa[d]);
        b.push(sb[d]);
    }
    (o, a, b)
}

/// `acc = acc op other` (`acc_first`) or `other op acc`, in place, `acc` having the output's
/// shape `out` and `other` (shape `other_shape`) broadcast to it (a squeeze-and-excite
/// channel scale, a per-channel bias).
pub fn binary_broadcast_in_place(
    op: BinaryOp,
    acc: &mut [f32],
    out: &[usize],
    other: &[f32],
    other_shape: &[usize],
    acc_first: bool,
) {
    let sa = broadcast_strides(out, out);
    let sb = broadcast_strides(other_shape, out);
    let (out, _, sb) = collapse(out, &sa, &sb);
    let inner = out.last().copied().unwrap_or(1).max(1);
    let ib = sb.last().copied().unwrap_or(0);
    let f = |x: f32, y: f32| {
        if acc_first {
            op.apply(x, y)
        } else {
            op.apply(y, x)
        }
    };
    // Row `r` (of `inner` values) reads `other` from the offset of its multi-index.
    let rank = out.len();
    let row_offset = |mut r: usize| {
        let mut ob = 0;
        for d in (0..rank.saturating_sub(1)).rev() {
            ob += (r % out[d]) * sb[d];
            r /= out[d];
        }
        ob
    };
    let rows = |block: &mut [f32], first: usize| {
        for (i, row) in block.chunks_exact_mut(inner).enumerate() {
            let ob = row_offset(first + i);
            match (ib, op, acc_first) {
                (0, BinaryOp::Mul, _) => row.iter_mut().for_each(|x| *x *= other[ob]),
                (0, BinaryOp::Add, _) => row.iter_mut().for_each(|x| *x += other[ob]),
                (0, ..) => row.iter_mut().for_each(|x| *x = f(*x, other[ob])),
                _ => row
                    .iter_mut()
                    .zip(&other[ob..ob + inner])
                    .for_each(|(x, &y)| *x = f(*x, y)),
            }
        }
    };
    if acc.len() < PAR_MIN {
        return rows(acc, 0);
    }
    use rayon::prelude::*;
    let per = PAR_BLOCK.div_ceil(inner).max(1);
    acc.par_chunks_mut(per * inner)
        .enumerate()
        .for_each(|(t, block)| rows(block, t * per));
}

/// `a op b` with numpy broadcasting into a tensor of shape `out`.
pub fn binary(
    op: BinaryOp,
    a_shape: &[usize],
    a: &[f32],
    b_shape: &[usize],
    b: &[f32],
    out: &[usize],
) -> Vec<f32> {
    let f: fn(f32, f32) -> f32 = match op {
        BinaryOp::Add => |x, y| x + y,
        BinaryOp::Mul => |x, y| x * y,
        BinaryOp::Sub => |x, y| x - y,
        BinaryOp::Div => |x, y| x / y,
        BinaryOp::Pow => f32::powf,
        BinaryOp::PRelu => |x, s| if x < 0.0 { x * s } else { x },
        BinaryOp::Equal => |x, y| truth(x == y),
        BinaryOp::Less => |x, y| truth(x < y),
        BinaryOp::Greater => |x, y| truth(x > y),
    };
    let len: usize = out.iter().product();
    if a_shape == out && b_shape == out {
        return a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect();
    }
    if a_shape == out && b.len() == 1 {
        return a.iter().map(|&x| f(x, b[0])).collect();
    }
    let mut result = vec![0.0f32; len];
    let (out, sa, sb) = collapse(
        out,
        &broadcast_strides(a_shape, out),
        &broadcast_strides(b_shape, out),
    );
    let out = out.as_slice();
    let inner = out.last().copied().unwrap_or(1);
    let (ia, ib) = (
        sa.last().copied().unwrap_or(0),
        sb.last().copied().unwrap_or(0),
    );
    for_rows(out, &sa, &sb, |oa, ob, oo| {
        let row = &mut result[oo..oo + inner];
        match (ia, ib) {
            (1, 1) => row
                .iter_mut()
                .zip(&a[oa..oa + inner])
                .zip(&b[ob..ob + inner])
                .for_each(|((r, &x), &y)| *r = f(x, y)),
            (1, 0) => row
                .iter_mut()
                .zip(&a[oa..oa + inner])
                .for_each(|(r, &x)| *r = f(x, b[ob])),
            (0, 1) => row
                .iter_mut()
                .zip(&b[ob..ob + inner])
                .for_each(|(r, &y)| *r = f(a[oa], y)),
            _ => row
                .iter_mut()
                .enumerate()
                .for_each(|(j, r)| *r = f(a[oa + j * ia], b[ob + j * ib])),
        }
    });
    result
}

/// `condition ? x : y` per element, each operand (shape, values) broadcast to `out`.
pub fn select(
    condition: (&[usize], &[f32]),
    x: (&[usize], &[f32]),
    y: (&[usize], &[f32]),
    out: &[usize],
) -> Vec<f32> {
    let c = broadcast_to(condition.0, condition.1, out, 1.0);
    let mut picked = broadcast_to(x.0, x.1, out, 1.0);
    let other = broadcast_to(y.0, y.1, out, 1.0);
    for ((v, &c), &o) in picked.iter_mut().zip(&c).zip(&other) {
        if c == 0.0 {
            *v = o;
        }
    }
    picked
}

/// Broadcasts `c` (shape `c_shape`) to `out`, scaled by `scale`.
pub fn broadcast_to(c_shape: &[usize], c: &[f32], out: &[usize], scale: f32) -> Vec<f32> {
    let ones = vec![1usize; out.len()];
    let one = [scale];
    binary(BinaryOp::Mul, c_shape, c, &ones, &one, out)
}

/// One row-major matrix product `out[m, n] = alpha * op(a) * op(b) + beta * out`, where
/// `op(a)` is `a[m, k]` (or `a[k, m]` transposed) and `op(b)` is `b[k, n]` (or `b[n, k]`).
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    trans_a: bool,
    b: &[f32],
    trans_b: bool,
    beta: f32,
    out: &mut [f32],
) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && out.len() >= m * n,
        "sgemm operand lengths"
    );
    let (rsa, csa) = if trans_a { (1, m) } else { (k, 1) };
    let (rsb, csb) = if trans_b { (1, k) } else { (n, 1) };
    // SAFETY: the assertion above guarantees every index the strides reach is inside its slice.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// numpy's `matmul` of `a[..batch, m, k]` and `b[..batch, k, n]` (batch dimensions broadcast
/// to `batch`). When `b` is the same matrix for every batch item and `a` is not broadcast (a
/// Linear layer on `[N, H, W, C]`), the batch is folded into `m`: one product of
/// `count * m` rows. The rows (or the batch items) are split over rayon tasks.
pub fn matmul(
    a_shape: &[usize],
    a: &[f32],
    b_shape: &[usize],
    b: &[f32],
    batch: &[usize],
) -> Vec<f32> {
    use rayon::prelude::*;
    let (m, k) = (a_shape[a_shape.len() - 2], a_shape[a_shape.len() - 1]);
    let n = b_shape[b_shape.len() - 1];
    let count: usize = batch.iter().product();
    let mut out = vec![0.0f32; count * m * n];
    if out.is_empty() || k == 0 {
        return out; // an empty sum is 0
    }
    let sa = broadcast_strides(&a_shape[..a_shape.len() - 2], batch);
    let sb = broadcast_strides(&b_shape[..b_shape.len() - 2], batch);
    let a_whole = a.len() == count * m * k;
    if sb.iter().all(|&s| s == 0) && a_whole {
        // One matrix b: `count * m` rows of `a`, in blocks of rows per task.
        let rows = count * m;
        let per = rows
            .div_ceil(rayon::current_num_threads().max(1) * 4)
            .max(16);
        out.par_chunks_mut(per * n)
            .zip(a.par_chunks(per * k))
            .for_each(|(o, x)| sgemm(o.len() / n, k, n, 1.0, x, false, b, false, 0.0, o));
        return out;
    }
    out.par_chunks_mut(m * n).enumerate().for_each(|(i, o)| {
        // The multi-index of batch item `i`, and its operands' offsets.
        let (mut oa, mut ob, mut rest) = (0, 0, i);
        for d in (0..batch.len()).rev() {
            let idx = rest % batch[d];
            rest /= batch[d];
            oa += idx * sa[d];
            ob += idx * sb[d];
        }
        let (oa, ob) = (oa * m * k, ob * k * n);
        sgemm(
            m,
            k,
            n,
            1.0,
            &a[oa..oa + m * k],
            false,
            &b[ob..ob + k * n],
            false,
            0.0,
            o,
        );
    });
    out
}

/// Real cells of one window axis: `(first tap, last tap + 1)` indices `t` with
/// `0 <= start + t*dilation < size`, and the taps inside the declared padding.
fn taps(
    start: isize,
    kernel: usize,
    dilation: usize,
    size: usize,
    pad_end: usize,
) -> (usize, usize, usize) {
    let (mut lo, mut hi, mut padded) = (kernel, 0, 0);
    for t in 0..kernel {
        let p = start + (t * dilation) as isize;
        if p >= 0 && (p as usize) < size {
            lo = lo.min(t);
            hi = hi.max(t + 1);
        }
        if p < (size + pad_end) as isize {
            padded += 1;
        }
    }
    (lo, hi.max(lo), padded)
}

/// Max or average pooling over `planes` planes of `in_hw`, every ONNX attribute honoured:
/// padded cells never win a max; an average divides by the real cells, or with
/// `count_include_pad` by the cells inside the declared padding (not the ceil-mode overhang).
pub fn pool(g: &PoolGeometry, input: &[f32]) -> Vec<f32> {
    let [ih, iw] = g.in_hw;
    let [oh, ow] = g.out_hw;
    let mut out = vec![0.0f32; g.planes * oh * ow];
    // Per output row (axis 0) and column (axis 1): the window's real taps.
    let axis_taps = |axis: usize, outs: usize, size: usize| -> Vec<_> {
        (0..outs)
            .map(|o| {
                let start = o as isize * g.stride[axis] as isize - g.pad_begin[axis] as isize;
                taps(
                    start,
                    g.kernel[axis],
                    g.dilation[axis],
                    size,
                    g.pad_end[axis],
                )
            })
            .collect()
    };
    let rows = axis_taps(0, oh, ih);
    let cols = axis_taps(1, ow, iw);
    for (plane, dst) in input
        .chunks_exact(ih * iw)
        .zip(out.chunks_exact_mut(oh * ow))
    {
        for y in 0..oh {
            let (r0, r1, rp) = rows[y];
            let y0 = y as isize * g.stride[0] as isize - g.pad_begin[0] as isize;
            for x in 0..ow {
                let (c0, c1, cp) = cols[x];
                let x0 = x as isize * g.stride[1] as isize - g.pad_begin[1] as isize;
                let mut acc = if g.max { f32::NEG_INFINITY } else { 0.0 };
                for r in r0..r1 {
                    let row = (y0 + (r * g.dilation[0]) as isize) as usize * iw;
                    for c in c0..c1 {
                        let v = plane[row + (x0 + (c * g.dilation[1]) as isize) as usize];
                        acc = if g.max { acc.max(v) } else { acc + v };
                    }
                }
                if !g.max {
                    let count = if g.count_include_pad {
                        rp * cp
                    } else {
                        (r1 - r0) * (c1 - c0)
                    };
                    acc = if count == 0 { 0.0 } else { acc / count as f32 };
                }
                dst[y * ow + x] = acc;
            }
        }
    }
    out
}

/// Constant padding of `x` (shape `shape`) by `begin`/`end` per axis; negative values crop.
pub fn pad(
    shape: &[usize],
    x: &[f32],
    begin: &[i64],
    end: &[i64],
    value: f32,
) -> (Shape, Vec<f32>) {
    let out_shape: Shape = (0..shape.len())
        .map(|d| (shape[d] as i64 + begin[d] + end[d]) as usize)
        .collect();
    let rank = shape.len();
    if rank == 0 {
        // A scalar has no axis to pad.
        return (out_shape, x.to_vec());
    }
    let len: usize = out_shape.iter().product();
    let mut out = vec![value; len];
    if len == 0 || x.is_empty() {
        return (out_shape, out);
    }
    let in_strides: Vec<usize> = (0..rank).map(|d| shape[d + 1..].iter().product()).collect();
    let out_strides: Vec<usize> = (0..rank)
        .map(|d| out_shape[d + 1..].iter().product())
        .collect();
    // Copy every innermost row of the input that survives, clipped to the output.
    let last = rank - 1;
    let src_lo = (-begin[last]).max(0) as usize;
    let src_hi = (shape[last] as i64)
        .min(out_shape[last] as i64 - begin[last])
        .max(0) as usize;
    if src_hi <= src_lo {
        return (out_shape, out);
    }
    let dst_lo = (src_lo as i64 + begin[last]) as usize;
    let outer: usize = shape[..last].iter().product();
    let mut idx = vec![0usize; last];
    'rows: for _ in 0..outer {
        let mut src = 0;
        let mut dst = dst_lo;
        for d in 0..last {
            let o = idx[d] as i64 + begin[d];
            if o < 0 || o >= out_shape[d] as i64 {
                // This row is cropped away.
                advance(&mut idx, &shape[..last]);
                continue 'rows;
            }
            src += idx[d] * in_strides[d];
            dst += o as usize * out_strides[d];
        }
        out[dst..dst + (src_hi - src_lo)].copy_from_slice(&x[src + src_lo..src + src_hi]);
        advance(&mut idx, &shape[..last]);
    }
    (out_shape, out)
}

fn advance(idx: &mut [usize], dims: &[usize]) {
    for d in (0..idx.len()).rev() {
        idx[d] += 1;
        if idx[d] < dims[d] {
            return;
        }
        idx[d] = 0;
    }
}

/// Concatenation along `axis` of tensors with equal shapes elsewhere.
pub fn concat<T: Copy>(parts: &[(&[usize], &[T])], axis: usize, out_len: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(out_len);
    let outer: usize = parts
        .first()
        .map(|(s, _)| s[..axis].iter().product())
        .unwrap_or(0);
    let blocks: Vec<usize> = parts
        .iter()
        .map(|(s, _)| s[axis..].iter().product())
        .collect();
    for o in 0..outer {
        for ((_, data), &block) in parts.iter().zip(&blocks) {
            out.extend_from_slice(&data[o * block..(o + 1) * block]);
        }
    }
    out
}

/// Gathers along `axis` of `data` (shape `shape`) the entries `indices` (already within the
/// axis): the output is `shape[..axis] ++ indices' shape ++ shape[axis + 1..]`, flat.
pub fn gather<T: Copy>(shape: &[usize], data: &[T], axis: usize, indices: &[usize]) -> Vec<T> {
    let outer: usize = shape[..axis].iter().product();
    let axis_len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = Vec::with_capacity(outer * indices.len() * inner);
    for o in 0..outer {
        for &i in indices {
            let at = (o * axis_len + i) * inner;
            out.extend_from_slice(&data[at..at + inner]);
        }
    }
    out
}

/// Row-major strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// `op` over `axes` of `x` (shape `in_shape`); the result in the order of the kept axes.
/// Sums accumulate in f64.
pub fn reduce(op: ReduceOp, in_shape: &[usize], axes: &[usize], x: &[f32]) -> Vec<f32> {
    let out_shape: Vec<usize> = (0..in_shape.len())
        .map(|d| if axes.contains(&d) { 1 } else { in_shape[d] })
        .collect();
    let out_len: usize = out_shape.iter().product();
    let count: usize = axes.iter().map(|&a| in_shape[a]).product();
    let init = match op {
        ReduceOp::Max => f64::NEG_INFINITY,
        ReduceOp::Min => f64::INFINITY,
        _ => 0.0,
    };
    let mut acc = vec![init; out_len];
    let add = |a: &mut f64, v: f32| match op {
        ReduceOp::Mean | ReduceOp::Sum => *a += v as f64,
        ReduceOp::L2 => *a += v as f64 * v as f64,
        // NaN propagates, as in numpy and onnxruntime.
        ReduceOp::Max => {
            *a = if v.is_nan() || (v as f64) > *a {
                v as f64
            } else {
                *a
            }
        }
        ReduceOp::Min => {
            *a = if v.is_nan() || (v as f64) < *a {
                v as f64
            } else {
                *a
            }
        }
    };
    let trailing = axes
        .iter()
        .enumerate()
        .all(|(k, &a)| a == in_shape.len() - axes.len() + k);
    if trailing {
        // The reduced axes are the last ones: each output reduces one contiguous run.
        for (o, run) in acc.iter_mut().zip(x.chunks_exact(count.max(1))) {
            run.iter().for_each(|&v| add(o, v));
        }
    } else {
        let out_strides: Vec<usize> = strides(&out_shape)
            .into_iter()
            .enumerate()
            .map(|(d, s)| if axes.contains(&d) { 0 } else { s })
            .collect();
        let mut idx = vec![0usize; in_shape.len()];
        let mut o = 0usize;
        for &v in x {
            add(&mut acc[o], v);
            for d in (0..in_shape.len()).rev() {
                idx[d] += 1;
                o += out_strides[d];
                if idx[d] < in_shape[d] {
                    break;
                }
                o -= out_strides[d] * in_shape[d];
                idx[d] = 0;
            }
        }
    }
    acc.into_iter()
        .map(|a| match op {
            ReduceOp::Mean => (a / count as f64) as f32,
            ReduceOp::L2 => a.sqrt() as f32,
            _ => a as f32,
        })
        .collect()
}

/// The strided window of `x` (shape `in_shape`) of shape `out_shape`: along axis `d`, from
/// `starts[d]` every `steps[d]`-th element (the caller clamped them to the input).
pub fn slice<T: Copy>(
    in_shape: &[usize],
    starts: &[i64],
    steps: &[i64],
    out_shape: &[usize],
    x: &[T],
) -> Vec<T> {
    let st = strides(in_shape);
    let base: i64 = starts.iter().zip(&st).map(|(&s, &t)| s * t as i64).sum();
    let step: Vec<i64> = steps.iter().zip(&st).map(|(&s, &t)| s * t as i64).collect();
    let len: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(len);
    let mut idx = vec![0usize; out_shape.len()];
    let mut at = base;
    for _ in 0..len {
        out.push(x[at as usize]);
        for d in (0..out_shape.len()).rev() {
            idx[d] += 1;
            at += step[d];
            if idx[d] < out_shape[d] {
                break;
            }
            at -= step[d] * out_shape[d] as i64;
            idx[d] = 0;
        }
    }
    out
}

/// `x` (shape `in_shape`) resampled along each axis that has taps (see `Op::Resize`), one
/// axis after another.
pub fn resize(
    in_shape: &[usize],
    taps: &[Vec<(usize, usize, f32)>],
    x: &[f32],
) -> Option<Vec<f32>> {
    let mut shape = in_shape.to_vec();
    // The input is read in place by the first pass; later passes read the one before.
    let mut cur: Option<Vec<f32>> = None;
    // Shrinking axes first keeps every intermediate no larger than it must be.
    let mut order: Vec<usize> = (0..taps.len()).filter(|&d| !taps[d].is_empty()).collect();
    order.sort_by(|&a, &b| {
        let ra = taps[a].len() as f64 / in_shape[a].max(1) as f64;
        let rb = taps[b].len() as f64 / in_shape[b].max(1) as f64;
        ra.total_cmp(&rb)
    });
    for d in order {
        let t = &taps[d];
        let outer: usize = shape[..d].iter().product();
        let inner: usize = shape[d + 1..].iter().product();
        let len = shape[d];
        let mut next = Vec::new();
        next.try_reserve_exact(outer.checked_mul(t.len())?.checked_mul(inner)?)
            .ok()?;
        let src = cur.as_deref().unwrap_or(x);
        for o in 0..outer {
            let block = &src[o * len * inner..(o + 1) * len * inner];
            for &(i0, i1, w) in t {
                let (a, b) = (
                    &block[i0 * inner..(i0 + 1) * inner],
                    &block[i1 * inner..(i1 + 1) * inner],
                );
                if w == 0.0 {
                    next.extend_from_slice(a);
                } else {
                    next.extend(a.iter().zip(b).map(|(&p, &q)| p + w * (q - p)));
                }
            }
        }
        shape[d] = t.len();
        cur = Some(next);
    }
    Some(cur.unwrap_or_else(|| x.to_vec()))
}

/// `x` (shape `in_shape`) repeated along each axis to `out_shape` (each a multiple).
pub fn tile(in_shape: &[usize], out_shape: &[usize], x: &[f32]) -> Vec<f32> {
    let st = strides(in_shape);
    let len: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(len);
    let mut idx = vec![0usize; out_shape.len()];
    for _ in 0..len {
        let at: usize = idx
            .iter()
            .zip(in_shape)
            .zip(&st)
            .map(|((&i, &d), &s)| (i % d) * s)
            .sum();
        out.push(x[at]);
        advance(&mut idx, out_shape);
    }
    out
}

/// `x` (shape `in_shape`) with its dimensions permuted: output dimension `i` is input
/// dimension `perm[i]`.
pub fn transpose<T: Copy>(in_shape: &[usize], perm: &[usize], x: &[T]) -> Vec<T> {
    let in_strides = strides(in_shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| in_shape[p]).collect();
    // Walking the output in order, the input offset moves by the permuted strides.
    let step: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let mut out = Vec::with_capacity(x.len());
    let mut idx = vec![0usize; out_shape.len()];
    let mut at = 0usize;
    for _ in 0..x.len() {
        out.push(x[at]);
        for d in (0..out_shape.len()).rev() {
            idx[d] += 1;
            at += step[d];
            if idx[d] < out_shape[d] {
                break;
            }
            at -= step[d] * out_shape[d];
            idx[d] = 0;
        }
    }
    out
}

/// Sums the channels of each image: `[N, C, S]` -> `[N, 1, S]`.
pub fn channel_sum(x: &[f32], channels: usize, spatial: usize, out: &mut [f32]) {
    let per_image = channels * spatial;
    for (img, o) in x.chunks_exact(per_image).zip(out.chunks_exact_mut(spatial)) {
        o.fill(0.0);
        for plane in img.chunks_exact(spatial) {
            for (a, b) in o.iter_mut().zip(plane) {
                *a += *b;
            }
        }
    }
}
