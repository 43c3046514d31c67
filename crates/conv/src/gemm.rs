//! A bounds-checked wrapper around `matrixmultiply::sgemm`, the one GEMM every fast kernel of
//! this crate goes through, plus the bias-and-activation epilogue that runs on each block right
//! after it is written.
//!
//! The wrapper checks, before calling the unsafe routine, that every element the GEMM will
//! touch lies inside the slices it was given, so the `unsafe` block rests on checks made here
//! and not on promises made by callers. It does not thread, tile or pack anything itself;
//! matrixmultiply does its own cache blocking, and the callers decide how to split the work.

use crate::{Activation, KernelError};

/// A read-only `rows x cols` matrix inside `data`, element `(i, j)` at `i * rs + j * cs`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix whose rows are `rs` elements apart.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize, rs: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs,
            cs: 1,
        }
    }
}

/// A writable row-major `rows x cols` block inside `data`, element `(i, j)` at `i * rs + j`.
pub(crate) struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
}

/// Largest offset a strided view touches, or `None` when it does not fit in `len` elements.
/// Only called with `rows >= 1` and `cols >= 1`.
fn last_offset(rows: usize, cols: usize, rs: usize, cs: usize, len: usize) -> Option<usize> {
    let last = (rows - 1)
        .checked_mul(rs)?
        .checked_add((cols - 1).checked_mul(cs)?)?;
    (last < len).then_some(last)
}

fn shape_error(reason: String) -> KernelError {
    KernelError::Invalid {
        what: "GEMM operands",
        reason,
    }
}

/// Converts a stride for matrixmultiply. Strides that reach past the slice were rejected
/// before this is called, except the unused stride of a single row or column, which is
/// replaced by 0 when it does not fit.
fn stride(s: usize, used: bool) -> Result<isize, KernelError> {
    match isize::try_from(s) {
        Ok(v) => Ok(v),
        Err(_) if !used => Ok(0),
        Err(_) => Err(shape_error(format!("stride {s} overflows isize"))),
    }
}

/// `c = a x b` (c is overwritten, not accumulated into).
pub(crate) fn gemm(a: MatRef<'_>, b: MatRef<'_>, c: MatMut<'_>) -> Result<(), KernelError> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k || c.rows != m || c.cols != n {
        return Err(shape_error(format!(
            "[{m}x{k}] x [{}x{n}] cannot be written into [{}x{}]",
            b.rows, c.rows, c.cols
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if c.rs < n && m > 1 {
        return Err(shape_error(format!(
            "output row stride {} < {n} columns",
            c.rs
        )));
    }
    let Some(c_last) = last_offset(m, n, c.rs, 1, c.data.len()) else {
        return Err(shape_error("the output block overruns its buffer".into()));
    };
    if k == 0 {
        // An empty sum: C = 0.
        for i in 0..m {
            let start = i * c.rs;
            c.data[start..start + n].fill(0.0);
        }
        return Ok(());
    }
    if last_offset(m, k, a.rs, a.cs, a.data.len()).is_none()
        || last_offset(k, n, b.rs, b.cs, b.data.len()).is_none()
    {
        return Err(shape_error("an input operand overruns its buffer".into()));
    }
    let (rsa, csa) = (stride(a.rs, m > 1)?, stride(a.cs, k > 1)?);
    let (rsb, csb) = (stride(b.rs, k > 1)?, stride(b.cs, n > 1)?);
    let rsc = stride(c.rs, m > 1)?;
    debug_assert!(c_last < c.data.len());
    // SAFETY: `a` is read at offsets i*rsa + l*csa (i < m, l < k) and `b` at l*rsb + j*csb
    // (l < k, j < n); `last_offset` checked that the largest of these is inside each slice and
    // all strides are non-negative, so every read is in bounds. `c` is written at i*rsc + j
    // (i < m, j < n), checked the same way (`c_last`). Because the column stride of C is 1 and
    // its row stride is >= n (or there is a single row), no two elements of C alias, as
    // matrixmultiply requires. C is borrowed mutably while A and B are shared borrows, so C
    // cannot overlap them. beta = 0, so C's previous contents are never read.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            rsa,
            csa,
            b.data.as_ptr(),
            rsb,
            csb,
            0.0,
            c.data.as_mut_ptr(),
            rsc,
            1,
        );
    }
    Ok(())
}

/// The epilogue of a GEMM block: adds `bias[i]` to the `cols` values of row `i` (rows `rs`
/// apart in `data`) and applies `act`, while the block is still in cache.
/// `bias`, when given, has at least `rows` values (callers slice it per group).
pub(crate) fn bias_act_rows(
    data: &mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    bias: Option<&[f32]>,
    act: Activation,
) {
    if bias.is_none() && act == Activation::Linear {
        return;
    }
    for (i, row) in data.chunks_mut(rs.max(1)).take(rows).enumerate() {
        let len = cols.min(row.len());
        let seg = &mut row[..len];
        if let Some(b) = bias.and_then(|b| b.get(i)) {
            for v in seg.iter_mut() {
                *v += *b;
            }
        }
        act.apply(seg);
    }
}
