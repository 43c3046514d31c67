//! The plan of a model file: its [`ModelSpec`] lowered into the engine's one graph
//! ([`cnn_graph::Graph`], by [`crate::lower`]) — for every layer its input and output shapes,
//! the resolved operation, the parameter tensors it will own, its parameter count (evaluated
//! from the Keras-style formula it prints), trainable/non-trainable split and MACs.
//!
//! Nothing here allocates weights: a 10^12-parameter model is planned and counted in
//! microseconds. The plan is made at batch 1; graph shapes carry the batch as dimension 0,
//! which the model-file reports leave out (`(32, 26, 26)`, as Keras prints them). A forward
//! pass at batch N runs the same spec lowered at N ([`ModelPlan::at_batch`]).
//!
//! MACs rule (stated in `docs/parameters.md`): multiply-accumulates of one image, bias additions
//! not counted; conv `Cout*OH*OW*(Cin/groups)*KH*KW`, dense `in*units`; layers without weights
//! (pooling, activations, batchnorm, add) count 0.

use crate::error::{ModelError, ShapeError};
use crate::format::shape_text;
use crate::spec::ModelSpec;
use cnn_graph::Graph;

/// A feature shape without the batch: `[C, H, W]` for maps, `[n]` for vectors.
pub type Shape = Vec<usize>;

/// Everything known about one layer before any weight exists (a node of the graph; its shapes
/// carry the batch).
pub type LayerPlan = cnn_graph::Node;

/// One weight tensor a layer owns.
pub type ParamTensor = cnn_graph::Param;

/// A fully planned model: the spec and its graph at batch 1.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPlan {
    pub spec: ModelSpec,
    pub graph: Graph,
}

impl ModelPlan {
    /// The layers, in file order (one graph node each).
    pub fn layers(&self) -> &[LayerPlan] {
        &self.graph.nodes
    }

    /// Total parameters (exact).
    pub fn total_params(&self) -> u64 {
        self.graph.total_params()
    }

    /// Trainable parameters.
    pub fn trainable_params(&self) -> u64 {
        self.graph.trainable_params()
    }

    /// Non-trainable parameters (batchnorm moving statistics).
    pub fn non_trainable_params(&self) -> u64 {
        self.graph.non_trainable_params()
    }

    /// Multiply-accumulates of one image.
    pub fn total_macs(&self) -> u64 {
        self.graph.total_macs()
    }

    /// Bytes of f32 weights the model needs.
    pub fn weight_bytes(&self) -> u128 {
        self.graph.weight_bytes()
    }

    /// The model's input shape `[C, H, W]`.
    pub fn input_shape(&self) -> Shape {
        self.spec.input.shape()
    }

    /// The shape of the last layer's output, without the batch.
    pub fn output_shape(&self) -> &[usize] {
        self.graph
            .nodes
            .last()
            .map(|l| &l.output_shape[1..])
            .unwrap_or(&[])
    }

    /// True when the last layer that changes values applies softmax (trailing dropout,
    /// flatten and linear activation layers pass values through), so the outputs are
    /// probabilities.
    pub fn ends_in_softmax(&self) -> bool {
        self.graph.output_is_softmax(0)
    }

    /// The name of the model.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The same model's graph at batch `batch` (for a forward pass; the plan is at 1).
    pub fn at_batch(&self, batch: usize) -> Result<Graph, ModelError> {
        if batch == 1 {
            return Ok(self.graph.clone());
        }
        crate::lower::lower(&self.spec, batch)
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
    let graph = crate::lower::lower(spec, 1)?;
    check_totals(spec, &graph)?;
    check_labels(spec, &graph)?;
    Ok(ModelPlan {
        spec: spec.clone(),
        graph,
    })
}

/// `labels` must name every class of a vector output, no more, no fewer.
fn check_labels(spec: &ModelSpec, graph: &Graph) -> Result<(), ModelError> {
    let (Some(labels), Some(last)) = (&spec.labels, graph.nodes.last()) else {
        return Ok(());
    };
    match &last.output_shape[1..] {
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
fn check_totals(spec: &ModelSpec, graph: &Graph) -> Result<(), ModelError> {
    let mut params = 0u64;
    let mut macs = 0u64;
    for l in &graph.nodes {
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
                input: shape_text(&l.input_shapes[0][1..]),
                message: "the model's total parameter or MAC count overflows 64 bits".to_string(),
            })));
        };
        params = p;
        macs = m;
    }
    Ok(())
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
        let l = &p.layers()[0];
        assert_eq!(l.output_shape, vec![1, 10, 29, 29]);
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
        let bn = &p.layers()[1];
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
        assert_eq!(p.layers()[1].output_shape, vec![1, 3, 32, 32]);
        assert_eq!(p.layers()[2].output_shape, vec![1, 9, 32, 32]);
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
    fn a_batch_is_dimension_0_of_every_graph_shape() {
        let text = "name = \"b\"\n[input]\nchannels = 2\nheight = 6\nwidth = 6\n\
                    [[layers]]\ntype = \"conv2d\"\nfilters = 4\nkernel = 3\n\
                    [[layers]]\ntype = \"maxpool2d\"\npool = 2\n\
                    [[layers]]\ntype = \"flatten\"\n\
                    [[layers]]\ntype = \"dense\"\nunits = 3\n";
        let p = plan(&parse_model(text, "b.toml").unwrap()).unwrap();
        let g = p.at_batch(5).unwrap();
        let shapes: Vec<&[usize]> = g.nodes.iter().map(|n| n.output_shape.as_slice()).collect();
        assert_eq!(
            shapes,
            [&[5, 4, 4, 4][..], &[5, 4, 2, 2], &[5, 16], &[5, 3]]
        );
        // Counts are per image, whatever the batch.
        assert_eq!(g.total_params(), p.total_params());
        assert_eq!(p.output_shape(), [3]);
    }

    #[test]
    fn a_batch_that_makes_an_output_unaddressable_is_an_error() {
        // 1024 maps of (2^21 + 1)^2 values: planned per image, but not 4096 images of them.
        let text = "name = \"b\"\n[input]\nchannels = 1\nheight = 1\nwidth = 1\n\
                    [[layers]]\ntype = \"conv2d\"\nfilters = 1024\nkernel = 2\npadding = 1048576\n";
        let p = plan(&parse_model(text, "b.toml").unwrap()).unwrap();
        let e = p.at_batch(4096).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "b.toml:6: layer `conv2d_1` (conv2d) on input 1x1x1: at batch 4096 the output"
            ),
            "{e}"
        );
        assert!(
            e.ends_with("has more values than this machine can address"),
            "{e}"
        );
        assert!(p.at_batch(2).is_ok());
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
