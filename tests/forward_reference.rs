//! A whole model checked against an independent interpreter. The model is a graph that uses
//! every layer type (strided "same" conv, batchnorm, depthwise with a multiplier, a 1x1 conv,
//! add, separable, concat of maps and of vectors, max/avg pooling with padding, grouped and
//! dilated conv, locally connected, channel sum, global pooling, flatten, dense, softmax) on a
//! non-square input, with random weights *including biases and batchnorm statistics* so a bias
//! or layout bug cannot hide. The reference below shares nothing with the engine but the model
//! file: it recomputes padding itself (Keras "same" rule) and accumulates in f64.

use cnn::model::{LayerKind, Source};
use cnn::{random_input, Model};
use rand::{Rng, SeedableRng};

const MODEL: &str = r#"
name = "everything"
[input]
channels = 3
height = 9
width = 11

[[layers]]
type = "conv2d"
filters = 6
kernel = [3, 2]
stride = 2
padding = "same"
activation = "relu"

[[layers]]
type = "batchnorm"
epsilon = 0.01

[[layers]]
type = "depthwise_conv2d"
kernel = 3
depth_multiplier = 2
padding = "same"
activation = "tanh"

[[layers]]
type = "conv2d"
filters = 12
kernel = 1
inputs = "batchnorm_1"

[[layers]]
type = "add"
inputs = ["depthwise_conv2d_1", "conv2d_2"]

[[layers]]
type = "separable_conv2d"
filters = 4
kernel = 3
padding = 1

[[layers]]
type = "concat"
inputs = ["separable_conv2d_1", "conv2d_1"]

[[layers]]
type = "maxpool2d"
pool = 2
stride = 1
padding = "same"

[[layers]]
type = "avgpool2d"
pool = 3
stride = 2
padding = "same"

[[layers]]
type = "locally_connected2d"
filters = 3
kernel = 2
activation = "sigmoid"

[[layers]]
type = "flatten"

[[layers]]
type = "dense"
units = 5
activation = "softmax"

[[layers]]
type = "conv2d"
name = "grouped"
filters = 4
kernel = 2
dilation = 2
groups = 2
padding = "same"
inputs = "avgpool2d_1"

[[layers]]
type = "channel_sum"
name = "summed"
inputs = "grouped"

[[layers]]
type = "flatten"
inputs = "summed"

[[layers]]
type = "global_avgpool2d"
inputs = "grouped"

[[layers]]
type = "global_maxpool2d"
inputs = "grouped"

[[layers]]
type = "concat"
inputs = ["dense_1", "flatten_2", "global_avgpool2d_1", "global_maxpool2d_1"]

[[layers]]
type = "dropout"
rate = 0.5

[[layers]]
type = "activation"
activation = "softmax"
"#;

/// One image's activation: shape (C, H, W) or (n,) and values.
#[derive(Clone, Debug)]
struct A {
    shape: Vec<usize>,
    v: Vec<f64>,
}

impl A {
    fn at(&self, c: usize, y: isize, x: isize) -> f64 {
        let (h, w) = (self.shape[1] as isize, self.shape[2] as isize);
        if y < 0 || x < 0 || y >= h || x >= w {
            0.0
        } else {
            self.v[(c * h as usize + y as usize) * w as usize + x as usize]
        }
    }
}

/// Keras padding for one axis: (before, out).
fn pad(
    input: usize,
    k: usize,
    s: usize,
    d: usize,
    rule: &cnn::conv::Padding,
    h_axis: bool,
) -> (usize, usize) {
    let eff = d * (k - 1) + 1;
    match rule {
        cnn::conv::Padding::Valid => (0, (input - eff) / s + 1),
        cnn::conv::Padding::Same => {
            let out = input.div_ceil(s);
            let total = ((out - 1) * s + eff).saturating_sub(input);
            (total / 2, out)
        }
        cnn::conv::Padding::Explicit { h, w } => {
            let p = if h_axis { *h } else { *w };
            (p, (input + 2 * p - eff) / s + 1)
        }
        other => panic!("unused here: {other:?}"),
    }
}

fn act(name: cnn::model::ActivationKind, v: &mut [f64], channels: usize) {
    use cnn::model::ActivationKind::*;
    match name {
        Linear => {}
        Relu => v.iter_mut().for_each(|x| *x = x.max(0.0)),
        Sigmoid => v.iter_mut().for_each(|x| *x = 1.0 / (1.0 + (-*x).exp())),
        Tanh => v.iter_mut().for_each(|x| *x = x.tanh()),
        Softmax => {
            let inner = v.len() / channels;
            for p in 0..inner {
                let m = (0..channels)
                    .map(|c| v[c * inner + p])
                    .fold(f64::MIN, f64::max);
                let s: f64 = (0..channels).map(|c| (v[c * inner + p] - m).exp()).sum();
                for c in 0..channels {
                    v[c * inner + p] = (v[c * inner + p] - m).exp() / s;
                }
            }
        }
    }
}

/// Generic grouped, dilated, strided convolution with weights [k, c/g, kh, kw].
#[allow(clippy::too_many_arguments)]
fn conv(
    x: &A,
    w: &[f32],
    b: Option<&[f32]>,
    k: usize,
    g: usize,
    kern: [usize; 2],
    st: [usize; 2],
    dil: [usize; 2],
    rule: &cnn::conv::Padding,
) -> A {
    let (c, h, wd) = (x.shape[0], x.shape[1], x.shape[2]);
    let (pt, oh) = pad(h, kern[0], st[0], dil[0], rule, true);
    let (pl, ow) = pad(wd, kern[1], st[1], dil[1], rule, false);
    let (cg, kg) = (c / g, k / g);
    let mut v = vec![0.0; k * oh * ow];
    for o in 0..k {
        let grp = o / kg;
        for y in 0..oh {
            for xx in 0..ow {
                let mut s = b.map_or(0.0, |b| b[o] as f64);
                for ci in 0..cg {
                    for i in 0..kern[0] {
                        for j in 0..kern[1] {
                            let iy = (y * st[0] + i * dil[0]) as isize - pt as isize;
                            let ix = (xx * st[1] + j * dil[1]) as isize - pl as isize;
                            let wv = w[((o * cg + ci) * kern[0] + i) * kern[1] + j] as f64;
                            s += wv * x.at(grp * cg + ci, iy, ix);
                        }
                    }
                }
                v[(o * oh + y) * ow + xx] = s;
            }
        }
    }
    A {
        shape: vec![k, oh, ow],
        v,
    }
}

/// Max or average pooling; padded cells never take part.
fn pool(x: &A, p: [usize; 2], st: [usize; 2], rule: &cnn::conv::Padding, max: bool) -> A {
    let (c, h, w) = (x.shape[0], x.shape[1], x.shape[2]);
    let (pt, oh) = pad(h, p[0], st[0], 1, rule, true);
    let (pl, ow) = pad(w, p[1], st[1], 1, rule, false);
    let mut v = Vec::new();
    for ch in 0..c {
        for y in 0..oh {
            for xx in 0..ow {
                let mut cells = Vec::new();
                for i in 0..p[0] {
                    for j in 0..p[1] {
                        let iy = (y * st[0] + i) as isize - pt as isize;
                        let ix = (xx * st[1] + j) as isize - pl as isize;
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                            cells.push(x.at(ch, iy, ix));
                        }
                    }
                }
                v.push(if max {
                    cells.iter().cloned().fold(f64::MIN, f64::max)
                } else {
                    cells.iter().sum::<f64>() / cells.len() as f64
                });
            }
        }
    }
    A {
        shape: vec![c, oh, ow],
        v,
    }
}

fn reference(m: &Model, image: &[f32]) -> Vec<f64> {
    let spec = &m.plan.spec;
    let weights = m.weights().unwrap();
    let input = A {
        shape: spec.input.shape(),
        v: image.iter().map(|&x| x as f64).collect(),
    };
    let mut outs: Vec<A> = Vec::new();
    for (i, layer) in spec.layers.iter().enumerate() {
        let ins: Vec<A> = layer
            .inputs
            .iter()
            .map(|s| match s {
                Source::Input => input.clone(),
                Source::Layer(j) => outs[*j].clone(),
            })
            .collect();
        let x = &ins[0];
        let lw = &weights.layers[i];
        let get = |n: &str| lw.get(n).unwrap();
        let bias = |on: bool| if on { Some(get("bias")) } else { None };
        let out = match &layer.kind {
            LayerKind::Conv2d {
                filters,
                window: wd,
                groups,
                use_bias,
                activation,
            } => {
                let mut o = conv(
                    x,
                    get("weight"),
                    bias(*use_bias),
                    *filters,
                    *groups,
                    wd.kernel,
                    wd.stride,
                    wd.dilation,
                    &wd.padding,
                );
                act(*activation, &mut o.v, *filters);
                o
            }
            LayerKind::DepthwiseConv2d {
                depth_multiplier,
                window: wd,
                use_bias,
                activation,
            } => {
                let c = x.shape[0];
                let mut o = conv(
                    x,
                    get("weight"),
                    bias(*use_bias),
                    c * depth_multiplier,
                    c,
                    wd.kernel,
                    wd.stride,
                    wd.dilation,
                    &wd.padding,
                );
                act(*activation, &mut o.v, c * depth_multiplier);
                o
            }
            LayerKind::SeparableConv2d {
                filters,
                depth_multiplier,
                window: wd,
                use_bias,
                activation,
            } => {
                let c = x.shape[0];
                let mid = conv(
                    x,
                    get("depthwise_weight"),
                    None,
                    c * depth_multiplier,
                    c,
                    wd.kernel,
                    wd.stride,
                    wd.dilation,
                    &wd.padding,
                );
                let mut o = conv(
                    &mid,
                    get("pointwise_weight"),
                    bias(*use_bias),
                    *filters,
                    1,
                    [1, 1],
                    [1, 1],
                    [1, 1],
                    &cnn::conv::Padding::Valid,
                );
                act(*activation, &mut o.v, *filters);
                o
            }
            LayerKind::LocallyConnected2d {
                filters,
                window: wd,
                use_bias,
                activation,
            } => {
                let (c, h, w) = (x.shape[0], x.shape[1], x.shape[2]);
                let [kh, kw] = wd.kernel;
                let (pt, oh) = pad(h, kh, wd.stride[0], 1, &wd.padding, true);
                let (pl, ow) = pad(w, kw, wd.stride[1], 1, &wd.padding, false);
                let wt = get("weight");
                let k = c * kh * kw;
                let mut v = vec![0.0; filters * oh * ow];
                for f in 0..*filters {
                    for y in 0..oh {
                        for xx in 0..ow {
                            let p = y * ow + xx;
                            let mut s = if *use_bias {
                                get("bias")[(f * oh + y) * ow + xx] as f64
                            } else {
                                0.0
                            };
                            for ci in 0..c {
                                for i in 0..kh {
                                    for j in 0..kw {
                                        let iy = (y * wd.stride[0] + i) as isize - pt as isize;
                                        let ix = (xx * wd.stride[1] + j) as isize - pl as isize;
                                        s += wt[(p * filters + f) * k + (ci * kh + i) * kw + j]
                                            as f64
                                            * x.at(ci, iy, ix);
                                    }
                                }
                            }
                            v[(f * oh + y) * ow + xx] = s;
                        }
                    }
                }
                act(*activation, &mut v, *filters);
                A {
                    shape: vec![*filters, oh, ow],
                    v,
                }
            }
            LayerKind::Dense {
                units,
                use_bias,
                activation,
            } => {
                let wt = get("weight");
                let n = x.v.len();
                let mut v: Vec<f64> = (0..*units)
                    .map(|u| {
                        let b = if *use_bias {
                            get("bias")[u] as f64
                        } else {
                            0.0
                        };
                        b + (0..n).map(|j| wt[u * n + j] as f64 * x.v[j]).sum::<f64>()
                    })
                    .collect();
                act(*activation, &mut v, *units);
                A {
                    shape: vec![*units],
                    v,
                }
            }
            LayerKind::Flatten => A {
                shape: vec![x.v.len()],
                v: x.v.clone(),
            },
            LayerKind::MaxPool2d {
                pool: p,
                stride,
                padding,
            } => pool(x, *p, *stride, padding, true),
            LayerKind::AvgPool2d {
                pool: p,
                stride,
                padding,
            } => pool(x, *p, *stride, padding, false),
            LayerKind::GlobalAvgPool2d | LayerKind::GlobalMaxPool2d => {
                let c = x.shape[0];
                let s = x.v.len() / c;
                let max = matches!(layer.kind, LayerKind::GlobalMaxPool2d);
                let v =
                    x.v.chunks(s)
                        .map(|ch| {
                            if max {
                                ch.iter().cloned().fold(f64::MIN, f64::max)
                            } else {
                                ch.iter().sum::<f64>() / s as f64
                            }
                        })
                        .collect();
                A { shape: vec![c], v }
            }
            LayerKind::ChannelSum => {
                let s = x.shape[1] * x.shape[2];
                let v = (0..s)
                    .map(|p| (0..x.shape[0]).map(|c| x.v[c * s + p]).sum())
                    .collect();
                A {
                    shape: vec![1, x.shape[1], x.shape[2]],
                    v,
                }
            }
            LayerKind::Dropout { .. } => x.clone(),
            LayerKind::Activation { activation } => {
                let mut o = x.clone();
                act(*activation, &mut o.v, x.shape[0]);
                o
            }
            LayerKind::BatchNorm { epsilon } => {
                let c = x.shape[0];
                let s = x.v.len() / c;
                let (g, b, mu, var) = (
                    get("gamma"),
                    get("beta"),
                    get("moving_mean"),
                    get("moving_variance"),
                );
                let v = (0..x.v.len())
                    .map(|i| {
                        let ch = i / s;
                        g[ch] as f64 * (x.v[i] - mu[ch] as f64) / (var[ch] as f64 + epsilon).sqrt()
                            + b[ch] as f64
                    })
                    .collect();
                A {
                    shape: x.shape.clone(),
                    v,
                }
            }
            LayerKind::Add => {
                let mut o = x.clone();
                for other in &ins[1..] {
                    o.v.iter_mut().zip(&other.v).for_each(|(a, b)| *a += b);
                }
                o
            }
            LayerKind::Concat => {
                let mut shape = x.shape.clone();
                shape[0] = ins.iter().map(|a| a.shape[0]).sum();
                A {
                    shape,
                    v: ins.iter().flat_map(|a| a.v.clone()).collect(),
                }
            }
        };
        outs.push(out);
    }
    outs.pop().unwrap().v
}

#[test]
fn every_layer_type_matches_an_independent_interpreter() {
    let spec = cnn::model::parse_model(MODEL, "everything.toml").unwrap();
    let mut m = Model::plan_spec(&spec).unwrap();
    assert_eq!(m.plan.output_shape(), &[5 + 9 + 4 + 4]);
    m.allocate(5, cnn::DEFAULT_MAX_WEIGHT_BYTES).unwrap();
    // Replace every buffer with random values (positive variances) so biases and statistics
    // take part.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    for layer in &mut m.weights_mut().unwrap().layers {
        for t in &mut layer.tensors {
            for v in &mut t.data {
                *v = if t.name == "moving_variance" {
                    rng.random_range(0.5..2.0)
                } else {
                    rng.random_range(-0.8..0.8)
                };
            }
        }
    }
    let x = random_input(&m.plan, 2, 11).unwrap();
    let y = m.forward(&x).unwrap();
    let per_in = x.len() / 2;
    let per_out = y.len() / 2;
    for b in 0..2 {
        let expected = reference(&m, &x.as_slice()[b * per_in..(b + 1) * per_in]);
        let got = &y.as_slice()[b * per_out..(b + 1) * per_out];
        assert_eq!(expected.len(), got.len());
        for (i, (e, g)) in expected.iter().zip(got).enumerate() {
            // f32 engine vs f64 reference through ~20 layers of sums of at most a few hundred
            // terms of magnitude < 10: 1e-4 absolute is far above rounding, far below any bug.
            assert!(
                (e - *g as f64).abs() < 1e-4,
                "item {b} output {i}: reference {e}, engine {g}"
            );
        }
        let s: f64 = got.iter().map(|&v| v as f64).sum();
        assert!((s - 1.0).abs() < 1e-5);
    }
}
