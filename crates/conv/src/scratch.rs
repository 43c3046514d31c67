//! Thread-local reusable scratch: per-thread buffers kept from one call to the next, for the
//! channels-last copies of the input and the workers' column panels or output tiles. A
//! network's layers then neither allocate nor zero-fill them again on every call; their
//! contents are unspecified (stale values of an earlier call), which the kernels that use them
//! never read before writing, or only in lanes whose results are never stored.
//!
//! This module only hands out buffers; it does not size them (the callers do, see
//! [`crate::conv`]) and it does not keep anything larger than [`KEPT_VALUES`].

use crate::KernelError;
use std::cell::Cell;
use std::thread::LocalKey;

/// Largest buffer a thread keeps between calls, in values (16 MiB).
const KEPT_VALUES: usize = (16 << 20) / std::mem::size_of::<f32>();

/// One kind of scratch buffer: a thread-local slot.
pub(crate) type Slot = LocalKey<Cell<Vec<f32>>>;

thread_local! {
    /// Channels-last copies of the input ([`crate::channels_last`]).
    pub(crate) static COPIES: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// A worker's column panels or output tile ([`crate::conv`]).
    pub(crate) static TILES: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on a buffer of `len` values (contents unspecified): this thread's buffer in `slot`
/// (taken out for the call, so a nested call gets its own), or a fresh zero-filled one, named
/// `what` in an allocation error, when that is too short; afterwards the longer of the two is
/// kept, up to [`KEPT_VALUES`].
pub(crate) fn with_buffer<R>(
    slot: &'static Slot,
    len: usize,
    what: &str,
    f: impl FnOnce(&mut [f32]) -> Result<R, KernelError>,
) -> Result<R, KernelError> {
    let mut buf = slot.take();
    if buf.len() < len {
        drop(std::mem::take(&mut buf));
        buf = cnn_tensor::try_zeroed(len, what)?;
    }
    let result = f(&mut buf[..len]);
    if buf.len() <= KEPT_VALUES {
        let kept = slot.take();
        slot.set(if kept.len() > buf.len() { kept } else { buf });
    }
    result
}
