//! The worked examples the project exists for (`../shared/docs/seed-cases.md`): every number
//! is asserted symbolically (the formula's value, and the printed formula re-evaluated from its
//! text), against the weight buffers actually allocated, and — for every model that fits in
//! memory — with a forward pass whose output shape and softmax rows are checked.

use cnn::model::formula::evaluate_text;
use cnn::model::{ModelError, ModelPlan};
use cnn::{random_input, Model, DEFAULT_MAX_WEIGHT_BYTES};
use std::path::PathBuf;

fn model_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(format!("{name}.toml"))
}

fn plan(name: &str) -> Model {
    Model::plan_file(&model_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Checks that each printed formula evaluates to its layer's count.
fn formulas_agree(plan: &ModelPlan) {
    for l in plan.layers() {
        let from_text = match &l.formula {
            Some(_) => evaluate_text(&l.formula_text()),
            None => Some(0),
        };
        assert_eq!(
            from_text,
            Some(l.param_count),
            "{}: formula {} vs count {}",
            l.name,
            l.formula_text(),
            l.param_count
        );
        assert_eq!(l.trainable + l.non_trainable, l.param_count, "{}", l.name);
    }
}

/// Symbolic total, per-layer counts (name, params), allocation, forward pass.
fn check(name: &str, total: u64, layers: &[(&str, u64)]) {
    let mut m = plan(name);
    assert_eq!(m.plan.total_params(), total, "{name}: symbolic total");
    formulas_agree(&m.plan);
    for (layer, count) in layers {
        let l = m
            .plan
            .layers()
            .iter()
            .find(|l| l.name == *layer)
            .unwrap_or_else(|| panic!("{name}: no layer {layer}"));
        assert_eq!(l.param_count, *count, "{name}/{layer}");
    }
    m.allocate(1, DEFAULT_MAX_WEIGHT_BYTES)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(m.allocated_params(), Some(total), "{name}: values held");

    for batch in [1, 2] {
        let x = random_input(&m.plan, batch, 9).unwrap();
        let y = m.forward(&x).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut expected = vec![batch];
        expected.extend_from_slice(m.plan.output_shape());
        assert_eq!(y.shape(), expected.as_slice(), "{name}: output shape");
        assert!(y.as_slice().iter().all(|v| v.is_finite()), "{name}: finite");
        let last = m.plan.layers().last().unwrap();
        let dense_softmax = matches!(
            last.op,
            cnn::graph::Op::Dense {
                epilogue: cnn::graph::Epilogue { softmax: true, .. },
                ..
            }
        );
        if dense_softmax {
            for row in y.as_slice().chunks(y.len() / batch) {
                let s: f64 = row.iter().map(|&v| v as f64).sum();
                assert!((s - 1.0).abs() < 1e-5, "{name}: softmax row sums to {s}");
            }
        }
    }
}

// Seed 000 (Keras question): deeper can mean fewer parameters.
#[test]
fn vgg1_604035() {
    // 604,035 — Keras count_params, seed 000; the flatten-to-dense layer holds (4608+1)*128.
    check(
        "vgg1",
        604_035,
        &[
            ("conv2d_1", 320),
            ("conv2d_2", 9_248),
            ("dense_1", 589_952),
            ("dense_2", 4_515),
        ],
    );
}

#[test]
fn vgg2_336387() {
    // 336,387 — Keras count_params, seed 000; dense_1 is (1024+1)*256 = 262,400.
    check(
        "vgg2",
        336_387,
        &[
            ("conv2d_3", 18_496),
            ("conv2d_4", 36_928),
            ("dense_1", 262_400),
            ("dense_2", 8_995),
        ],
    );
}

#[test]
fn bottleneck_mlps_seed_000() {
    // 784:2000:2000:10 = 5,592,010 and 784:2000:50:2000:10 = 1,792,060 (32.0 % of it).
    check("mlp_784_2000_2000_10", 5_592_010, &[("dense_2", 4_002_000)]);
    check(
        "mlp_784_2000_50_2000_10",
        1_792_060,
        &[("dense_2", 100_050)],
    );
    let a = plan("mlp_784_2000_2000_10").plan.total_params() as f64;
    let b = plan("mlp_784_2000_50_2000_10").plan.total_params() as f64;
    assert_eq!(format!("{:.1}", 100.0 * b / a), "32.0");
}

// Seed 001 (Keras): per-channel weights are not shared.
#[test]
fn conv_490_seed_001() {
    // 490 = 10*(4*4*3+1); output 10x29x29.
    check("keras_conv_490", 490, &[("conv2d_1", 490)]);
    let m = plan("keras_conv_490");
    // Graph shapes carry the batch (1 in the plan).
    assert_eq!(m.plan.layers()[0].output_shape, vec![1, 10, 29, 29]);
    assert_eq!(m.plan.layers()[0].formula_text(), "(4*4*3+1)*10");
}

#[test]
fn channel_sum_170_seed_001() {
    // Summing the 3 channels first (parameter-free) leaves 10*(4*4*1+1) = 170.
    check(
        "channel_sum_170",
        170,
        &[("channel_sum_1", 0), ("conv2d_1", 170)],
    );
    assert_eq!(
        plan("channel_sum_170").plan.layers()[0].output_shape,
        vec![1, 1, 32, 32]
    );
}

#[test]
fn separable_88_and_depthwise_51_seed_001() {
    // SeparableConv2D(10,(4,4)) = 3*16 + 3*10 + 10 = 88; DepthwiseConv2D((4,4)) = 3*16 + 3 = 51.
    check("separable_88", 88, &[]);
    check("depthwise_51", 51, &[]);
    assert_eq!(
        plan("separable_88").plan.layers()[0].formula_text(),
        "4*4*3 + 3*10 + 10"
    );
}

// Seed 002 (blog): local receptive fields and weight sharing on a 1000x1000 image.
#[test]
fn fully_connected_10_to_the_12_is_counted_not_allocated() {
    let mut m = plan("fc_1000x1000");
    assert_eq!(m.plan.total_params(), 1_000_000_000_000);
    formulas_agree(&m.plan);
    let err = m.allocate(0, DEFAULT_MAX_WEIGHT_BYTES).unwrap_err();
    assert!(matches!(err, ModelError::TooLarge { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("1,000,000,000,000 parameters = 3.64 TiB"),
        "{msg}"
    );
    assert_eq!(m.allocated_params(), None);
}

#[test]
fn locally_connected_10_to_the_8() {
    // Each of the 10^6 hidden units has its own 10x10 patch: 10^8 weights (400 MB, allocated).
    check("local_10x10", 100_000_000, &[]);
    assert_eq!(
        plan("local_10x10").plan.layers()[0].output_shape,
        vec![1, 1, 1000, 1000]
    );
}

#[test]
fn shared_kernels_100_and_10000() {
    // One shared 10x10 kernel: 100; 100 different kernels: 10,000.
    check("shared_10x10", 100, &[]);
    check("shared_10x10_100_filters", 10_000, &[]);
}

// Seed 003 (Lasagne on MNIST): layer by layer.
#[test]
fn lasagne_mnist_217706() {
    check(
        "lasagne_mnist",
        217_706,
        &[
            ("conv2d_1", 832),
            ("conv2d_2", 9_248),
            ("dense_1", 205_056),
            ("dense_2", 2_570),
        ],
    );
    let m = plan("lasagne_mnist");
    let shapes: Vec<Vec<usize>> = m
        .plan
        .layers()
        .iter()
        .map(|l| l.output_shape[1..].to_vec())
        .collect();
    assert_eq!(shapes[0], vec![32, 24, 24]);
    assert_eq!(shapes[1], vec![32, 12, 12]);
    assert_eq!(shapes[2], vec![32, 10, 10]);
    assert_eq!(shapes[3], vec![32, 5, 5]);
}

// Seed 004 (blog): removing a block can add parameters.
#[test]
fn blog_blocks_without_bias() {
    // 4 blocks: 256x14x14 flattened -> 6,810,720; 3 blocks: 128x28x28 -> 12,938,336.
    check("blog_4block", 6_810_720, &[("dense_1", 6_422_528)]);
    check("blog_3block", 12_938_336, &[("dense_1", 12_845_056)]);
}

#[test]
fn blog_blocks_with_bias() {
    check("blog_4block_bias", 6_811_330, &[]);
    check("blog_3block_bias", 12_938_690, &[]);
}

#[test]
fn stride_two_conv_has_the_parameters_of_conv_plus_pool() {
    // Seed 003's remark: a stride-2 conv and a stride-1 conv + 2x2 pooling ("same") have the
    // same parameter count; only the output size differs.
    let head = "name = \"s\"\n[input]\nchannels = 3\nheight = 28\nwidth = 28\n";
    let strided = format!(
        "{head}[[layers]]\ntype = \"conv2d\"\nfilters = 16\nkernel = 3\nstride = 2\npadding = \"same\"\n"
    );
    let pooled = format!(
        "{head}[[layers]]\ntype = \"conv2d\"\nfilters = 16\nkernel = 3\npadding = \"same\"\n\
         [[layers]]\ntype = \"maxpool2d\"\npool = 2\npadding = \"same\"\n"
    );
    let a = cnn::model::plan(&cnn::model::parse_model(&strided, "a").unwrap()).unwrap();
    let b = cnn::model::plan(&cnn::model::parse_model(&pooled, "b").unwrap()).unwrap();
    assert_eq!(a.total_params(), b.total_params());
    assert_eq!(a.output_shape(), b.output_shape());
    assert_eq!(a.output_shape(), &[16, 14, 14]);
}

#[test]
fn every_shipped_model_is_covered() {
    // (digits is the trained model of tests/digits.rs; the rest are the seed models.)
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            if p.extension()? != "toml" {
                return None;
            }
            Some(p.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    let expected = [
        "blog_3block",
        "blog_3block_bias",
        "blog_4block",
        "blog_4block_bias",
        "channel_sum_170",
        "depthwise_51",
        "digits",
        "fc_1000x1000",
        "keras_conv_490",
        "lasagne_mnist",
        "local_10x10",
        "mlp_784_2000_2000_10",
        "mlp_784_2000_50_2000_10",
        "separable_88",
        "shared_10x10",
        "shared_10x10_100_filters",
        "vgg1",
        "vgg2",
    ];
    assert_eq!(names, expected);
}
