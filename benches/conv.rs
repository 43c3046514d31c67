//! Convolution benchmarks on the layer shapes of common networks (VGG/ResNet/MobileNet), one
//! criterion group per layer, batch 1.
//!
//! Throughput is reported as `Elements(2 * MACs)`, so criterion's "elem/s" reads as FLOP/s.
//! Each layer runs the production path as a model runs it ([`conv2d_packed`], on weights
//! packed once beforehand: `packed`), the same packing the weights on every call ([`conv2d`]),
//! and the textbook untiled, single-threaded im2col + GEMM on matrixmultiply
//! ([`conv2d_im2col_plain`]); the naive direct reference only runs on the small depthwise
//! layer (it would take minutes on the others).
//!
//! Besides the convolutions: max/avg pooling of a 32x224x224 tensor (pool 2, stride 2) and a
//! batch-1 dense layer 4096 -> 1536 (25 MB of weights, a matrix-vector product).
//!
//! Quick smoke run of one layer: `cargo bench --bench conv -- --quick c64_56_k3`.

use cnn_conv::{
    avg_pool2d, conv2d, conv2d_direct, conv2d_im2col_plain, conv2d_packed, dense, max_pool2d,
    Activation, Conv2dGeometry, Conv2dSpec, PackedWeights, Padding, Pool2dGeometry, Pool2dSpec,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::Duration;

/// One benchmarked layer.
struct Layer {
    name: &'static str,
    in_c: usize,
    size: usize,
    filters: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    groups: usize,
    /// Also run the naive direct convolution.
    direct: bool,
}

const fn layer(
    name: &'static str,
    in_c: usize,
    size: usize,
    filters: usize,
    kernel: usize,
) -> Layer {
    Layer {
        name,
        in_c,
        size,
        filters,
        kernel,
        stride: 1,
        pad: kernel / 2,
        groups: 1,
        direct: false,
    }
}

const LAYERS: [Layer; 8] = [
    layer("c3_224_k3", 3, 224, 64, 3),
    layer("c64_56_k3", 64, 56, 64, 3),
    layer("c128_28_k3", 128, 28, 128, 3),
    layer("c256_14_k3", 256, 14, 256, 3),
    layer("c512_7_k3", 512, 7, 512, 3),
    layer("c64_56_1x1_256", 64, 56, 256, 1),
    Layer {
        stride: 2,
        ..layer("c3_224_k7s2", 3, 224, 64, 7)
    },
    Layer {
        groups: 32,
        direct: true,
        ..layer("dw32_112_k3", 32, 112, 32, 3)
    },
];

fn random(len: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..=1.0)).collect()
}

fn bench_layer(c: &mut Criterion, l: &Layer) {
    let spec = Conv2dSpec {
        filters: l.filters,
        kernel: [l.kernel, l.kernel],
        stride: [l.stride, l.stride],
        dilation: [1, 1],
        padding: Padding::Explicit { h: l.pad, w: l.pad },
        groups: l.groups,
    };
    let Ok(geom) = Conv2dGeometry::resolve(l.in_c, l.size, l.size, &spec) else {
        eprintln!("{}: geometry does not resolve, skipped", l.name);
        return;
    };
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let input = random(geom.in_len(), &mut rng);
    let weights = random(geom.weight_len(), &mut rng);
    let bias = random(geom.out_c, &mut rng);
    let mut output = vec![0.0f32; geom.out_len()];

    let mut group = c.benchmark_group(l.name);
    group.throughput(Throughput::Elements(2 * geom.macs()));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    type Kernel = fn(
        &Conv2dGeometry,
        &[f32],
        usize,
        &[f32],
        Option<&[f32]>,
        Activation,
        &mut [f32],
    ) -> Result<(), cnn_conv::KernelError>;
    let Ok(packed) = PackedWeights::new(&geom, &weights) else {
        eprintln!("{}: weights could not be packed, skipped", l.name);
        return;
    };
    group.bench_function("packed", |b| {
        b.iter(|| {
            let r = conv2d_packed(
                &geom,
                black_box(&input),
                1,
                &packed,
                Some(&bias),
                Activation::Relu,
                &mut output,
            );
            black_box(r.is_ok())
        })
    });
    // The im2col + GEMM packing where the production one is Winograd's.
    if cnn_conv::winograd::applies(&geom) {
        let kernel = cnn_conv::Kernel::selected();
        let orientation = cnn_conv::packed::Orientation::of(&geom, kernel);
        if let Ok(gemm) = PackedWeights::with_orientation(&geom, &weights, orientation, kernel) {
            group.bench_function("packed_gemm", |b| {
                b.iter(|| {
                    let r = conv2d_packed(
                        &geom,
                        black_box(&input),
                        1,
                        &gemm,
                        Some(&bias),
                        Activation::Relu,
                        &mut output,
                    );
                    black_box(r.is_ok())
                })
            });
        }
    }
    let mut kernels: Vec<(&str, Kernel)> =
        vec![("conv2d", conv2d), ("im2col_plain", conv2d_im2col_plain)];
    if l.direct {
        kernels.push(("direct", conv2d_direct));
    }
    for (name, kernel) in kernels {
        group.bench_function(name, |b| {
            b.iter(|| {
                let r = kernel(
                    &geom,
                    black_box(&input),
                    1,
                    &weights,
                    Some(&bias),
                    Activation::Relu,
                    &mut output,
                );
                black_box(r.is_ok())
            })
        });
    }
    group.finish();
}

/// Max and average pooling, 32x224x224, pool 2 stride 2 (throughput: input elements).
fn bench_pool(c: &mut Criterion) {
    let spec = Pool2dSpec {
        pool: [2, 2],
        stride: [2, 2],
        padding: Padding::Valid,
    };
    let Ok(geom) = Pool2dGeometry::resolve(32, 224, 224, &spec) else {
        return;
    };
    let mut rng = ChaCha8Rng::seed_from_u64(43);
    let input = random(geom.in_len(), &mut rng);
    let mut output = vec![0.0f32; geom.out_len()];
    let mut group = c.benchmark_group("pool32_224_p2");
    group.throughput(Throughput::Elements(geom.in_len() as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.bench_function("max", |b| {
        b.iter(|| black_box(max_pool2d(&geom, black_box(&input), 1, &mut output).is_ok()))
    });
    group.bench_function("avg", |b| {
        b.iter(|| black_box(avg_pool2d(&geom, black_box(&input), 1, &mut output).is_ok()))
    });
    group.finish();
}

/// Dense 4096 -> 1536 at batch 1 (throughput: bytes of weights, so it reads as bandwidth).
fn bench_dense(c: &mut Criterion) {
    let (inputs, units) = (4096, 1536);
    let mut rng = ChaCha8Rng::seed_from_u64(44);
    let x = random(inputs, &mut rng);
    let w = random(inputs * units, &mut rng);
    let bias = random(units, &mut rng);
    let mut out = vec![0.0f32; units];
    let mut group = c.benchmark_group("dense4096_1536_b1");
    group.throughput(Throughput::Bytes((4 * inputs * units) as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.bench_function("dense", |b| {
        b.iter(|| {
            let r = dense(
                black_box(&x),
                1,
                inputs,
                &w,
                Some(&bias),
                Activation::Relu,
                &mut out,
            );
            black_box(r.is_ok())
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    for l in &LAYERS {
        bench_layer(c, l);
    }
    bench_pool(c);
    bench_dense(c);
}

criterion_group!(conv_benches, benches);
criterion_main!(conv_benches);
