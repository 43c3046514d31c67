//! Resize and Upsample lowered to per-axis taps (`cnn_graph::Op::Resize`): output sizes from
//! the scales (`floor(in * scale)`) or the sizes, each output coordinate mapped back to the
//! input by the coordinate mode (half_pixel, pytorch_half_pixel, align_corners, asymmetric),
//! then rounded (nearest, by the nearest mode) or split between two neighbours (linear, the
//! coordinate clamped into the input).

use super::{normalize_axis, Lowered, Planner};
use crate::error::OnnxError;
use crate::load::Node;
use crate::ops::{CoordMode, NearestMode, ResizeSpec};
use cnn_graph::Op;

/// The input coordinate of output coordinate `x` on an axis of `len_in` -> `len_out` cells
/// at `scale`. As the specification's reference does, align_corners divides by the resized
/// length before flooring (`len_in * scale`), not by the whole number of output cells.
fn source(coord: CoordMode, x: f64, scale: f64, len_in: usize, len_out: usize) -> f64 {
    let resized = len_in as f64 * scale;
    match coord {
        CoordMode::HalfPixel => (x + 0.5) / scale - 0.5,
        CoordMode::PytorchHalfPixel if len_out > 1 => (x + 0.5) / scale - 0.5,
        CoordMode::PytorchHalfPixel => 0.0,
        CoordMode::AlignCorners if resized > 1.0 => x * (len_in as f64 - 1.0) / (resized - 1.0),
        CoordMode::AlignCorners => 0.0,
        CoordMode::Asymmetric => x / scale,
    }
}

fn round(mode: NearestMode, v: f64) -> f64 {
    let frac = v - v.floor();
    match mode {
        NearestMode::RoundPreferFloor if frac == 0.5 => v.floor(),
        NearestMode::RoundPreferCeil if frac == 0.5 => v.ceil(),
        NearestMode::RoundPreferFloor | NearestMode::RoundPreferCeil => v.round(),
        NearestMode::Floor => v.floor(),
        NearestMode::Ceil => v.ceil(),
    }
}

/// The taps of one axis (`None` when their memory cannot be had).
fn taps(
    spec: &ResizeSpec,
    len_in: usize,
    len_out: usize,
    scale: f64,
) -> Option<Vec<(usize, usize, f32)>> {
    let last = len_in.saturating_sub(1) as f64;
    let mut v = Vec::new();
    v.try_reserve_exact(len_out).ok()?;
    v.extend((0..len_out).map(|j| {
        let x = source(spec.coord, j as f64, scale, len_in, len_out);
        if spec.linear {
            let x = x.clamp(0.0, last);
            let i0 = x.floor();
            let i1 = (i0 + 1.0).min(last);
            (i0 as usize, i1 as usize, (x - i0) as f32)
        } else {
            let i = round(spec.nearest, x).clamp(0.0, last) as usize;
            (i, i, 0.0)
        }
    }));
    Some(v)
}

impl<'a> Planner<'a> {
    pub(super) fn resize(
        &mut self,
        node: &'a Node,
        spec: &ResizeSpec,
    ) -> Result<Lowered, OnnxError> {
        let x = self.data_shape(node, 0)?;
        let rank = x.len();
        let axes: Vec<usize> = match &spec.axes {
            None => (0..rank).collect(),
            Some(a) => a
                .iter()
                .map(|&v| normalize_axis(v, rank, node, false))
                .collect::<Result<_, _>>()?,
        };
        if (1..axes.len()).any(|i| axes[..i].contains(&axes[i])) {
            return Err(node.error(format!("axes {axes:?} name an axis twice")));
        }
        let scales: Option<Vec<f32>> = match &spec.scales_attr {
            Some(s) => Some(s.clone()),
            None => self
                .float_const(node, spec.scales_input)
                .and_then(|c| c.as_f32())
                .filter(|s| !s.is_empty())
                .map(<[f32]>::to_vec),
        };
        let sizes = if spec.scales_input == 2 {
            self.ints(node, 3, "sizes")?
        } else {
            None
        };
        let given = node.input(spec.scales_input).is_some_and(|n| !n.is_empty());
        if scales.is_none() && given && self.float_const(node, spec.scales_input).is_none() {
            return Err(node.error("the scales must be a constant"));
        }
        let mut out = x.clone();
        let mut per_axis_scale = vec![1.0f64; rank];
        match (scales, sizes) {
            (Some(s), None) => {
                if s.len() != axes.len() {
                    return Err(node.error(format!(
                        "scales {s:?} need one value per axis ({})",
                        axes.len()
                    )));
                }
                for (&a, &sc) in axes.iter().zip(&s) {
                    if !(sc > 0.0 && sc.is_finite()) {
                        return Err(node.error(format!("scale {sc} must be positive")));
                    }
                    let len = (x[a] as f64 * sc as f64).floor();
                    if len >= usize::MAX as f64 {
                        return Err(node.error(format!("scale {sc} makes axis {a} too long")));
                    }
                    out[a] = len as usize;
                    per_axis_scale[a] = sc as f64;
                }
            }
            (None, Some(z)) => {
                if z.len() != axes.len() {
                    return Err(node.error(format!(
                        "sizes {z:?} need one value per axis ({})",
                        axes.len()
                    )));
                }
                for (&a, &n) in axes.iter().zip(&z) {
                    out[a] = usize::try_from(n)
                        .map_err(|_| node.error(format!("size {n} is negative")))?;
                    per_axis_scale[a] = out[a] as f64 / x[a].max(1) as f64;
                }
            }
            _ => return Err(node.error("exactly one of scales and sizes is required")),
        }
        if out.iter().zip(&x).any(|(&o, &i)| o > 0 && i == 0) {
            return Err(node.error(format!("cannot resize an empty axis of {x:?}")));
        }
        // The axes are resized one after another: every intermediate tensor, not only the
        // output, must be addressable, and the taps (one per output cell of an axis) are
        // allocated fallibly.
        let mut shape = x.clone();
        let mut order: Vec<usize> = (0..rank).collect();
        order.sort_by(|&a, &b| {
            let r = |d: usize| out[d] as f64 / x[d].max(1) as f64;
            r(a).total_cmp(&r(b))
        });
        // In the executor's order: shrinking axes first.
        for d in order {
            shape[d] = out[d];
            if cnn_tensor::element_count(&shape).is_err()
                || (out[d] > 0 && out[d] > isize::MAX as usize / 32)
            {
                return Err(node.error(format!("resizing {x:?} to {out:?} is too large")));
            }
        }
        let mut all = Vec::with_capacity(rank);
        for d in 0..rank {
            let same = out[d] == x[d] && per_axis_scale[d] == 1.0;
            all.push(if same {
                Vec::new()
            } else {
                taps(spec, x[d], out[d], per_axis_scale[d]).ok_or_else(|| {
                    node.error(format!("no memory for the {} taps of axis {d}", out[d]))
                })?
            });
        }
        let taps = all;
        let mut l = Lowered::new(out, Op::Resize { in_shape: x, taps });
        // An roi or scales stored as an initializer is held like Clip's bounds: counted.
        l.params = self.claim(node, &[1, 2], &[]);
        Ok(l)
    }
}
