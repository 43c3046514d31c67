//! The 3D-to-2D trick made visible: for every convolution-like layer, the im2col matrix it
//! unfolds, the GEMM it hands over (`M x K x N`), how many GEMM calls one image takes, and the
//! bytes of the column buffer — both the full matrix and the tile the engine really allocates.
//! It reads only the plan; it neither allocates nor runs anything.

use crate::plan::{LayerPlan, ModelPlan, Op};
use cnn_conv::Conv2dGeometry;
use serde::{Serialize, Serializer};

/// How the engine computes a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelPath {
    /// im2col into a (tiled) column buffer, then one GEMM per group.
    Im2colGemm,
    /// 1x1, stride 1, no padding: the input already is the column matrix; GEMM only.
    Pointwise,
    /// One group per channel: a direct kernel (a GEMM with M = 1 would waste the hardware).
    Depthwise,
    /// Unshared weights: one small matrix-vector product per output position.
    LocallyConnected,
    /// A dense layer: one GEMM of the weights with the input vectors.
    Dense,
}

impl Serialize for KernelPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.describe())
    }
}

impl KernelPath {
    /// A short description for reports.
    pub fn describe(self) -> &'static str {
        match self {
            KernelPath::Im2colGemm => "im2col + GEMM",
            KernelPath::Pointwise => "GEMM on the input (1x1: no im2col)",
            KernelPath::Depthwise => "direct depthwise kernel",
            KernelPath::LocallyConnected => "per-position mat-vec",
            KernelPath::Dense => "GEMM",
        }
    }
}

/// What one convolution-like layer becomes as matrices (serialised as one entry of
/// `cnn explain --format json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConvExplanation {
    /// The layer name (`separable_conv2d_1/depthwise` for the parts of a separable layer).
    pub layer: String,
    #[serde(rename = "type")]
    pub type_name: &'static str,
    pub path: KernelPath,
    pub input_shape: Vec<usize>,
    pub output_shape: Vec<usize>,
    /// `[k_h, k_w]`, `[stride_h, stride_w]`, `[top, bottom, left, right]`, `[dil_h, dil_w]`.
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 4],
    pub dilation: [usize; 2],
    pub groups: usize,
    /// The im2col matrix of one group: `[rows, cols]` = `[(C/groups)*KH*KW, OH*OW]`.
    #[serde(rename = "im2col_shape")]
    pub im2col: [usize; 2],
    /// The GEMM of one group: `M x K x N`.
    #[serde(rename = "gemm_mkn")]
    pub gemm: [usize; 3],
    /// GEMM calls per image (groups; output positions for locally connected).
    #[serde(rename = "gemm_calls_per_image")]
    pub gemm_calls: usize,
    /// Bytes of the whole column matrix of one group if it were materialised.
    pub column_bytes_full: u64,
    /// Bytes of the column buffers the engine really allocates for one image: per worker, one
    /// tile's column panels (padded to whole panels), a row of scratch and alignment slack; or,
    /// when the matrix is read in place, the channels-last copy of the input plus one worker's
    /// output tile; 0 when none.
    pub column_bytes_allocated: u64,
    /// Bytes of the zero-padded channels-last copy of one image from which the GEMM reads the
    /// column matrix in place (no unfolding copy; layers with at least 16 input channels per
    /// group); 0 when the matrix is unfolded into panels instead, or there is none.
    pub channels_last_copy_bytes: u64,
    pub macs: u64,
}

fn from_geometry(
    layer: &str,
    type_name: &'static str,
    path: KernelPath,
    g: &Conv2dGeometry,
) -> ConvExplanation {
    let rows = g.col_rows();
    let cols = g.col_cols();
    let allocated = match path {
        KernelPath::Im2colGemm | KernelPath::Pointwise => {
            cnn_conv::conv::column_buffer_len(g) as u64 * 4
        }
        _ => 0,
    };
    let in_place = path == KernelPath::Im2colGemm && cnn_conv::channels_last::applies(g);
    let copy = match in_place {
        true => cnn_conv::channels_last::image_len(g).map_or(u64::MAX, |len| len as u64 * 4),
        false => 0,
    };
    let (gemm, calls) = match path {
        KernelPath::LocallyConnected => ([g.out_c, rows, 1], cols),
        _ => ([g.out_c_per_group(), rows, cols], g.groups),
    };
    ConvExplanation {
        layer: layer.to_string(),
        type_name,
        path,
        input_shape: vec![g.in_c, g.in_h, g.in_w],
        output_shape: vec![g.out_c, g.out_h, g.out_w],
        kernel: [g.k_h, g.k_w],
        stride: [g.stride_h, g.stride_w],
        padding: [g.pad_top, g.pad_bottom, g.pad_left, g.pad_right],
        dilation: [g.dil_h, g.dil_w],
        groups: g.groups,
        im2col: [rows, cols],
        gemm,
        gemm_calls: calls,
        column_bytes_full: rows as u64 * cols as u64 * 4,
        column_bytes_allocated: allocated,
        channels_last_copy_bytes: copy,
        macs: g.macs(),
    }
}

fn conv_path(g: &Conv2dGeometry) -> KernelPath {
    if g.is_depthwise() {
        KernelPath::Depthwise
    } else if g.is_pointwise() {
        KernelPath::Pointwise
    } else {
        KernelPath::Im2colGemm
    }
}

/// The explanation of one convolution with geometry `g`, computed the way the engine runs it
/// (importers call this for their convolution nodes).
pub fn explain_conv(layer: &str, type_name: &'static str, g: &Conv2dGeometry) -> ConvExplanation {
    from_geometry(layer, type_name, conv_path(g), g)
}

/// The explanation of a dense layer (or an importer's matrix product with constant weights):
/// `W[units x in_features] x x[in_features x columns]`, `columns` input vectors at once (1 per
/// image for model files; the batch for an ONNX Gemm), no column buffer.
pub fn explain_dense(
    layer: &str,
    type_name: &'static str,
    in_features: usize,
    units: usize,
    columns: usize,
    macs: u64,
) -> ConvExplanation {
    ConvExplanation {
        layer: layer.to_string(),
        type_name,
        path: KernelPath::Dense,
        input_shape: vec![in_features],
        output_shape: vec![units],
        kernel: [1, 1],
        stride: [1, 1],
        padding: [0; 4],
        dilation: [1, 1],
        groups: 1,
        im2col: [in_features, columns],
        gemm: [units, in_features, columns],
        gemm_calls: 1,
        column_bytes_full: 0,
        column_bytes_allocated: 0,
        channels_last_copy_bytes: 0,
        macs,
    }
}

fn explain_layer(layer: &LayerPlan) -> Vec<ConvExplanation> {
    match &layer.op {
        Op::Conv { geom, .. } => vec![from_geometry(
            &layer.name,
            layer.type_name,
            conv_path(geom),
            geom,
        )],
        Op::Separable {
            depthwise,
            pointwise,
            ..
        } => vec![
            from_geometry(
                &format!("{}/depthwise", layer.name),
                layer.type_name,
                conv_path(depthwise),
                depthwise,
            ),
            from_geometry(
                &format!("{}/pointwise", layer.name),
                layer.type_name,
                conv_path(pointwise),
                pointwise,
            ),
        ],
        Op::Local { geom, .. } => vec![from_geometry(
            &layer.name,
            layer.type_name,
            KernelPath::LocallyConnected,
            geom,
        )],
        Op::Dense {
            in_features, units, ..
        } => vec![explain_dense(
            &layer.name,
            layer.type_name,
            *in_features,
            *units,
            1,
            layer.macs,
        )],
        _ => Vec::new(),
    }
}

/// Explains every layer of `plan` that multiplies matrices (conv-like and dense layers).
pub fn explain(plan: &ModelPlan) -> Vec<ConvExplanation> {
    plan.layers.iter().flat_map(explain_layer).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_model;
    use crate::plan::plan;

    #[test]
    fn lasagne_first_conv_unfolds_to_25_by_576() {
        // Seed 003: conv 32 5x5 on 1x28x28 -> 32x24x24; im2col [1*5*5, 24*24].
        let text = "name = \"l\"\n[input]\nchannels = 1\nheight = 28\nwidth = 28\n\
                    [[layers]]\ntype = \"conv2d\"\nfilters = 32\nkernel = 5\n\
                    [[layers]]\ntype = \"conv2d\"\nfilters = 8\nkernel = 1\n\
                    [[layers]]\ntype = \"depthwise_conv2d\"\nkernel = 3\n";
        let p = plan(&parse_model(text, "l.toml").unwrap()).unwrap();
        let e = explain(&p);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].path, KernelPath::Im2colGemm);
        assert_eq!(e[0].im2col, [25, 576]);
        assert_eq!(e[0].gemm, [32, 25, 576]);
        assert_eq!(e[0].column_bytes_full, 25 * 576 * 4);
        // One tile holds the whole matrix (576 pixels are 96 panels of 6), plus one row of
        // scratch (576 pixels and two output rows of 24) and 15 values of alignment slack.
        assert_eq!(e[0].column_bytes_allocated, (25 * 576 + 576 + 48 + 15) * 4);
        assert_eq!(e[1].path, KernelPath::Pointwise);
        // The 1x1 layer copies its input (32 channels) into panels: 576 pixels, 36 panels of 16.
        assert_eq!(e[1].column_bytes_allocated, (32 * 576 + 576 + 48 + 15) * 4);
        assert_eq!(e[2].path, KernelPath::Depthwise);
        assert_eq!((e[2].groups, e[2].gemm), (8, [1, 9, 22 * 22]));
        assert!(e.iter().all(|e| e.channels_last_copy_bytes == 0));
    }

    #[test]
    fn many_channels_are_read_in_place() {
        // 16 channels 3x3 on 10x10, padding 1: the GEMM reads the [144 x 100] matrix from a
        // 12 x 12 x 16 channels-last copy; one worker's output tile is 102 pixels (17 panels
        // of 6) of 16 channels.
        let text = "name = \"l\"\n[input]\nchannels = 16\nheight = 10\nwidth = 10\n\
                    [[layers]]\ntype = \"conv2d\"\nfilters = 32\nkernel = 3\npadding = 1\n";
        let p = plan(&parse_model(text, "l.toml").unwrap()).unwrap();
        let e = explain(&p);
        assert_eq!(e[0].path, KernelPath::Im2colGemm);
        assert_eq!(e[0].im2col, [144, 100]);
        assert_eq!(e[0].channels_last_copy_bytes, 12 * 12 * 16 * 4);
        assert_eq!(
            e[0].column_bytes_allocated,
            (12 * 12 * 16 + 102 * 16 + 15) * 4
        );
    }
}
