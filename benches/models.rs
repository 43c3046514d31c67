//! Whole-model benchmarks of the shipped models: latency at batch 1 and throughput at batch 8,
//! with the weights the models ship with (digits) or seeded random weights (the seed models).
//!
//! Throughput is reported as `Elements(images)`, so criterion's "elem/s" reads as images/s.
//! Run: `cargo bench --bench models` (or `-- digits` for one model).

use cnn::{random_input, Model, DEFAULT_MAX_WEIGHT_BYTES};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

/// Models small enough to bench in seconds (the 10^8- and 10^10-MAC seed models are left to
/// `cnn bench`).
const MODELS: [&str; 6] = [
    "digits",
    "lasagne_mnist",
    "vgg1",
    "vgg2",
    "mlp_784_2000_2000_10",
    "blog_4block_bias",
];

fn load(name: &str) -> Model {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut m = Model::plan_file(&dir.join(format!("{name}.toml"))).expect("shipped model plans");
    let weights = dir.join(format!("{name}.safetensors"));
    if weights.is_file() {
        m.load_weights(&weights, DEFAULT_MAX_WEIGHT_BYTES)
            .expect("shipped weights load");
    } else {
        m.allocate(0, DEFAULT_MAX_WEIGHT_BYTES)
            .expect("seed model allocates");
    }
    m
}

fn models(c: &mut Criterion) {
    for name in MODELS {
        let model = load(name);
        let mut group = c.benchmark_group(name);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        group.sample_size(20);
        for batch in [1usize, 8] {
            let x = random_input(&model.plan, batch, 1).expect("input allocates");
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(format!("batch{batch}"), |b| {
                b.iter(|| black_box(model.forward(black_box(&x)).expect("forward runs")))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, models);
criterion_main!(benches);
