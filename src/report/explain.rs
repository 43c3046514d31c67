//! `cnn explain`: for every layer that multiplies matrices, the 3D-to-2D trick spelled out —
//! which im2col matrix the input unfolds into, the GEMM `W[M x K] x cols[K x N]`, how many calls
//! per image, and the column-buffer bytes (whole matrix vs the tile the engine allocates).

use cnn_model::format::{group_digits, human_bytes};
use cnn_model::{ConvExplanation, KernelPath};
use cnn_tensor::format_shape;
use serde::Serialize;

/// `explain --format json`.
#[derive(Debug, Serialize)]
pub struct ExplainDoc<'a> {
    pub model: String,
    /// The kernel build the GEMMs run on (`avx512`, `avx2`, `portable`; `CNN_KERNEL` picks).
    pub kernel: &'static str,
    /// That build's micro-kernel: tile, vector lanes, packing, epilogues.
    pub gemm_kernel: super::kernel::KernelJson,
    pub layers: &'a [ConvExplanation],
}

fn block(e: &ConvExplanation) -> String {
    let [m, k, n] = e.gemm;
    let [rows, cols] = e.im2col;
    let mut out = format!(
        "{} ({}): {} -> {}\n",
        e.layer,
        e.type_name,
        format_shape(&e.input_shape),
        format_shape(&e.output_shape)
    );
    if e.path != KernelPath::Dense {
        let [t, b, l, r] = e.padding;
        out.push_str(&format!(
            "  window   {}x{} kernel, stride {}x{}, padding top {t} bottom {b} left {l} right {r}, \
             dilation {}x{}, groups {}\n",
            e.kernel[0], e.kernel[1], e.stride[0], e.stride[1], e.dilation[0], e.dilation[1], e.groups
        ));
    }
    let per_group_c = e.input_shape.first().copied().unwrap_or(0) / e.groups.max(1);
    match e.path {
        KernelPath::Winograd => {
            // The im2col view first (the product it computes), then how it runs.
            let tiles = e.output_shape[1].div_ceil(4) * e.output_shape[2].div_ceil(4);
            let (k, c) = (e.output_shape[0], per_group_c);
            out.push_str(&format!(
                "  im2col   cols [{rows} x {cols}] = ({per_group_c}*{}*{}) rows x ({}*{}) columns\n",
                e.kernel[0], e.kernel[1], e.output_shape[1], e.output_shape[2]
            ));
            out.push_str(&format!(
                "  GEMM     W[{m} x {kk}] x cols[{kk} x {n}] -> out[{m} x {n}]: the product, \
                 computed as Winograd F(4x4, 3x3)\n",
                kk = rows
            ));
            out.push_str(&format!(
                "  runs as  {tiles} tiles of 4x4 outputs; each 6x6 input patch transformed \
                 (B^T d B), 36 GEMMs U[{k} x {c}] x V[{c} x {tiles}], each 6x6 product \
                 transformed back (A^T M A): {} multiplies instead of {}\n",
                group_digits(36 * (k * c * tiles) as u128),
                group_digits(e.macs as u128)
            ));
            out.push_str(&format!(
                "  buffer   {} for the whole matrix, never unfolded; {} allocated (a zero-padded \
                 copy of the input and one task's transformed tiles and products)\n",
                human_bytes(e.column_bytes_full as u128),
                human_bytes(e.column_bytes_allocated as u128)
            ));
        }
        KernelPath::Im2colGemm | KernelPath::Pointwise => {
            let group_note = if e.groups > 1 {
                format!(" (per group; {} groups)", e.groups)
            } else {
                String::new()
            };
            if e.path == KernelPath::Pointwise {
                out.push_str(&format!(
                    "  im2col   none needed: with a 1x1 kernel, stride 1 and no padding the input \
                     already is the [{rows} x {cols}] column matrix{group_note}\n"
                ));
            } else {
                out.push_str(&format!(
                    "  im2col   cols [{rows} x {cols}] = ({per_group_c}*{}*{}) rows x ({}*{}) \
                     columns{group_note}\n",
                    e.kernel[0], e.kernel[1], e.output_shape[1], e.output_shape[2]
                ));
            }
            out.push_str(&format!(
                "  GEMM     W[{m} x {k}] x cols[{k} x {n}] -> out[{m} x {n}]   M x K x N = {m} x {k} x {n}, \
                 {} call(s) per image\n",
                e.gemm_calls
            ));
            let buffer = if e.path == KernelPath::Pointwise {
                format!(
                    "no unfolding; the input is copied into GEMM panels, {} allocated (tiled \
                     over output pixels)",
                    human_bytes(e.column_bytes_allocated as u128)
                )
            } else if e.channels_last_copy_bytes > 0 {
                format!(
                    "{} for the whole matrix, {} allocated: never unfolded, the GEMM reads it \
                     in place from a zero-padded channels-last copy of the input ({}), plus \
                     {} of output tiles per worker",
                    human_bytes(e.column_bytes_full as u128),
                    human_bytes(e.column_bytes_allocated as u128),
                    human_bytes(e.channels_last_copy_bytes as u128),
                    human_bytes(
                        e.column_bytes_allocated
                            .saturating_sub(e.channels_last_copy_bytes)
                            as u128
                    )
                )
            } else {
                // Stride 2: the input is first copied with its rows split by column parity.
                let phased = if e.stride[1] == 2 {
                    ", from a copy of the input with its rows split by column parity"
                } else {
                    ""
                };
                format!(
                    "{} for the whole matrix, {} allocated (tiled over output pixels, \
                     unfolded straight into GEMM panels{phased})",
                    human_bytes(e.column_bytes_full as u128),
                    human_bytes(e.column_bytes_allocated as u128)
                )
            };
            out.push_str(&format!("  buffer   {buffer}\n"));
        }
        KernelPath::Depthwise => {
            out.push_str(&format!(
                "  im2col   would be cols [{rows} x {cols}] per channel, {} times: a GEMM with \
                 M = {m} wastes the hardware\n",
                e.groups
            ));
            out.push_str(&format!(
                "  kernel   direct depthwise convolution instead (GEMM-equivalent {m} x {k} x {n}, \
                 {} per image); no column buffer\n",
                e.gemm_calls
            ));
        }
        KernelPath::LocallyConnected => {
            let positions = group_digits(cols as u128);
            out.push_str(&format!(
                "  im2col   one column of {rows} values per output position ({positions} \
                 positions), gathered one at a time; the whole matrix would be {}\n",
                human_bytes(e.column_bytes_full as u128)
            ));
            out.push_str(&format!(
                "  GEMM     unshared weights: a W_p[{m} x {k}] x col_p[{k} x 1] mat-vec for each of \
                 the {positions} positions\n"
            ));
        }
        KernelPath::Dense => {
            out.push_str(&format!(
                "  GEMM     W[{m} x {k}] x x[{k} x 1] -> y[{m} x 1]   M x K x N = {m} x {k} x 1 per \
                 image (a batch of B makes N = B)\n"
            ));
        }
        KernelPath::Col2im => {
            let group_note = if e.groups > 1 {
                format!(" (per group; {} groups)", e.groups)
            } else {
                String::new()
            };
            out.push_str(&format!(
                "  GEMM     cols[{m} x {n}] = W^T[{m} x {k}] x x[{k} x {n}]: every input pixel's \
                 contribution to every kernel tap{group_note}\n"
            ));
            out.push_str(&format!(
                "  col2im   the im2col trick backwards: each of the {m} rows (output channel, tap) \
                 is added into the output window it covers -> {}; columns {}\n",
                format_shape(&e.output_shape),
                human_bytes(e.column_bytes_full as u128)
            ));
        }
    }
    out.push_str(&format!("  MACs     {}\n", group_digits(e.macs as u128)));
    out
}

/// The terminal report for the model called `name`.
pub fn render_named(name: &str, items: &[ConvExplanation]) -> String {
    let kernel = super::kernel::KernelJson::selected().words();
    let hint = super::kernel::override_hint();
    let mut out = format!(
        "Model \"{name}\": every convolution as a matrix product (im2col, then GEMM)\n\
         GEMM kernels: {kernel}; {hint} picks another the CPU runs\n\n"
    );
    if items.is_empty() {
        out.push_str("No layer of this model multiplies matrices.\n");
    }
    for e in items {
        out.push_str(&block(e));
        out.push('\n');
    }
    out
}
