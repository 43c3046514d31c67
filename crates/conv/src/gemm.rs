//! A bounds-checked wrapper around `matrixmultiply::sgemm` (the GEMM of dense layers and of the
//! plain im2col baseline; convolutions run the packed GEMM of [`crate::packed`]), the output
//! views both write into, and the bias-and-activation epilogue that runs on each block right
//! after it is written.
//!
//! The wrapper checks, before calling the unsafe routine, that every element the GEMM will
//! touch lies inside the buffers it was given, so the `unsafe` call rests on checks made here
//! and not on promises made by callers. Outputs are [`MatMut`] blocks: made from a `&mut [f32]`
//! (checked), or carved out of a [`SharedOut`] by parallel tasks that each own a disjoint
//! rectangle of one output tensor (the only promise a caller makes, in an `unsafe` call).
//! Nothing here threads, tiles or packs; matrixmultiply does its own cache blocking, and the
//! callers decide how to split the work.

use crate::{Activation, KernelError};
use std::marker::PhantomData;
use std::slice;

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

/// A writable row-major `rows x cols` block, element `(i, j)` at `ptr + i * rs + j`.
///
/// Invariant: for the lifetime `'a` this value has exclusive access to the block's elements
/// (not to the gaps between its rows), and they all lie inside one live `f32` allocation. It is
/// built either from a `&mut [f32]` ([`MatMut::new`], checked) or from a [`SharedOut`] whose
/// caller promises disjointness ([`SharedOut::block`]).
pub(crate) struct MatMut<'a> {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    rs: usize,
    _borrow: PhantomData<&'a mut [f32]>,
}

impl<'a> MatMut<'a> {
    /// The block of `rows x cols` elements, rows `rs` apart, at the start of `data`.
    pub fn new(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        rs: usize,
    ) -> Result<Self, KernelError> {
        check_block(data.len(), rows, cols, rs)?;
        Ok(Self {
            ptr: data.as_mut_ptr(),
            rows,
            cols,
            rs,
            _borrow: PhantomData,
        })
    }

    /// Row `i` of the block (`cols` elements), or an empty slice when `i` is out of range.
    pub fn row(&mut self, i: usize) -> &mut [f32] {
        if i >= self.rows || self.cols == 0 {
            return &mut [];
        }
        // SAFETY: `check_block` verified at construction that row `i < rows` lies inside the
        // allocation (its last element is at most the block's last offset) and that rows do not
        // overlap (rs >= cols); the invariant gives this value exclusive access to these
        // elements, and `&mut self` ties the returned slice to a unique borrow of it.
        unsafe { slice::from_raw_parts_mut(self.ptr.add(i * self.rs), self.cols) }
    }
}

impl MatMut<'_> {
    /// The block's size, `(rows, cols)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// A pointer to element `(i, j)` and the row stride, when the `rows x cols` sub-block
    /// starting there lies inside this block (else `None`). The sub-block's elements are this
    /// value's to read and write for as long as the `&mut self` borrow lasts.
    pub fn sub_block_ptr(
        &mut self,
        i: usize,
        j: usize,
        rows: usize,
        cols: usize,
    ) -> Option<(*mut f32, usize)> {
        let inside = i.checked_add(rows).is_some_and(|e| e <= self.rows)
            && j.checked_add(cols).is_some_and(|e| e <= self.cols);
        // SAFETY: (i, j) is inside the block (or one past an empty one), so the offset stays
        // within the allocation `check_block` verified.
        (inside && rows > 0 && cols > 0)
            .then(|| (unsafe { self.ptr.add(i * self.rs + j) }, self.rs))
    }
}

/// Checks that a `rows x cols` block with row stride `rs` fits in `len` elements and that its
/// rows do not overlap.
fn check_block(len: usize, rows: usize, cols: usize, rs: usize) -> Result<(), KernelError> {
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    if rows > 1 && rs < cols {
        return Err(shape_error(format!(
            "output row stride {rs} < {cols} columns"
        )));
    }
    if isize::try_from(rs).is_err() || last_offset(rows, cols, rs, 1, len).is_none() {
        return Err(shape_error(format!(
            "a {rows}x{cols} block with row stride {rs} overruns its {len}-element buffer"
        )));
    }
    Ok(())
}

/// A mutable row-major matrix (`row_len` elements per row) shared by parallel tasks that each
/// write their own, disjoint, rectangular block of it.
pub(crate) struct SharedOut<'a> {
    ptr: *mut f32,
    len: usize,
    row_len: usize,
    _borrow: PhantomData<&'a mut [f32]>,
}

// SAFETY: a `SharedOut` stands for the exclusive borrow `&'a mut [f32]` it was made from, which
// is `Send` and `Sync` (f32 is). The only access it gives is through the unsafe `block`, whose
// contract makes the blocks used at the same time, from any threads, disjoint.
unsafe impl Send for SharedOut<'_> {}
// SAFETY: as above.
unsafe impl Sync for SharedOut<'_> {}

impl<'a> SharedOut<'a> {
    pub fn new(data: &'a mut [f32], row_len: usize) -> Self {
        Self {
            ptr: data.as_mut_ptr(),
            len: data.len(),
            row_len,
            _borrow: PhantomData,
        }
    }

    /// Rows `row0 .. row0 + rows`, columns `col0 .. col0 + cols` as a block (bounds checked).
    ///
    /// # Safety
    /// Blocks obtained from the same `SharedOut` that are alive at the same time (on any thread)
    /// must not overlap.
    pub unsafe fn block(
        &self,
        row0: usize,
        rows: usize,
        col0: usize,
        cols: usize,
    ) -> Result<MatMut<'_>, KernelError> {
        let start = row0
            .checked_mul(self.row_len)
            .and_then(|x| x.checked_add(col0));
        let fits = col0
            .checked_add(cols)
            .is_some_and(|end| end <= self.row_len);
        let Some(start) = start.filter(|&s| fits && s <= self.len) else {
            return Err(shape_error(format!(
                "block at row {row0}, column {col0} is outside the output"
            )));
        };
        check_block(self.len - start, rows, cols, self.row_len)?;
        Ok(MatMut {
            // SAFETY: start <= len, so the offset stays within (or one past) the allocation.
            ptr: unsafe { self.ptr.add(start) },
            rows,
            cols,
            rs: self.row_len,
            _borrow: PhantomData,
        })
    }
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
pub(crate) fn gemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut MatMut<'_>) -> Result<(), KernelError> {
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
    if k == 0 {
        // An empty sum: C = 0.
        (0..m).for_each(|i| c.row(i).fill(0.0));
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
    // SAFETY: `a` is read at offsets i*rsa + l*csa (i < m, l < k) and `b` at l*rsb + j*csb
    // (l < k, j < n); `last_offset` checked that the largest of these is inside each slice and
    // all strides are non-negative, so every read is in bounds. `c` is written at i*rsc + j
    // (i < m, j < n): `MatMut`'s constructors checked that these lie in its allocation and that
    // rows do not overlap (rsc >= n), so no two elements of C alias, as matrixmultiply
    // requires; its invariant gives us exclusive access to them, so C overlaps neither A nor B
    // (shared borrows) nor any other block. beta = 0, so C's previous contents are never read.
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
            c.ptr,
            rsc,
            1,
        );
    }
    Ok(())
}

/// The epilogue of a GEMM block: adds `bias[i]` to row `i` of `c` and applies `act`, while the
/// block is still in cache. `bias`, when given, has one value per row (callers slice it).
pub(crate) fn bias_act(c: &mut MatMut<'_>, bias: Option<&[f32]>, act: Activation) {
    if bias.is_none() && act == Activation::Linear {
        return;
    }
    for i in 0..c.rows {
        let row = c.row(i);
        match bias.and_then(|b| b.get(i)) {
            Some(&b) => act.apply_with_bias(row, b),
            None => act.apply(row),
        }
    }
}
