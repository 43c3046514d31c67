//! Lowering a model file into the engine's graph: for each layer of a [`ModelSpec`], the
//! shapes it reads and writes, its graph op (convolutions resolve to [`Conv2dGeometry`]), the
//! weight tensors it owns — graph constants named `<layer>.<param>`, the weight file's keys —
//! the Keras-style formula of its count (`(3*3*32+1)*64`), the trainable split and MACs.
//!
//! Every error is a [`ModelError`] naming the file, line, layer and its input shape (an
//! impossible window, a dense layer on a feature map, mismatched `add` inputs). Shapes here
//! are written without the batch, as the messages print them; the graph gets them with the
//! batch the lowering is asked for.

mod parts;

use crate::error::ModelError;
use crate::format::shape_text;
use crate::spec::{ActivationKind, LayerKind, LayerSpec, ModelSpec, Source, WindowSpec};
use cnn_conv::{Pool2dGeometry, Pool2dSpec};
use cnn_graph::shape::pool_geometry;
use cnn_graph::{BinaryOp, Epilogue, Expr, Graph, Node, Op, Param, ValueId};
use parts::{
    accounting, activation_op, bias_tensor, concat_shape, weights_plus_bias, with_multiplier, Ctx,
};

/// A feature shape without the batch.
type Shape = Vec<usize>;

/// A weight tensor a layer owns, before it becomes a graph constant.
struct Owned {
    name: &'static str,
    shape: Vec<usize>,
    trainable: bool,
    fan_in: usize,
    fan_out: usize,
}

/// What one layer lowers to, shapes without the batch.
struct Planned {
    op: Op,
    output_shape: Shape,
    params: Vec<Owned>,
    formula: Option<Expr>,
    macs: u64,
}

/// The kernel epilogue of a layer's `activation` key.
fn epilogue(a: ActivationKind) -> Epilogue {
    Epilogue {
        act: a.fused(),
        softmax: a == ActivationKind::Softmax,
    }
}

/// `[batch, dims…]`.
fn batched(batch: usize, shape: &[usize]) -> Vec<usize> {
    let mut s = Vec::with_capacity(shape.len() + 1);
    s.push(batch);
    s.extend_from_slice(shape);
    s
}

/// Lowers every layer of `spec` at batch `batch` (the input's element count is checked by
/// the caller).
pub(crate) fn lower(spec: &ModelSpec, batch: usize) -> Result<Graph, ModelError> {
    let mut graph = Graph::new(spec.name.clone());
    let input = graph.add_input("input", batched(batch, &spec.input.shape()));
    for layer in &spec.layers {
        let sources: Vec<ValueId> = layer
            .inputs
            .iter()
            .map(|s| match s {
                Source::Input => input,
                Source::Layer(i) => graph.nodes[*i].output,
            })
            .collect();
        let input_shapes: Vec<Shape> = sources
            .iter()
            .map(|&v| graph.values[v].shape[1..].to_vec())
            .collect();
        let planned = plan_layer(spec, layer, input_shapes.clone(), batch)?;
        let ctx = Ctx::new(spec, layer, &input_shapes);
        check_batched(&ctx, &planned, batch)?;
        let mut node = Node::new(layer.name.clone(), layer.kind.type_name(), planned.op);
        node.inputs = sources.into_iter().map(Some).collect();
        for p in planned.params {
            let value = graph.add_constant(format!("{}.{}", layer.name, p.name), p.shape.clone());
            node.inputs.push(Some(value));
            node.params.push(Param {
                name: p.name.to_string(),
                value,
                shape: p.shape,
                trainable: p.trainable,
                fan_in: p.fan_in,
                fan_out: p.fan_out,
            });
        }
        node.input_shapes = input_shapes.iter().map(|s| batched(batch, s)).collect();
        node.output_shape = batched(batch, &planned.output_shape);
        node.formula = planned.formula;
        node.macs = planned.macs;
        (node.param_count, node.trainable, node.non_trainable) = accounting(&ctx, &node)?;
        graph.add_node(node, layer.name.clone());
    }
    if let Some(last) = graph.nodes.last() {
        graph.outputs.push(last.output);
    }
    Ok(graph)
}

/// At a batch above 1, the layer's output (and a separable layer's intermediate map) must
/// still be addressable (at batch 1 `plan_layer` checked it).
fn check_batched(ctx: &Ctx<'_>, planned: &Planned, batch: usize) -> Result<(), ModelError> {
    let mut shapes = vec![batched(batch, &planned.output_shape)];
    if let Op::Separable { depthwise: d, .. } = &planned.op {
        shapes.push(vec![batch, d.out_c, d.out_h, d.out_w]);
    }
    for s in shapes {
        if cnn_tensor::element_count(&s).is_err() {
            return Err(ctx.err(format!(
                "at batch {batch} the output {} has more values than this machine can address",
                shape_text(&s)
            )));
        }
    }
    Ok(())
}

fn plan_layer(
    spec: &ModelSpec,
    layer: &LayerSpec,
    input_shapes: Vec<Shape>,
    batch: usize,
) -> Result<Planned, ModelError> {
    let ctx = Ctx::new(spec, layer, &input_shapes);
    let first = input_shapes[0].clone();
    let mut params: Vec<Owned> = Vec::new();
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
            params.push(Owned {
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
                    batch,
                    epilogue: epilogue(*activation),
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
            params.push(Owned {
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
                    batch,
                    epilogue: epilogue(*activation),
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
            params.push(Owned {
                name: "depthwise_weight",
                shape: vec![mid, 1, kh, kw],
                trainable: true,
                fan_in: c * kh * kw,
                fan_out: depth_multiplier * kh * kw,
            });
            params.push(Owned {
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
                    batch,
                    epilogue: epilogue(*activation),
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
            params.push(Owned {
                name: "weight",
                shape: vec![positions, *filters, k],
                trainable: true,
                fan_in: k * positions,
                fan_out: filters * positions,
            });
            if *use_bias {
                params.push(Owned {
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
                    batch,
                    epilogue: epilogue(*activation),
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
            params.push(Owned {
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
                    m: batch,
                    k: in_features,
                    n: *units,
                    epilogue: epilogue(*activation),
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
            (Op::Alias, vec![n as usize])
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
            let max = matches!(layer.kind, LayerKind::MaxPool2d { .. });
            (
                Op::Pool(pool_geometry(&g, batch, max)),
                vec![c, g.out_h, g.out_w],
            )
        }
        LayerKind::GlobalAvgPool2d => {
            let (c, h, w) = ctx.map(&first)?;
            (
                Op::GlobalPool {
                    max: false,
                    planes: batch * c,
                    spatial: h * w,
                },
                vec![c],
            )
        }
        LayerKind::GlobalMaxPool2d => {
            let (c, h, w) = ctx.map(&first)?;
            (
                Op::GlobalPool {
                    max: true,
                    planes: batch * c,
                    spatial: h * w,
                },
                vec![c],
            )
        }
        LayerKind::ChannelSum => {
            let (c, h, w) = ctx.map(&first)?;
            (
                Op::ChannelSum {
                    batch,
                    channels: c,
                    spatial: h * w,
                },
                vec![1, h, w],
            )
        }
        LayerKind::Dropout { .. } => (Op::Alias, first.clone()),
        LayerKind::Activation { activation } => {
            (activation_op(*activation, batch, &first), first.clone())
        }
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
                params.push(Owned {
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
                    inner: spatial,
                    epsilon: *epsilon as f32,
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
            (Op::Binary(BinaryOp::Add), first.clone())
        }
        LayerKind::Concat => {
            let shape = concat_shape(&ctx, &input_shapes)?;
            (Op::Concat { axis: 1 }, shape)
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
    Ok(Planned {
        op,
        output_shape,
        params,
        formula,
        macs,
    })
}
