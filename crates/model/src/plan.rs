//! Shape inference and symbolic accounting: turns a [`ModelSpec`] into a [`ModelPlan`] — for
//! every layer its input and output shapes, the resolved operation (convolution geometry,
//! pooling window, …), the parameter tensors it will own, its parameter count (evaluated from
//! the formula it prints), trainable/non-trainable split and MACs.
//!
//! Nothing here allocates weights: a 10^12-parameter model is planned and counted in
//! microseconds. An impossible shape (a window larger than its padded input, a dense layer on a
//! feature map, mismatched `add` inputs) is an error naming the layer and its input shape.
//!
//! MACs rule (stated in `docs/parameters.md`): multiply-accumulates of one image, bias additions
//! not counted; conv `Cout*OH*OW*(Cin/groups)*KH*KW`, dense `in*units`; layers without weights
//! (pooling, activations, batchnorm, add) count 0.

use crate::error::{ModelError, ShapeError};
use crate::format::shape_text;
use crate::formula::Expr;
use crate::spec::{ActivationKind, LayerKind, LayerSpec, ModelSpec, Source, WindowSpec};
use cnn_conv::{Conv2dGeometry, Conv2dSpec, Pool2dGeometry, Pool2dSpec};

/// A feature shape without the batch: `[C, H, W]` for maps, `[n]` for vectors.
pub type Shape = Vec<usize>;

/// One weight tensor a layer owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamTensor {
    /// `weight`, `bias`, `gamma`, … (the weight file names it `<layer>.<name>`).
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub trainable: bool,
    /// Keras-style fan-in and fan-out used by Glorot initialisation (0 for non-kernels).
    pub fan_in: usize,
    pub fan_out: usize,
}

impl ParamTensor {
    /// Number of elements (checked when the plan is built).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The operation a layer performs, resolved against its input shape.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Conv {
        geom: Conv2dGeometry,
        bias: bool,
        activation: ActivationKind,
    },
    Separable {
        depthwise: Conv2dGeometry,
        pointwise: Conv2dGeometry,
        bias: bool,
        activation: ActivationKind,
    },
    Local {
        geom: Conv2dGeometry,
        bias: bool,
        activation: ActivationKind,
    },
    Dense {
        in_features: usize,
        units: usize,
        bias: bool,
        activation: ActivationKind,
    },
    MaxPool(Pool2dGeometry),
    AvgPool(Pool2dGeometry),
    GlobalAvgPool {
        channels: usize,
        spatial: usize,
    },
    GlobalMaxPool {
        channels: usize,
        spatial: usize,
    },
    ChannelSum {
        channels: usize,
        spatial: usize,
    },
    /// Flatten and dropout: the values pass through unchanged (only the shape changes).
    Identity,
    Activation(ActivationKind),
    BatchNorm {
        channels: usize,
        spatial: usize,
        epsilon: f64,
    },
    Add,
    Concat,
}

/// Everything known about one layer before any weight exists.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPlan {
    pub name: String,
    pub type_name: &'static str,
    pub inputs: Vec<Source>,
    pub input_shapes: Vec<Shape>,
    pub output_shape: Shape,
    pub op: Op,
    pub params: Vec<ParamTensor>,
    /// The formula whose value is the parameter count (`None` for parameter-free layers).
    pub formula: Option<Expr>,
    pub param_count: u64,
    pub trainable: u64,
    pub non_trainable: u64,
    pub macs: u64,
}

impl LayerPlan {
    /// The formula as text, `-` for parameter-free layers.
    pub fn formula_text(&self) -> String {
        self.formula
            .as_ref()
            .map(|f| f.to_string())
            .unwrap_or_else(|| "-".to_string())
    }

    /// Output elements of one image.
    pub fn output_len(&self) -> u64 {
        self.output_shape.iter().map(|&d| d as u64).product()
    }
}

/// A fully planned model: shapes, operations and counts for every layer.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPlan {
    pub spec: ModelSpec,
    pub layers: Vec<LayerPlan>,
}

impl ModelPlan {
    /// Total parameters (exact).
    pub fn total_params(&self) -> u64 {
        self.layers.iter().map(|l| l.param_count).sum()
    }

    /// Trainable parameters.
    pub fn trainable_params(&self) -> u64 {
        self.layers.iter().map(|l| l.trainable).sum()
    }

    /// Non-trainable parameters (batchnorm moving statistics).
    pub fn non_trainable_params(&self) -> u64 {
        self.layers.iter().map(|l| l.non_trainable).sum()
    }

    /// Multiply-accumulates of one image.
    pub fn total_macs(&self) -> u64 {
        self.layers.iter().map(|l| l.macs).sum()
    }

    /// Bytes of f32 weights the model needs.
    pub fn weight_bytes(&self) -> u128 {
        self.total_params() as u128 * 4
    }

    /// The model's input shape `[C, H, W]`.
    pub fn input_shape(&self) -> Shape {
        self.spec.input.shape()
    }

    /// The shape of the last layer's output.
    pub fn output_shape(&self) -> &[usize] {
        self.layers
            .last()
            .map(|l| l.output_shape.as_slice())
            .unwrap_or(&[])
    }

    /// True when the last layer that changes values applies softmax (trailing dropout and
    /// flatten layers pass values through), so the outputs are probabilities.
    pub fn ends_in_softmax(&self) -> bool {
        let last = self
            .layers
            .iter()
            .rev()
            .find(|l| !matches!(l.op, Op::Identity));
        last.is_some_and(|l| match &l.op {
            Op::Conv { activation, .. }
            | Op::Separable { activation, .. }
            | Op::Local { activation, .. }
            | Op::Dense { activation, .. }
            | Op::Activation(activation) => *activation == ActivationKind::Softmax,
            _ => false,
        })
    }

    /// The name of the model.
    pub fn name(&self) -> &str {
        &self.spec.name
    }
}

/// Plans every layer of `spec`.
pub fn plan(spec: &ModelSpec) -> Result<ModelPlan, ModelError> {
    let input_shape = spec.input.shape();
    if cnn_tensor::element_count(&input_shape).is_err() {
        return Err(ModelError::Syntax {
            path: spec.path.clone(),
            line: 1,
            column: 1,
            message: format!(
                "the input {} has more values than this machine can address",
                shape_text(&input_shape)
            ),
        });
    }
    let mut layers: Vec<LayerPlan> = Vec::with_capacity(spec.layers.len());
    for layer in &spec.layers {
        let input_shapes: Vec<Shape> = layer
            .inputs
            .iter()
            .map(|s| match s {
                Source::Input => input_shape.clone(),
                Source::Layer(i) => layers[*i].output_shape.clone(),
            })
            .collect();
        let planned = plan_layer(spec, layer, input_shapes)?;
        layers.push(planned);
    }
    check_totals(spec, &layers)?;
    check_labels(spec, &layers)?;
    Ok(ModelPlan {
        spec: spec.clone(),
        layers,
    })
}

/// `labels` must name every class of a vector output, no more, no fewer.
fn check_labels(spec: &ModelSpec, layers: &[LayerPlan]) -> Result<(), ModelError> {
    let (Some(labels), Some(last)) = (&spec.labels, layers.last()) else {
        return Ok(());
    };
    match last.output_shape.as_slice() {
        [n] if *n == labels.len() => Ok(()),
        shape => Err(ModelError::Syntax {
            path: spec.path.clone(),
            line: 1,
            column: 1,
            message: format!(
                "`labels` names {} classes but the model's output is {}",
                labels.len(),
                shape_text(shape)
            ),
        }),
    }
}

/// Checks that the model-wide totals (parameters, MACs) fit in `u64`.
fn check_totals(spec: &ModelSpec, layers: &[LayerPlan]) -> Result<(), ModelError> {
    let mut params = 0u64;
    let mut macs = 0u64;
    for l in layers {
        let sum = params
            .checked_add(l.param_count)
            .zip(macs.checked_add(l.macs));
        let Some((p, m)) = sum else {
            return Err(ModelError::Shape(Box::new(ShapeError {
                path: spec.path.clone(),
                line: spec
                    .layers
                    .iter()
                    .find(|s| s.name == l.name)
                    .map_or(0, |s| s.line),
                layer: l.name.clone(),
                kind: l.type_name.to_string(),
                input: shape_text(&l.input_shapes[0]),
                message: "the model's total parameter or MAC count overflows 64 bits".to_string(),
            })));
        };
        params = p;
        macs = m;
    }
    Ok(())
}

/// Builds a shape error for `layer`.
struct Ctx<'a> {
    spec: &'a ModelSpec,
    layer: &'a LayerSpec,
    input: String,
}

impl Ctx<'_> {
    fn err(&self, message: impl Into<String>) -> ModelError {
        ModelError::Shape(Box::new(ShapeError {
            path: self.spec.path.clone(),
            line: self.layer.line,
            layer: self.layer.name.clone(),
            kind: self.layer.kind.type_name().to_string(),
            input: self.input.clone(),
            message: message.into(),
        }))
    }

    fn map(&self, shape: &[usize]) -> Result<(usize, usize, usize), ModelError> {
        match shape {
            [c, h, w] => Ok((*c, *h, *w)),
            _ => Err(self.err(format!(
                "{} needs a feature map (channels x height x width), but its input is a vector \
                 of {}",
                self.layer.kind.type_name(),
                shape_text(shape)
            ))),
        }
    }

    fn checked(&self, v: Option<u64>, what: &str) -> Result<u64, ModelError> {
        v.ok_or_else(|| self.err(format!("the {what} overflows 64 bits")))
    }

    fn conv_geom(
        &self,
        c: usize,
        h: usize,
        w: usize,
        filters: usize,
        groups: usize,
        window: &WindowSpec,
    ) -> Result<Conv2dGeometry, ModelError> {
        let spec = Conv2dSpec {
            filters,
            kernel: window.kernel,
            stride: window.stride,
            dilation: window.dilation,
            padding: window.padding,
            groups,
        };
        Conv2dGeometry::resolve(c, h, w, &spec).map_err(|e| self.err(e.to_string()))
    }
}

fn bias_tensor(len: usize) -> ParamTensor {
    ParamTensor {
        name: "bias",
        shape: vec![len],
        trainable: true,
        fan_in: 0,
        fan_out: 0,
    }
}

/// Appends the depth multiplier to `factors` unless it is 1 (Keras' default, left implicit).
fn with_multiplier(mut factors: Vec<Expr>, depth_multiplier: usize) -> Vec<Expr> {
    if depth_multiplier != 1 {
        factors.push(Expr::n(depth_multiplier));
    }
    factors
}

/// `(a*b*…+1)*k` with a bias, `a*b*…*k` without.
fn weights_plus_bias(per_output: Vec<Expr>, outputs: Vec<Expr>, bias: bool) -> Expr {
    let inner = if bias {
        Expr::sum(vec![Expr::product(per_output), Expr::n(1)])
    } else {
        Expr::product(per_output)
    };
    let mut factors = vec![inner];
    factors.extend(outputs);
    Expr::product(factors)
}

fn plan_layer(
    spec: &ModelSpec,
    layer: &LayerSpec,
    input_shapes: Vec<Shape>,
) -> Result<LayerPlan, ModelError> {
    let ctx = Ctx {
        spec,
        layer,
        input: input_shapes
            .iter()
            .map(|s| shape_text(s))
            .collect::<Vec<_>>()
            .join(" and "),
    };
    let first = input_shapes[0].clone();
    let mut params: Vec<ParamTensor> = Vec::new();
    let mut formula: Option<Expr> = None;
    let mut macs: u64 = 0;
    let (op, output_shape): (Op, Shape) = match &layer.kind {
        LayerKind::Conv2d {
            filters,
            window,
            groups,
            use_bias,
            activation,
        } => {
            let (c, h, w) = ctx.map(&first)?;
            let g = ctx.conv_geom(c, h, w, *filters, *groups, window)?;
            let [kh, kw] = window.kernel;
            params.push(ParamTensor {
                name: "weight",
                shape: vec![*filters, c / groups, kh, kw],
                trainable: true,
                fan_in: (c / groups) * kh * kw,
                fan_out: filters * kh * kw,
            });
            if *use_bias {
                params.push(bias_tensor(*filters));
            }
            formula = Some(weights_plus_bias(
                vec![Expr::n(kh), Expr::n(kw), Expr::n(c / groups)],
                vec![Expr::n(*filters)],
                *use_bias,
            ));
            macs = g.macs();
            (
                Op::Conv {
                    geom: g,
                    bias: *use_bias,
                    activation: *activation,
                },
                vec![*filters, g.out_h, g.out_w],
            )
        }
        LayerKind::DepthwiseConv2d {
            depth_multiplier,
            window,
            use_bias,
            activation,
        } => {
            let (c, h, w) = ctx.map(&first)?;
            let out_c = ctx.checked(
                (c as u64).checked_mul(*depth_multiplier as u64),
                "channel count",
            )? as usize;
            let g = ctx.conv_geom(c, h, w, out_c, c, window)?;
            let [kh, kw] = window.kernel;
            params.push(ParamTensor {
                name: "weight",
                shape: vec![out_c, 1, kh, kw],
                trainable: true,
                fan_in: c * kh * kw,
                fan_out: depth_multiplier * kh * kw,
            });
            if *use_bias {
                params.push(bias_tensor(out_c));
            }
            formula = Some(weights_plus_bias(
                vec![Expr::n(kh), Expr::n(kw)],
                with_multiplier(vec![Expr::n(c)], *depth_multiplier),
                *use_bias,
            ));
            macs = g.macs();
            (
                Op::Conv {
                    geom: g,
                    bias: *use_bias,
                    activation: *activation,
                },
                vec![out_c, g.out_h, g.out_w],
            )
        }
        LayerKind::SeparableConv2d {
            filters,
            depth_multiplier,
            window,
            use_bias,
            activation,
        } => {
            let (c, h, w) = ctx.map(&first)?;
            let mid = ctx.checked(
                (c as u64).checked_mul(*depth_multiplier as u64),
                "channel count",
            )? as usize;
            let dw = ctx.conv_geom(c, h, w, mid, c, window)?;
            let pw_window = WindowSpec {
                kernel: [1, 1],
                stride: [1, 1],
                padding: cnn_conv::Padding::Valid,
                dilation: [1, 1],
            };
            let pw = ctx.conv_geom(mid, dw.out_h, dw.out_w, *filters, 1, &pw_window)?;
            let [kh, kw] = window.kernel;
            params.push(ParamTensor {
                name: "depthwise_weight",
                shape: vec![mid, 1, kh, kw],
                trainable: true,
                fan_in: c * kh * kw,
                fan_out: depth_multiplier * kh * kw,
            });
            params.push(ParamTensor {
                name: "pointwise_weight",
                shape: vec![*filters, mid, 1, 1],
                trainable: true,
                fan_in: mid,
                fan_out: *filters,
            });
            if *use_bias {
                params.push(bias_tensor(*filters));
            }
            let mut pointwise = with_multiplier(vec![Expr::n(c)], *depth_multiplier);
            pointwise.push(Expr::n(*filters));
            let mut terms = vec![
                Expr::product(with_multiplier(
                    vec![Expr::n(kh), Expr::n(kw), Expr::n(c)],
                    *depth_multiplier,
                )),
                Expr::product(pointwise),
            ];
            if *use_bias {
                terms.push(Expr::n(*filters));
            }
            formula = Some(Expr::sum(terms));
            macs = ctx.checked(dw.macs().checked_add(pw.macs()), "MAC count")?;
            (
                Op::Separable {
                    depthwise: dw,
                    pointwise: pw,
                    bias: *use_bias,
                    activation: *activation,
                },
                vec![*filters, pw.out_h, pw.out_w],
            )
        }
        LayerKind::LocallyConnected2d {
            filters,
            window,
            use_bias,
            activation,
        } => {
            let (c, h, w) = ctx.map(&first)?;
            let g = ctx.conv_geom(c, h, w, *filters, 1, window)?;
            let [kh, kw] = window.kernel;
            let positions = g.out_h * g.out_w;
            let k = c * kh * kw;
            ctx.checked(
                (positions as u64)
                    .checked_mul(*filters as u64)
                    .and_then(|x| x.checked_mul(k as u64))
                    .filter(|&x| x <= usize::MAX as u64),
                "weight count",
            )?;
            params.push(ParamTensor {
                name: "weight",
                shape: vec![positions, *filters, k],
                trainable: true,
                fan_in: k * positions,
                fan_out: filters * positions,
            });
            if *use_bias {
                params.push(ParamTensor {
                    name: "bias",
                    shape: vec![*filters, g.out_h, g.out_w],
                    trainable: true,
                    fan_in: 0,
                    fan_out: 0,
                });
            }
            formula = Some(weights_plus_bias(
                vec![Expr::n(kh), Expr::n(kw), Expr::n(c)],
                vec![Expr::n(g.out_h), Expr::n(g.out_w), Expr::n(*filters)],
                *use_bias,
            ));
            macs = g.macs();
            (
                Op::Local {
                    geom: g,
                    bias: *use_bias,
                    activation: *activation,
                },
                vec![*filters, g.out_h, g.out_w],
            )
        }
        LayerKind::Dense {
            units,
            use_bias,
            activation,
        } => {
            let in_features = match first.as_slice() {
                [n] => *n,
                _ => {
                    return Err(ctx.err(format!(
                        "dense needs a vector, but its input is a feature map of {}; add a \
                         `flatten` (or `global_avgpool2d`) layer before it",
                        shape_text(&first)
                    )))
                }
            };
            params.push(ParamTensor {
                name: "weight",
                shape: vec![*units, in_features],
                trainable: true,
                fan_in: in_features,
                fan_out: *units,
            });
            if *use_bias {
                params.push(bias_tensor(*units));
            }
            formula = Some(weights_plus_bias(
                vec![Expr::n(in_features)],
                vec![Expr::n(*units)],
                *use_bias,
            ));
            macs = ctx.checked((in_features as u64).checked_mul(*units as u64), "MAC count")?;
            (
                Op::Dense {
                    in_features,
                    units: *units,
                    bias: *use_bias,
                    activation: *activation,
                },
                vec![*units],
            )
        }
        LayerKind::Flatten => {
            let n = ctx.checked(
                first
                    .iter()
                    .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
                    .filter(|&x| x <= usize::MAX as u64),
                "flattened size",
            )?;
            (Op::Identity, vec![n as usize])
        }
        LayerKind::MaxPool2d {
            pool,
            stride,
            padding,
        }
        | LayerKind::AvgPool2d {
            pool,
            stride,
            padding,
        } => {
            let (c, h, w) = ctx.map(&first)?;
            let g = Pool2dGeometry::resolve(
                c,
                h,
                w,
                &Pool2dSpec {
                    pool: *pool,
                    stride: *stride,
                    padding: *padding,
                },
            )
            .map_err(|e| ctx.err(e.to_string()))?;
            let shape = vec![c, g.out_h, g.out_w];
            if matches!(layer.kind, LayerKind::MaxPool2d { .. }) {
                (Op::MaxPool(g), shape)
            } else {
                (Op::AvgPool(g), shape)
            }
        }
        LayerKind::GlobalAvgPool2d => {
            let (c, h, w) = ctx.map(&first)?;
            (
                Op::GlobalAvgPool {
                    channels: c,
                    spatial: h * w,
                },
                vec![c],
            )
        }
        LayerKind::GlobalMaxPool2d => {
            let (c, h, w) = ctx.map(&first)?;
            (
                Op::GlobalMaxPool {
                    channels: c,
                    spatial: h * w,
                },
                vec![c],
            )
        }
        LayerKind::ChannelSum => {
            let (c, h, w) = ctx.map(&first)?;
            (
                Op::ChannelSum {
                    channels: c,
                    spatial: h * w,
                },
                vec![1, h, w],
            )
        }
        LayerKind::Dropout { .. } => (Op::Identity, first.clone()),
        LayerKind::Activation { activation } => (Op::Activation(*activation), first.clone()),
        LayerKind::BatchNorm { epsilon } => {
            let (channels, spatial) = match first.as_slice() {
                [c, h, w] => (*c, h * w),
                [n] => (*n, 1),
                _ => return Err(ctx.err("batchnorm needs a feature map or a vector")),
            };
            for (name, trainable) in [
                ("gamma", true),
                ("beta", true),
                ("moving_mean", false),
                ("moving_variance", false),
            ] {
                params.push(ParamTensor {
                    name,
                    shape: vec![channels],
                    trainable,
                    fan_in: 0,
                    fan_out: 0,
                });
            }
            formula = Some(Expr::product(vec![Expr::n(4), Expr::n(channels)]));
            (
                Op::BatchNorm {
                    channels,
                    spatial,
                    epsilon: *epsilon,
                },
                first.clone(),
            )
        }
        LayerKind::Add => {
            if let Some(other) = input_shapes.iter().find(|s| **s != first) {
                return Err(ctx.err(format!(
                    "add needs inputs of one shape, found {} and {}",
                    shape_text(&first),
                    shape_text(other)
                )));
            }
            (Op::Add, first.clone())
        }
        LayerKind::Concat => {
            let shape = concat_shape(&ctx, &input_shapes)?;
            (Op::Concat, shape)
        }
    };

    if cnn_tensor::element_count(&output_shape).is_err() {
        return Err(ctx.err(format!(
            "the output {} has more values than this machine can address",
            shape_text(&output_shape)
        )));
    }
    if output_shape.contains(&0) {
        return Err(ctx.err(format!(
            "the output shape {} is empty",
            shape_text(&output_shape)
        )));
    }
    let param_count = match &formula {
        Some(f) => ctx.checked(f.eval(), "parameter count")?,
        None => 0,
    };
    let mut trainable = 0u64;
    let mut non_trainable = 0u64;
    for p in &params {
        let len = ctx.checked(
            p.shape
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d as u64)),
            "parameter count",
        )?;
        if p.trainable {
            trainable += len;
        } else {
            non_trainable += len;
        }
    }
    Ok(LayerPlan {
        name: layer.name.clone(),
        type_name: layer.kind.type_name(),
        inputs: layer.inputs.clone(),
        input_shapes,
        output_shape,
        op,
        params,
        formula,
        param_count,
        trainable,
        non_trainable,
        macs,
    })
}

fn concat_shape(ctx: &Ctx<'_>, shapes: &[Shape]) -> Result<Shape, ModelError> {
    let first = &shapes[0];
    let mut total = 0usize;
    for s in shapes {
        let compatible = s.len() == first.len() && s[1..] == first[1..];
        if !compatible {
            return Err(ctx.err(format!(
                "concat joins channels, so the other dimensions must agree: {} vs {}",
                shape_text(first),
                shape_text(s)
            )));
        }
        total = total
            .checked_add(s[0])
            .ok_or_else(|| ctx.err("the concatenated channel count overflows"))?;
    }
    let mut out = first.clone();
    out[0] = total;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_model;

    fn plan_text(body: &str) -> Result<ModelPlan, ModelError> {
        let text = format!("name = \"t\"\n[input]\nchannels = 3\nheight = 32\nwidth = 32\n{body}");
        plan(&parse_model(&text, "t.toml")?)
    }

    #[test]
    fn conv_490_seed_001() {
        // 490 = 10*(4*4*3+1) — Keras Conv2D(10, (4,4)) on 32x32x3, seed 001.
        let p = plan_text("[[layers]]\ntype = \"conv2d\"\nfilters = 10\nkernel = 4\n").unwrap();
        let l = &p.layers[0];
        assert_eq!(l.output_shape, vec![10, 29, 29]);
        assert_eq!(l.param_count, 490);
        assert_eq!(l.formula_text(), "(4*4*3+1)*10");
        assert_eq!(l.macs, 10 * 29 * 29 * 3 * 16);
    }

    #[test]
    fn dense_on_a_map_is_an_error_naming_the_layer() {
        let e = plan_text("[[layers]]\ntype = \"dense\"\nunits = 4\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "t.toml:6: layer `dense_1` (dense) on input 3x32x32: dense needs a vector, but its \
             input is a feature map of 3x32x32; add a `flatten` (or `global_avgpool2d`) layer \
             before it"
        );
    }

    #[test]
    fn kernel_larger_than_input_is_an_error() {
        let e = plan_text("[[layers]]\ntype = \"conv2d\"\nfilters = 1\nkernel = 33\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("layer `conv2d_1` (conv2d)"), "{e}");
        assert!(e.contains("larger than the padded 32x32 input"), "{e}");
    }

    #[test]
    fn batchnorm_counts_moving_statistics_as_non_trainable() {
        let p = plan_text(
            "[[layers]]\ntype = \"conv2d\"\nfilters = 8\nkernel = 3\n[[layers]]\ntype = \"batchnorm\"\n",
        )
        .unwrap();
        let bn = &p.layers[1];
        assert_eq!(
            (bn.param_count, bn.trainable, bn.non_trainable),
            (32, 16, 16)
        );
        assert_eq!(p.non_trainable_params(), 16);
    }

    #[test]
    fn residual_and_concat_shapes() {
        let p = plan_text(
            "[[layers]]\ntype = \"conv2d\"\nfilters = 3\nkernel = 3\npadding = \"same\"\nname = \"a\"\n\
             [[layers]]\ntype = \"add\"\ninputs = [\"input\", \"a\"]\n\
             [[layers]]\ntype = \"concat\"\ninputs = [\"a\", \"add_1\", \"input\"]\n",
        )
        .unwrap();
        assert_eq!(p.layers[1].output_shape, vec![3, 32, 32]);
        assert_eq!(p.layers[2].output_shape, vec![9, 32, 32]);
        let e = plan_text(
            "[[layers]]\ntype = \"conv2d\"\nfilters = 4\nkernel = 3\nname = \"a\"\n\
             [[layers]]\ntype = \"add\"\ninputs = [\"input\", \"a\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("add needs inputs of one shape, found 3x32x32 and 4x30x30"),
            "{e}"
        );
    }

    #[test]
    fn absurd_input_sizes_are_errors_not_overflows() {
        let text = format!(
            "name = \"big\"\n[input]\nchannels = {m}\nheight = {m}\nwidth = 2\n\
             [[layers]]\ntype = \"channel_sum\"\n",
            m = u32::MAX
        );
        let e = plan(&parse_model(&text, "b.toml").unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("more values than this machine can address"),
            "{e}"
        );
    }

    #[test]
    fn labels_must_match_the_output() {
        let text = "name = \"l\"\nlabels = [\"a\", \"b\", \"c\"]\n[input]\nchannels = 1\nheight = 2\n\
                    width = 2\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 4\n\
                    activation = \"softmax\"\n[[layers]]\ntype = \"dropout\"\nrate = 0.1\n";
        let e = plan(&parse_model(text, "l.toml").unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`labels` names 3 classes but the model's output is 4"),
            "{e}"
        );
        let ok = text.replace("units = 4", "units = 3");
        let p = plan(&parse_model(&ok, "l.toml").unwrap()).unwrap();
        assert!(
            p.ends_in_softmax(),
            "dropout after softmax keeps probabilities"
        );
    }

    #[test]
    fn overflowing_counts_are_errors() {
        let text = "name = \"huge\"\n[input]\nchannels = 1\nheight = 1\nwidth = 1\n\
                    [[layers]]\ntype = \"flatten\"\n\
                    [[layers]]\ntype = \"dense\"\nunits = 4294967296\n\
                    [[layers]]\ntype = \"dense\"\nunits = 4294967296\n";
        let e = plan(&parse_model(text, "h.toml").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("overflows 64 bits"), "{e}");
    }
}
