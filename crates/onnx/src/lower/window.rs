//! The window ops of the ONNX lowering: Conv, MaxPool and AveragePool (1-D and 2-D, explicit,
//! asymmetric or `auto_pad` padding, dilations, `ceil_mode`, `count_include_pad`) and the
//! global pools. Padding and pooling output sizes come from the graph's shared shape helpers.

use super::{macs_of, Lowered, Planner};
use crate::error::OnnxError;
use crate::load::Node;
use crate::ops::{AutoPad, Window};
use cnn_conv::{Conv2dGeometry, Conv2dSpec, Padding};
use cnn_graph::shape::{effective_kernel, pool_output, same_pads};
use cnn_graph::{Epilogue, Expr, Op, PoolGeometry, Shape};

/// Window attributes resolved on one spatial axis.
struct Axis {
    kernel: usize,
    stride: usize,
    dilation: usize,
    begin: usize,
    end: usize,
}

const NEUTRAL: Axis = Axis {
    kernel: 1,
    stride: 1,
    dilation: 1,
    begin: 0,
    end: 0,
};

/// The window's axes, padded to two (1-D: a neutral H axis first).
fn resolve_axes(
    node: &Node,
    window: &Window,
    spatial: &[usize],
    kernel: &[usize],
) -> Result<[Axis; 2], OnnxError> {
    let rank = spatial.len();
    let check = |what: &str, v: &[usize], want: usize| {
        if !v.is_empty() && v.len() != want {
            Err(node.error(format!(
                "attribute '{what}' has {} values; a {rank}-D window needs {want}",
                v.len()
            )))
        } else {
            Ok(())
        }
    };
    check("strides", &window.strides, rank)?;
    check("dilations", &window.dilations, rank)?;
    check("pads", &window.pads, 2 * rank)?;
    let axis = |i: usize| {
        let stride = window.strides.get(i).copied().unwrap_or(1);
        let dilation = window.dilations.get(i).copied().unwrap_or(1);
        let (begin, end) = match window.auto_pad {
            AutoPad::NotSet => (
                window.pads.get(i).copied().unwrap_or(0),
                window.pads.get(i + rank).copied().unwrap_or(0),
            ),
            AutoPad::Valid => (0, 0),
            AutoPad::SameUpper | AutoPad::SameLower => same_pads(
                spatial[i],
                kernel[i],
                stride,
                dilation,
                window.auto_pad == AutoPad::SameUpper,
            ),
        };
        Axis {
            kernel: kernel[i],
            stride,
            dilation,
            begin,
            end,
        }
    };
    Ok(match rank {
        1 => [NEUTRAL, axis(0)],
        _ => [axis(0), axis(1)],
    })
}

/// `[N, C, spatial…]` with 1 or 2 spatial axes, as `(N, C, [H, W])` (1-D: `H = 1`).
fn nc_hw(
    node: &Node,
    shape: &[usize],
    what: &str,
) -> Result<(usize, usize, [usize; 2]), OnnxError> {
    match shape.len() {
        3 => Ok((shape[0], shape[1], [1, shape[2]])),
        4 => Ok((shape[0], shape[1], [shape[2], shape[3]])),
        5 => Err(node.error(format!(
            "{what} {shape:?} is 3-D spatial; the engine's window kernels are 1-D and 2-D"
        ))),
        _ => Err(node.error(format!(
            "{what} {shape:?} must be [N, C, H, W] (or [N, C, L])"
        ))),
    }
}

/// The formula terms of a (transposed) convolution's weight (`dims[0]*dims[1]*k…`) and bias
/// (`bias`), each when the node owns it as an initializer.
fn weight_and_bias(
    node: &Node,
    params: &[cnn_graph::Param],
    dims: [usize; 2],
    kernel: &[usize],
    bias: usize,
) -> Vec<Expr> {
    let owns = |i: usize| {
        params
            .iter()
            .any(|p| Some(p.name.as_str()) == node.input(i))
    };
    let mut terms = Vec::new();
    if owns(1) {
        let mut f = vec![Expr::n(dims[0]), Expr::n(dims[1])];
        f.extend(kernel.iter().map(|&k| Expr::n(k)));
        terms.push(Expr::product(f));
    }
    if owns(2) {
        terms.push(Expr::n(bias));
    }
    terms
}

/// `[n, c]` then the spatial output sizes (1-D: only W).
fn window_output(n: usize, c: usize, spatial: usize, out_hw: [usize; 2]) -> Shape {
    let mut out = vec![n, c];
    if spatial == 2 {
        out.push(out_hw[0]);
    }
    out.push(out_hw[1]);
    out
}

impl<'a> Planner<'a> {
    pub(super) fn conv(
        &mut self,
        node: &'a Node,
        window: &Window,
        group: usize,
    ) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        let w = self.data_shape(node, 1)?;
        let (n, c, hw) = nc_hw(node, &x, "input")?;
        let spatial = x.len() - 2;
        if w.len() != x.len() {
            return Err(node.error(format!(
                "weight shape {w:?} has rank {}, the input {x:?} rank {}",
                w.len(),
                x.len()
            )));
        }
        let kernel: Vec<usize> = window
            .kernel_shape
            .clone()
            .unwrap_or_else(|| w[2..].to_vec());
        if kernel.len() != spatial || kernel[..] != w[2..] {
            return Err(node.error(format!(
                "kernel_shape {kernel:?} does not match the weight shape {w:?}"
            )));
        }
        let out_c = w[0];
        if c % group != 0 || out_c % group != 0 {
            return Err(node.error(format!(
                "group = {group} must divide the {c} input channels and the {out_c} filters"
            )));
        }
        let expected_w: Shape = [out_c, c / group]
            .into_iter()
            .chain(kernel.iter().copied())
            .collect();
        if w != expected_w {
            return Err(node.error(format!(
                "weight shape {w:?} does not fit the input: {c} channels in {group} \
                 group(s) need [{out_c}, {}, {}]",
                c / group,
                kernel
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if let Some(b) = node.input(2) {
            let bs = self.data_shape(node, 2)?;
            if bs != [out_c] {
                return Err(
                    node.error(format!("bias '{b}' has shape {bs:?}; it must be [{out_c}]"))
                );
            }
        }
        let [ah, aw] = resolve_axes(node, window, &x[2..], &kernel)?;
        let spec = Conv2dSpec {
            filters: out_c,
            kernel: [ah.kernel, aw.kernel],
            stride: [ah.stride, aw.stride],
            dilation: [ah.dilation, aw.dilation],
            padding: Padding::Asymmetric {
                top: ah.begin,
                bottom: ah.end,
                left: aw.begin,
                right: aw.end,
            },
            groups: group,
        };
        let geom = Conv2dGeometry::resolve(c, hw[0], hw[1], &spec)
            .map_err(|e| node.error(format!("input {x:?}: {e}")))?;
        let params = self.claim(node, &[1, 2], &[]);
        let terms = weight_and_bias(node, &params, [out_c, c / group], &kernel, out_c);
        let mut l = Lowered::new(
            window_output(n, out_c, spatial, [geom.out_h, geom.out_w]),
            Op::Conv {
                geom,
                batch: n,
                epilogue: Epilogue::default(),
            },
        );
        l.formula = (!terms.is_empty()).then(|| Expr::sum(terms));
        l.macs = macs_of(node, &[geom.macs(), n as u64])?;
        l.params = params;
        Ok(l)
    }

    pub(super) fn pool(
        &mut self,
        node: &'a Node,
        window: &Window,
        ceil_mode: bool,
        max: bool,
        count_include_pad: bool,
    ) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        let (n, c, hw) = nc_hw(node, &x, "input")?;
        if hw.contains(&0) {
            return Err(node.error(format!(
                "input {x:?} has an empty spatial axis: there is nothing to pool"
            )));
        }
        let spatial = x.len() - 2;
        let kernel = window
            .kernel_shape
            .clone()
            .ok_or_else(|| node.error("attribute 'kernel_shape' is required"))?;
        if kernel.len() != spatial {
            return Err(node.error(format!(
                "kernel_shape {kernel:?} does not match the {spatial}-D input {x:?}"
            )));
        }
        let [ah, aw] = resolve_axes(node, window, &x[2..], &kernel)?;
        let mut out_hw = [0; 2];
        for (i, a) in [&ah, &aw].into_iter().enumerate() {
            let eff = effective_kernel(a.kernel, a.dilation);
            out_hw[i] =
                pool_output(hw[i], a.begin, a.end, eff, a.stride, ceil_mode).map_err(|e| {
                    node.error(format!(
                        "the window ({} cells with dilation) is larger than the padded \
                         input ({}) of {x:?}",
                        e.effective, e.padded
                    ))
                })?;
        }
        let geom = PoolGeometry {
            max,
            count_include_pad,
            planes: n * c,
            in_hw: hw,
            kernel: [ah.kernel, aw.kernel],
            stride: [ah.stride, aw.stride],
            dilation: [ah.dilation, aw.dilation],
            pad_begin: [ah.begin, aw.begin],
            pad_end: [ah.end, aw.end],
            out_hw,
        };
        Ok(Lowered::new(
            window_output(n, c, spatial, out_hw),
            Op::Pool(geom),
        ))
    }

    pub(super) fn global_pool(&mut self, node: &'a Node, max: bool) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        if x.len() < 3 {
            return Err(node.error(format!("input {x:?} must be [N, C, spatial…]")));
        }
        if x[2..].contains(&0) {
            return Err(node.error(format!(
                "input {x:?} has an empty spatial axis: there is nothing to pool"
            )));
        }
        let mut out = x.clone();
        out[2..].iter_mut().for_each(|d| *d = 1);
        Ok(Lowered::new(
            out,
            Op::GlobalPool {
                max,
                planes: x[0] * x[1],
                spatial: super::product(&x[2..]),
            },
        ))
    }

    pub(super) fn conv_transpose(
        &mut self,
        node: &'a Node,
        window: &Window,
        group: usize,
        output_padding: &[usize],
        output_shape: Option<&[usize]>,
    ) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        let w = self.data_shape(node, 1)?;
        let (n, c, hw) = nc_hw(node, &x, "input")?;
        let spatial = x.len() - 2;
        if w.len() != x.len() || w[0] != c || c % group != 0 {
            return Err(node.error(format!(
                "weight shape {w:?} does not fit the input {x:?}: it must be [{c}, M/group, k…] \
                 with group = {group} dividing {c}"
            )));
        }
        let kernel: Vec<usize> = window
            .kernel_shape
            .clone()
            .unwrap_or_else(|| w[2..].to_vec());
        if kernel[..] != w[2..] {
            return Err(node.error(format!(
                "kernel_shape {kernel:?} does not match the weight shape {w:?}"
            )));
        }
        if kernel.contains(&0) {
            return Err(node.error(format!("kernel_shape {kernel:?} has an empty axis")));
        }
        let out_c = w[1]
            .checked_mul(group)
            .ok_or_else(|| node.error(format!("{} x {group} output channels overflow", w[1])))?;
        if let Some(b) = node.input(2) {
            let bs = self.data_shape(node, 2)?;
            if bs != [out_c] {
                return Err(
                    node.error(format!("bias '{b}' has shape {bs:?}; it must be [{out_c}]"))
                );
            }
        }
        let check = |what: &str, v: &[usize], want: usize| {
            if !v.is_empty() && v.len() != want {
                Err(node.error(format!(
                    "attribute '{what}' has {} values; {want} needed",
                    v.len()
                )))
            } else {
                Ok(())
            }
        };
        check("output_padding", output_padding, spatial)?;
        check("strides", &window.strides, spatial)?;
        check("dilations", &window.dilations, spatial)?;
        check("output_shape", output_shape.unwrap_or(&[]), spatial)?;
        // Two axes (1-D: a neutral H first), as for Conv.
        let two = |v: &[usize], default: usize| -> [usize; 2] {
            match v.len() {
                1 => [default, v[0]],
                2 => [v[0], v[1]],
                _ => [default, default],
            }
        };
        let stride = two(&window.strides, 1);
        let dilation = two(&window.dilations, 1);
        let k = two(&kernel, 1);
        let op = two(output_padding, 0);
        let full = |i: usize| {
            stride[i]
                .saturating_mul(hw[i].saturating_sub(1))
                .saturating_add(op[i])
                .saturating_add(dilation[i].saturating_mul(k[i] - 1))
                .saturating_add(1)
        };
        let target: Option<[usize; 2]> = match (output_shape, window.auto_pad) {
            (Some(o), _) => Some(two(o, 1)),
            (None, AutoPad::SameUpper | AutoPad::SameLower) => Some([
                hw[0].saturating_mul(stride[0]),
                hw[1].saturating_mul(stride[1]),
            ]),
            _ => None,
        };
        // With an output shape the padding is what makes it; a negative total (the shape is
        // larger than the full output) grows the output at the end, as output_padding does.
        let mut op = op;
        let pads: [usize; 4] = match target {
            Some(t) => {
                let mut p = [0; 4];
                for i in 0..2 {
                    let total = full(i) as i64 - t[i] as i64;
                    let half = total.div_euclid(2);
                    let (b, e) = if window.auto_pad == AutoPad::SameUpper {
                        (half, total - half)
                    } else {
                        (total - half, half)
                    };
                    if b < 0 {
                        return Err(node.error(format!(
                            "output_shape {t:?} would need negative leading padding"
                        )));
                    }
                    if e < 0 {
                        op[i] += e.unsigned_abs() as usize;
                    }
                    p[2 * i] = b as usize;
                    p[2 * i + 1] = e.max(0) as usize;
                }
                p
            }
            None => {
                let p = &window.pads;
                check("pads", p, 2 * spatial)?;
                match p.len() {
                    4 => [p[0], p[2], p[1], p[3]],
                    2 => [0, 0, p[0], p[1]],
                    _ => [0; 4],
                }
            }
        };
        let geom = cnn_conv::ConvTranspose2dGeometry::resolve(
            c, hw, out_c, k, stride, dilation, pads, op, group,
        )
        .ok_or_else(|| {
            node.error(format!(
                "input {x:?}: the output would be empty or too large"
            ))
        })?;
        let params = self.claim(node, &[1, 2], &[]);
        let terms = weight_and_bias(node, &params, [c, out_c / group], &kernel, out_c);
        let mut l = Lowered::new(
            window_output(n, out_c, spatial, [geom.out_h, geom.out_w]),
            Op::ConvTranspose { geom, batch: n },
        );
        l.formula = (!terms.is_empty()).then(|| Expr::sum(terms));
        let per_image = geom
            .macs()
            .ok_or_else(|| node.error("the multiply-accumulate count overflows"))?;
        l.macs = macs_of(node, &[per_image, n as u64])?;
        l.params = params;
        Ok(l)
    }
}
