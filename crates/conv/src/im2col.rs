//! im2col: unfolds the receptive fields of one image into Caffe's column matrix, so that a
//! convolution becomes a matrix product.
//!
//! For group `g` the matrix has `col_rows = (in_c/groups)*k_h*k_w` rows, row
//! `r = (c*k_h + kh)*k_w + kw` for the group's input channel `c`, and one column per output
//! pixel `oh*out_w + ow`. Entry `(r, (oh, ow))` is `input[c, oh*stride_h - pad_top + kh*dil_h,
//! ow*stride_w - pad_left + kw*dil_w]`, or 0 when that falls in the padding. Padding is never
//! materialised: each row of the matrix is built from the input row it reads, with the
//! out-of-range ends of the run zero-filled and the in-range middle copied (a plain
//! `copy_from_slice` when `stride_w == 1`).
//!
//! [`im2col_rows`] builds only the columns of output rows `[oh0, oh1)`, which is what lets
//! [`crate::conv2d`] bound its column buffer. This module does not multiply anything.

use crate::error::{check_conv_geometry, check_len, mul_len};
use crate::{Conv2dGeometry, KernelError};

/// The output positions `o` in `0..out` whose input coordinate `o*stride + offset - pad` falls
/// inside `0..input`, as a half-open range `[lo, hi)` (empty ranges have `lo == hi`).
/// `offset` is the kernel tap's displacement (`k * dilation`).
pub(crate) fn valid_range(
    out: usize,
    stride: usize,
    pad: usize,
    offset: usize,
    input: usize,
) -> (usize, usize) {
    // o*stride + offset >= pad  <=>  o >= ceil((pad - offset) / stride)
    let lo = pad.saturating_sub(offset).div_ceil(stride);
    // o*stride + offset - pad < input  <=>  o*stride < input + pad - offset
    let hi = match (input + pad).checked_sub(offset) {
        Some(limit) => limit.div_ceil(stride),
        None => 0,
    };
    let hi = hi.min(out);
    (lo.min(hi), hi)
}

/// Unfolds group `group` of one image `image[in_c, in_h, in_w]` into
/// `cols[col_rows, col_cols]` (Caffe's layout; padded cells are written as 0).
pub fn im2col(
    geom: &Conv2dGeometry,
    image: &[f32],
    group: usize,
    cols: &mut [f32],
) -> Result<(), KernelError> {
    im2col_rows(geom, image, group, 0, geom.out_h, cols)
}

/// Like [`im2col`], but only for output rows `[oh0, oh1)`: `cols` is
/// `[col_rows, (oh1 - oh0) * out_w]`, column `(oh - oh0) * out_w + ow`.
pub fn im2col_rows(
    geom: &Conv2dGeometry,
    image: &[f32],
    group: usize,
    oh0: usize,
    oh1: usize,
    cols: &mut [f32],
) -> Result<(), KernelError> {
    check_conv_geometry(geom)?;
    check_im2col_args(geom, image, group, oh0, oh1, cols)?;
    fill_cols(geom, image, group, oh0, oh1, cols);
    Ok(())
}

/// The argument checks of [`im2col_rows`], for a geometry already known to be consistent.
pub(crate) fn check_im2col_args(
    geom: &Conv2dGeometry,
    image: &[f32],
    group: usize,
    oh0: usize,
    oh1: usize,
    cols: &[f32],
) -> Result<(), KernelError> {
    check_len("im2col image", image.len(), geom.in_len())?;
    if group >= geom.groups {
        return Err(KernelError::Invalid {
            what: "im2col group",
            reason: format!("group {group} of {}", geom.groups),
        });
    }
    if oh0 > oh1 || oh1 > geom.out_h {
        return Err(KernelError::Invalid {
            what: "im2col output rows",
            reason: format!("[{oh0}, {oh1}) is not inside [0, {})", geom.out_h),
        });
    }
    let n = (oh1 - oh0) * geom.out_w;
    check_len(
        "im2col column buffer",
        cols.len(),
        mul_len("im2col", geom.col_rows(), n)?,
    )
}

/// Writes the column matrix of output rows `[oh0, oh1)`; the arguments have been checked by
/// [`check_im2col_args`] (or follow from a checked geometry).
pub(crate) fn fill_cols(
    geom: &Conv2dGeometry,
    image: &[f32],
    group: usize,
    oh0: usize,
    oh1: usize,
    cols: &mut [f32],
) {
    let n = (oh1 - oh0) * geom.out_w;
    if n == 0 {
        return;
    }
    let plane = geom.in_h * geom.in_w;
    let first_channel = group * geom.in_c_per_group();
    for (r, dst) in cols.chunks_mut(n).enumerate() {
        let kw = r % geom.k_w;
        let kh = (r / geom.k_w) % geom.k_h;
        let c = first_channel + r / (geom.k_w * geom.k_h);
        let src = &image[c * plane..(c + 1) * plane];
        fill_col_row(geom, src, kh, kw, oh0, dst, false);
    }
}

/// One row of the column matrix: kernel tap `(kh, kw)` of one input channel `plane[in_h, in_w]`
/// for the output rows starting at `oh0` (`dst.len() / out_w` of them). With `phased` (stride
/// 2 only), every row of `plane` is stored split by column parity ([`phase_rows`]): the even
/// columns, then the odd ones, so that a tap's every-other value is one contiguous run.
pub(crate) fn fill_col_row(
    geom: &Conv2dGeometry,
    plane: &[f32],
    kh: usize,
    kw: usize,
    oh0: usize,
    dst: &mut [f32],
    phased: bool,
) {
    let (w_lo, w_hi) = valid_range(
        geom.out_w,
        geom.stride_w,
        geom.pad_left,
        kw * geom.dil_w,
        geom.in_w,
    );
    let h_off = kh * geom.dil_h;
    for (t, drow) in dst.chunks_exact_mut(geom.out_w).enumerate() {
        let oh = oh0 + t;
        // Input row read by this output row, if it is not padding.
        let ih = (oh * geom.stride_h + h_off)
            .checked_sub(geom.pad_top)
            .filter(|&ih| ih < geom.in_h);
        let Some(ih) = ih else {
            drow.fill(0.0);
            continue;
        };
        drow[..w_lo].fill(0.0);
        drow[w_hi..].fill(0.0);
        if w_lo == w_hi {
            continue;
        }
        let src_row = &plane[ih * geom.in_w..(ih + 1) * geom.in_w];
        // First input column read: w_lo*stride + kw*dil - pad_left >= 0 by construction.
        let start = w_lo * geom.stride_w + kw * geom.dil_w - geom.pad_left;
        let run = &mut drow[w_lo..w_hi];
        if geom.stride_w == 1 {
            run.copy_from_slice(&src_row[start..start + run.len()]);
        } else if geom.stride_w == 2 && phased {
            // Columns of one parity, consecutive in the phased row.
            let at = (start % 2) * geom.in_w.div_ceil(2) + start / 2;
            run.copy_from_slice(&src_row[at..at + run.len()]);
        } else if geom.stride_w == 2 {
            // Every other value: pairs, so that the compiler de-interleaves with shuffles
            // rather than one load per value.
            let src = &src_row[start..start + 2 * run.len() - 1];
            for (d, pair) in run.iter_mut().zip(src.chunks(2)) {
                *d = pair[0];
            }
        } else {
            for (d, s) in run
                .iter_mut()
                .zip(src_row[start..].iter().step_by(geom.stride_w))
            {
                *d = *s;
            }
        }
    }
}

/// Every row of `input` (rows of `width` values) written to `out` split by column parity: the
/// even columns, then the odd ones (what [`fill_col_row`] reads with `phased`). One pass.
pub(crate) fn phase_rows(input: &[f32], width: usize, out: &mut [f32]) {
    let half = width.div_ceil(2);
    for (src, dst) in input.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        let (even, odd) = dst.split_at_mut(half);
        // Pairs, which the compiler de-interleaves with shuffles; an odd width's last value
        // is even.
        let pairs = src.chunks_exact(2);
        if let Some(&last) = pairs.remainder().first() {
            even[half - 1] = last;
        }
        for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(pairs) {
            (*e, *o) = (pair[0], pair[1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Conv2dSpec, Padding};

    fn geom(in_c: usize, h: usize, w: usize, k: usize, s: usize, p: Padding) -> Conv2dGeometry {
        let spec = Conv2dSpec {
            filters: 1,
            kernel: [k, k],
            stride: [s, s],
            dilation: [1, 1],
            padding: p,
            groups: 1,
        };
        Conv2dGeometry::resolve(in_c, h, w, &spec).unwrap()
    }

    #[test]
    fn valid_range_cases() {
        // out 5, stride 1, pad 2, offset 0, input 5: positions 0,1 read -2,-1.
        assert_eq!(valid_range(5, 1, 2, 0, 5), (2, 5));
        // offset 4: positions read 2..6, so 0..3 valid.
        assert_eq!(valid_range(5, 1, 2, 4, 5), (0, 3));
        // stride 2, pad 1, offset 0, input 4, out 3: reads -1, 1, 3.
        assert_eq!(valid_range(3, 2, 1, 0, 4), (1, 3));
        // Offset beyond everything.
        assert_eq!(valid_range(3, 1, 0, 10, 4), (0, 0));
    }

    #[test]
    fn worked_example_3x3_k2() {
        // Input 1..9 as a 3x3 image, 2x2 kernel, valid: 4 rows (taps) x 4 columns (outputs).
        let g = geom(1, 3, 3, 2, 1, Padding::Valid);
        let image: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let mut cols = vec![f32::NAN; 16];
        im2col(&g, &image, 0, &mut cols).unwrap();
        #[rustfmt::skip]
        let expected = [
            1.0, 2.0, 4.0, 5.0, // tap (0,0)
            2.0, 3.0, 5.0, 6.0, // tap (0,1)
            4.0, 5.0, 7.0, 8.0, // tap (1,0)
            5.0, 6.0, 8.0, 9.0, // tap (1,1)
        ];
        assert_eq!(cols, expected);
    }

    #[test]
    fn worked_example_with_padding_and_stride() {
        // 1x3x3 input 1..9, 2x2 kernel, stride 2, padding 1: output 2x2.
        // Output (oh, ow) reads rows 2*oh-1+kh and columns 2*ow-1+kw.
        let g = geom(1, 3, 3, 2, 2, Padding::Explicit { h: 1, w: 1 });
        assert_eq!((g.out_h, g.out_w), (2, 2));
        let image: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let mut cols = vec![f32::NAN; 16];
        im2col(&g, &image, 0, &mut cols).unwrap();
        #[rustfmt::skip]
        let expected = [
            0.0, 0.0, 0.0, 5.0, // tap (0,0): (-1,-1) (-1,1) (1,-1) (1,1)
            0.0, 0.0, 4.0, 6.0, // tap (0,1): (-1,0) (-1,2) (1,0) (1,2)
            0.0, 2.0, 0.0, 8.0, // tap (1,0): (0,-1) (0,1) (2,-1) (2,1)
            1.0, 3.0, 7.0, 9.0, // tap (1,1): (0,0) (0,2) (2,0) (2,2)
        ];
        assert_eq!(cols, expected);
    }

    #[test]
    fn same_padding_two_channels_and_row_tiles() {
        // 2x3x3, 3x3 kernel, same padding: every column of the centre tap is the image.
        let g = geom(2, 3, 3, 3, 1, Padding::Same);
        let image: Vec<f32> = (1..=18).map(|v| v as f32).collect();
        let mut cols = vec![f32::NAN; 18 * 9];
        im2col(&g, &image, 0, &mut cols).unwrap();
        assert_eq!(&cols[4 * 9..5 * 9], &image[..9]);
        assert_eq!(&cols[13 * 9..14 * 9], &image[9..]);
        // Tap (0,0) of channel 0: output (oh,ow) reads (oh-1, ow-1).
        assert_eq!(&cols[..9], &[0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 4.0, 5.0]);
        // Rows [1, 3) only: the last two thirds of every row of the full matrix.
        let mut part = vec![f32::NAN; 18 * 6];
        im2col_rows(&g, &image, 0, 1, 3, &mut part).unwrap();
        for r in 0..18 {
            assert_eq!(&part[r * 6..(r + 1) * 6], &cols[r * 9 + 3..(r + 1) * 9]);
        }
    }

    #[test]
    fn dilation_and_groups() {
        // 2 groups of 1 channel, 2x2 kernel dilated by 2 on a 3x3 input: one output pixel.
        let spec = Conv2dSpec {
            filters: 2,
            kernel: [2, 2],
            stride: [1, 1],
            dilation: [2, 2],
            padding: Padding::Valid,
            groups: 2,
        };
        let g = Conv2dGeometry::resolve(2, 3, 3, &spec).unwrap();
        let image: Vec<f32> = (1..=18).map(|v| v as f32).collect();
        let mut cols = vec![0.0; 4];
        im2col(&g, &image, 1, &mut cols).unwrap();
        assert_eq!(cols, [10.0, 12.0, 16.0, 18.0]);
    }

    #[test]
    fn errors_not_panics() {
        let g = geom(1, 3, 3, 2, 1, Padding::Valid);
        let image = vec![0.0; 9];
        let mut cols = vec![0.0; 16];
        assert!(matches!(
            im2col(&g, &image[..8], 0, &mut cols),
            Err(KernelError::Length { .. })
        ));
        assert!(matches!(
            im2col(&g, &image, 0, &mut cols[..15]),
            Err(KernelError::Length { .. })
        ));
        assert!(matches!(
            im2col(&g, &image, 1, &mut cols),
            Err(KernelError::Invalid { .. })
        ));
        assert!(im2col_rows(&g, &image, 0, 2, 1, &mut cols).is_err());
        let mut bad = g;
        bad.out_h = 7;
        assert!(im2col(&bad, &image, 0, &mut cols).is_err());
        bad.groups = 0;
        assert!(im2col(&bad, &image, 0, &mut cols).is_err());
    }
}
