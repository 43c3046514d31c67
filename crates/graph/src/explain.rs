//! The 3D-to-2D trick made visible: for every convolution-like layer, the im2col matrix it
//! unfolds, the GEMM it hands over (`M x K x N`), how many GEMM calls one image takes, and the
//! bytes of the column buffer — both the full matrix and the tile the engine really allocates.
//! It reads only the planned graph; it neither allocates nor runs anything, and it never
//! compiles. Both front doors' reports come from here.

use crate::ir::{Graph, Node};
use crate::op::Op;
use cnn_conv::{Conv2dGeometry, PathKind};
use serde::{Serialize, Serializer};

/// How the engine computes a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelPath {
    /// im2col into a (tiled) column buffer, then one GEMM per group.
    Im2colGemm,
    /// The same product computed by Winograd F(4x4, 3x3): input tiles transformed, 36 GEMMs
    /// `[out_c x in_c] x [in_c x tiles]`, outputs transformed back.
    Winograd,
    /// 1x1, stride 1, no padding: the input already is the column matrix; GEMM only.
    Pointwise,
    /// One group per channel: a direct kernel (a GEMM with M = 1 would waste the hardware).
    Depthwise,
    /// Unshared weights: one small matrix-vector product per output position.
    LocallyConnected,
    /// A dense layer: one GEMM of the weights with the input vectors.
    Dense,
    /// A transposed convolution: a GEMM into columns, then col2im adds them into the output.
    Col2im,
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
            KernelPath::Winograd => "Winograd F(4x4, 3x3): 36 GEMMs on transformed tiles",
            KernelPath::Pointwise => "GEMM on the input (1x1: no im2col)",
            KernelPath::Depthwise => "direct depthwise kernel",
            KernelPath::LocallyConnected => "per-position mat-vec",
            KernelPath::Dense => "GEMM",
            KernelPath::Col2im => "GEMM + col2im",
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
    pub type_name: String,
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
    type_name: &str,
    path: KernelPath,
    g: &Conv2dGeometry,
) -> ConvExplanation {
    let rows = g.col_rows();
    let cols = g.col_cols();
    // The kernel crate's own account of the buffers its path allocates.
    let described = cnn_conv::describe(g);
    let allocated = match path {
        KernelPath::Im2colGemm | KernelPath::Pointwise | KernelPath::Winograd => {
            described.column_buffer_len as u64 * 4
        }
        _ => 0,
    };
    let copy = match path {
        KernelPath::Im2colGemm => described
            .channels_last_copy_len
            .map_or(0, |len| (len as u64).saturating_mul(4)),
        _ => 0,
    };
    let (gemm, calls) = match path {
        KernelPath::LocallyConnected => ([g.out_c, rows, 1], cols),
        _ => ([g.out_c_per_group(), rows, cols], g.groups),
    };
    ConvExplanation {
        layer: layer.to_string(),
        type_name: type_name.to_string(),
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

/// The report's name for the path the kernel crate takes (its one decision,
/// [`cnn_conv::describe`]).
fn conv_path(g: &Conv2dGeometry) -> KernelPath {
    match cnn_conv::describe(g).kind {
        PathKind::Depthwise => KernelPath::Depthwise,
        PathKind::Pointwise => KernelPath::Pointwise,
        PathKind::Im2colGemm { .. } => KernelPath::Im2colGemm,
        PathKind::Winograd => KernelPath::Winograd,
    }
}

/// The explanation of one convolution with geometry `g`, computed the way the engine runs it
/// (importers call this for their convolution nodes).
pub fn explain_conv(layer: &str, type_name: &str, g: &Conv2dGeometry) -> ConvExplanation {
    from_geometry(layer, type_name, conv_path(g), g)
}

/// The explanation of a dense layer (or an importer's matrix product with constant weights):
/// `W[units x in_features] x x[in_features x columns]`, `columns` input vectors at once (1 per
/// image for model files; the batch for an ONNX Gemm), no column buffer.
pub fn explain_dense(
    layer: &str,
    type_name: &str,
    in_features: usize,
    units: usize,
    columns: usize,
    macs: u64,
) -> ConvExplanation {
    ConvExplanation {
        layer: layer.to_string(),
        type_name: type_name.to_string(),
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

fn explain_node(node: &Node) -> Vec<ConvExplanation> {
    let (name, type_name) = (node.name.as_str(), node.type_name.as_str());
    match &node.op {
        Op::Conv { geom, .. } => vec![explain_conv(name, type_name, geom)],
        Op::Separable {
            depthwise,
            pointwise,
            ..
        } => vec![
            explain_conv(&format!("{name}/depthwise"), type_name, depthwise),
            explain_conv(&format!("{name}/pointwise"), type_name, pointwise),
        ],
        Op::Local { geom, .. } => vec![from_geometry(
            name,
            type_name,
            KernelPath::LocallyConnected,
            geom,
        )],
        Op::ConvTranspose { geom: g, .. } => {
            let [m, k, n] = g.gemm_mkn();
            let bytes = m as u64 * n as u64 * 4;
            vec![ConvExplanation {
                layer: name.to_string(),
                type_name: type_name.to_string(),
                path: KernelPath::Col2im,
                input_shape: vec![g.in_c, g.in_h, g.in_w],
                output_shape: vec![g.out_c, g.out_h, g.out_w],
                kernel: [g.k_h, g.k_w],
                stride: g.stride,
                padding: g.pads,
                dilation: g.dilation,
                groups: g.groups,
                im2col: [m, n],
                gemm: [m, k, n],
                gemm_calls: g.groups,
                column_bytes_full: bytes,
                column_bytes_allocated: bytes,
                channels_last_copy_bytes: 0,
                macs: g.macs().unwrap_or(u64::MAX),
            }]
        }
        Op::Dense { m, k, n, .. } | Op::Gemm { m, k, n, .. } => {
            vec![explain_dense(name, type_name, *k, *n, *m, node.macs)]
        }
        _ => Vec::new(),
    }
}

/// Explains every node of `graph` that multiplies matrices (conv-like, dense and Gemm).
pub fn explain(graph: &Graph) -> Vec<ConvExplanation> {
    graph.nodes.iter().flat_map(explain_node).collect()
}
