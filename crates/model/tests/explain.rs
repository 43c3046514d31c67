//! `explain` of model files: the im2col matrix, the GEMM and the column-buffer bytes of each
//! convolution-like layer, computed by the graph crate from the lowered plan, pinned on small
//! geometries (the byte counts follow the kernels' tile sizes).

use cnn_model::{explain, parse_model, plan, KernelPath};

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
    // of 6) of the kernel's tile width in channels (16 for AVX2, 32 for AVX-512).
    let text = "name = \"l\"\n[input]\nchannels = 16\nheight = 10\nwidth = 10\n\
                [[layers]]\ntype = \"conv2d\"\nfilters = 32\nkernel = 3\npadding = 1\n";
    let p = plan(&parse_model(text, "l.toml").unwrap()).unwrap();
    let e = explain(&p);
    assert_eq!(e[0].path, KernelPath::Im2colGemm);
    assert_eq!(e[0].im2col, [144, 100]);
    assert_eq!(e[0].channels_last_copy_bytes, 12 * 12 * 16 * 4);
    assert_eq!(
        e[0].column_bytes_allocated,
        (12 * 12 * 16 + 102 * cnn_conv::Kernel::selected().nr() as u64 + 15) * 4
    );
}
