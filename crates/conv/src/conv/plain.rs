//! The baseline: the textbook im2col + GEMM convolution, kept to measure the production path
//! against (the benchmarks' `im2col_plain`).
//!
//! Per image and group it builds the whole column matrix with [`crate::im2col()`]'s
//! unfolding, multiplies it with `matrixmultiply`'s GEMM, then applies bias and activation in a
//! second pass. It has no tiling, no threads, no packed weights and no depthwise, pointwise or
//! channels-last shortcut, and the engine never calls it.

use crate::error::check_conv_args;
use crate::gemm::{bias_act, gemm, MatMut, MatRef};
use crate::im2col::fill_cols;
use crate::{Activation, Conv2dGeometry, KernelError};

/// The textbook im2col + GEMM convolution: the whole column matrix of an image is built (no
/// tiling, no pointwise or depthwise shortcut), one GEMM per image and group, single-threaded,
/// then bias and activation. Same contract as [`crate::conv2d`]; kept as a benchmark baseline.
pub fn conv2d_im2col_plain(
    geom: &Conv2dGeometry,
    input: &[f32],
    batch: usize,
    weights: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
) -> Result<(), KernelError> {
    check_conv_args(geom, input, batch, weights, bias, output)?;
    let (k, spatial, mg) = (geom.col_rows(), geom.col_cols(), geom.out_c_per_group());
    let mut cols = cnn_tensor::try_zeroed(k * spatial, "the convolution column matrix")?;
    let images = input.chunks_exact(geom.in_len());
    for (image, out) in images.zip(output.chunks_exact_mut(geom.out_len())) {
        for (grp, out_g) in out.chunks_exact_mut(mg * spatial).enumerate() {
            fill_cols(geom, image, grp, 0, geom.out_h, &mut cols);
            let w_g = &weights[grp * mg * k..(grp + 1) * mg * k];
            let mut c = MatMut::new(out_g, mg, spatial, spatial)?;
            gemm(
                MatRef::row_major(w_g, mg, k, k),
                MatRef::row_major(&cols, k, spatial, spatial),
                &mut c,
            )?;
            bias_act(&mut c, bias.map(|b| &b[grp * mg..(grp + 1) * mg]), act);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{data, max_abs_diff, spec};
    use super::*;
    use crate::{conv2d_direct, Padding};

    #[test]
    fn plain_matches_direct() {
        let g = Conv2dGeometry::resolve(4, 7, 6, &spec(6, 3, 2, Padding::Same, 2)).unwrap();
        let input = data(g.in_len() * 2, 8);
        let weights = data(g.weight_len(), 9);
        let bias = data(6, 10);
        let mut plain = vec![0.0; g.out_len() * 2];
        let mut slow = vec![0.0; g.out_len() * 2];
        let act = Activation::Sigmoid;
        conv2d_im2col_plain(&g, &input, 2, &weights, Some(&bias), act, &mut plain).unwrap();
        conv2d_direct(&g, &input, 2, &weights, Some(&bias), act, &mut slow).unwrap();
        assert!(max_abs_diff(&plain, &slow) < 1e-5);
    }
}
