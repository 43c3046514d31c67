//! The naive direct convolution: the reference every fast path is tested against.
//!
//! Seven plain loops (image, group, filter, output row, output column, input channel, kernel
//! row, kernel column — the last three summing one output), zero for padded cells, no tiling,
//! no threads, no tricks. Each output is accumulated in `f64` from the bias and rounded to
//! `f32` once, so the reference itself carries almost no rounding error; the activation is
//! applied to the rounded value. It is slow on purpose and is not used by the engine.

use crate::error::check_conv_args;
use crate::{Activation, Conv2dGeometry, KernelError};

/// Convolution of `batch` images `input[batch, in_c, in_h, in_w]` with
/// `weights[out_c, in_c/groups, k_h, k_w]`, optional `bias[out_c]`, fused activation, into
/// `output[batch, out_c, out_h, out_w]` (overwritten).
pub fn conv2d_direct(
    geom: &Conv2dGeometry,
    input: &[f32],
    batch: usize,
    weights: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
) -> Result<(), KernelError> {
    check_conv_args(geom, input, batch, weights, bias, output)?;
    let g = geom;
    let (cg, mg) = (g.in_c_per_group(), g.out_c_per_group());
    for n in 0..batch {
        for grp in 0..g.groups {
            for m in grp * mg..(grp + 1) * mg {
                for oh in 0..g.out_h {
                    for ow in 0..g.out_w {
                        let mut acc = bias.map_or(0.0, |b| f64::from(b[m]));
                        for c in 0..cg {
                            for kh in 0..g.k_h {
                                for kw in 0..g.k_w {
                                    let x = input_at(g, input, n, grp * cg + c, oh, ow, kh, kw);
                                    let w = weights[((m * cg + c) * g.k_h + kh) * g.k_w + kw];
                                    acc += f64::from(w) * f64::from(x);
                                }
                            }
                        }
                        output[((n * g.out_c + m) * g.out_h + oh) * g.out_w + ow] = acc as f32;
                    }
                }
            }
        }
    }
    act.apply(output);
    Ok(())
}

/// The input value under kernel tap `(kh, kw)` of output `(oh, ow)` for channel `c` of image
/// `n`, or 0 when it falls in the padding.
#[allow(clippy::too_many_arguments)]
pub(crate) fn input_at(
    g: &Conv2dGeometry,
    input: &[f32],
    n: usize,
    c: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
) -> f32 {
    let ih = (oh * g.stride_h + kh * g.dil_h).checked_sub(g.pad_top);
    let iw = (ow * g.stride_w + kw * g.dil_w).checked_sub(g.pad_left);
    match (ih, iw) {
        (Some(ih), Some(iw)) if ih < g.in_h && iw < g.in_w => {
            input[((n * g.in_c + c) * g.in_h + ih) * g.in_w + iw]
        }
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Conv2dSpec, Padding};

    #[test]
    fn hand_computed_example() {
        // 1x3x3 input 1..9, one 2x2 filter [[1, 0], [0, -1]], bias 10, valid.
        // out(i, j) = x(i, j) - x(i+1, j+1) + 10 = -4 + 10 = 6 everywhere.
        let spec = Conv2dSpec {
            filters: 1,
            kernel: [2, 2],
            stride: [1, 1],
            dilation: [1, 1],
            padding: Padding::Valid,
            groups: 1,
        };
        let g = Conv2dGeometry::resolve(1, 3, 3, &spec).unwrap();
        let input: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let mut out = [0.0; 4];
        let w = [1.0, 0.0, 0.0, -1.0];
        conv2d_direct(
            &g,
            &input,
            1,
            &w,
            Some(&[10.0]),
            Activation::Linear,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [6.0; 4]);
        // With padding 1 and stride 2: out(i, j) = x(2i-1, 2j-1) - x(2i, 2j), output 2x2.
        let spec = Conv2dSpec {
            stride: [2, 2],
            padding: Padding::Explicit { h: 1, w: 1 },
            ..spec
        };
        let g = Conv2dGeometry::resolve(1, 3, 3, &spec).unwrap();
        conv2d_direct(&g, &input, 1, &w, None, Activation::Linear, &mut out).unwrap();
        assert_eq!(out, [-1.0, -3.0, -7.0, 5.0 - 9.0]);
    }
}
