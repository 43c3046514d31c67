//! `cnn bench`: times a model's forward pass on this machine — per layer (median over the
//! timed iterations, GFLOP/s counting 2 x MACs, share of the pass) and whole (median latency,
//! images per second) — with a chosen number of threads and batch size, plus the process's peak
//! resident memory and the largest column buffer of a layer (`column_bytes_allocated` of
//! `cnn explain`: a worker's unfolded panels, or a channels-last copy and a worker's output
//! tile). Medians, not means: a
//! shared machine's hiccups should not move the figure. Against a roofline: the kernel build
//! in use (`CNN_KERNEL`) and its measured multiply-add peak on one core, with each layer's and
//! the whole pass's share of it (times the threads).

use crate::{random_input, Model};
use serde::Serialize;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct BenchOptions {
    pub threads: usize,
    pub iters: usize,
    pub warmup: usize,
    pub batch: usize,
    pub seed: u64,
}

/// One layer of `bench --format json`.
#[derive(Debug, Serialize)]
pub struct LayerBench {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub median_ms: f64,
    pub gflops: f64,
    pub share: f64,
    /// `gflops` over the peak of the threads used (`fma_peak_gflops * threads`).
    pub peak_share: f64,
}

/// `bench --format json`.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub threads: usize,
    pub batch: usize,
    pub iters: usize,
    pub median_ms: f64,
    pub p10_ms: f64,
    pub p90_ms: f64,
    pub images_per_s: f64,
    pub gflops: f64,
    /// The kernel build that ran (`avx512`, `avx2`, `portable`).
    pub kernel: String,
    /// Its micro-kernel: tile, vector lanes, packing, epilogues.
    pub gemm_kernel: crate::report::kernel::KernelJson,
    /// Who chose it: `"cpu"` (the best this CPU runs) or `"CNN_KERNEL"`.
    pub kernel_chosen_by: String,
    /// Its measured multiply-add peak on one core, GFLOP/s.
    pub fma_peak_gflops: f64,
    /// `gflops` over the peak of the threads used.
    pub peak_share: f64,
    pub peak_rss_bytes: Option<u64>,
    pub largest_column_buffer_bytes: u64,
    pub layers: Vec<LayerBench>,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The process's peak resident set (Linux `VmHWM`), if the platform reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// What the report says about one timed layer.
#[derive(Debug, Clone)]
pub struct LayerInfo {
    pub name: String,
    pub type_name: String,
    /// Multiply-accumulates of one image.
    pub macs: u64,
}

/// The static facts of a timed network.
#[derive(Debug, Clone)]
pub struct Network {
    pub name: String,
    pub layers: Vec<LayerInfo>,
    /// Multiply-accumulates of one image.
    pub total_macs: u64,
    pub largest_column_buffer_bytes: u64,
}

impl Network {
    /// The static facts of `graph`, planned at `batch` (MACs per image).
    pub fn of_graph(graph: &cnn_graph::Graph, batch: usize) -> Self {
        let batch = batch.max(1) as u64;
        Network {
            name: graph.name.clone(),
            layers: graph
                .nodes
                .iter()
                .map(|l| LayerInfo {
                    name: l.name.clone(),
                    type_name: l.type_name.clone(),
                    macs: l.macs / batch,
                })
                .collect(),
            total_macs: graph.total_macs() / batch,
            largest_column_buffer_bytes: cnn_graph::explain(graph)
                .iter()
                .map(|e| e.column_bytes_allocated)
                .max()
                .unwrap_or(0),
        }
    }
}

/// Runs `forward` (which adds each layer's time to its slot) `opts.warmup` times untimed and
/// `opts.iters` times timed on a pool of `opts.threads`, and reports medians.
pub fn measure<F>(net: &Network, opts: BenchOptions, mut forward: F) -> Result<BenchReport, String>
where
    F: FnMut(&mut [Duration]) -> Result<(), String> + Send,
{
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.max(1))
        .build()
        .map_err(|e| format!("cannot start {} threads: {e}", opts.threads))?;
    let layers = net.layers.len();
    let iters = opts.iters.max(1);
    let mut totals = Vec::with_capacity(iters);
    let mut per_layer: Vec<Vec<f64>> = vec![Vec::with_capacity(iters); layers];
    pool.install(|| -> Result<(), String> {
        let mut times = vec![Duration::ZERO; layers];
        for _ in 0..opts.warmup {
            forward(&mut times)?;
        }
        for _ in 0..iters {
            times.iter_mut().for_each(|t| *t = Duration::ZERO);
            let start = Instant::now();
            forward(&mut times)?;
            totals.push(ms(start.elapsed()));
            for (acc, t) in per_layer.iter_mut().zip(&times) {
                acc.push(ms(*t));
            }
        }
        Ok(())
    })?;
    totals.sort_by(f64::total_cmp);
    let isa = cnn_conv::isa::selected();
    let peak = cnn_conv::isa::fma_peak_gflops(isa, 60);
    let roof = peak * opts.threads.max(1) as f64;
    let share_of_peak = |g: f64| if roof > 0.0 { g / roof } else { 0.0 };
    let medians: Vec<f64> = per_layer
        .iter_mut()
        .map(|v| {
            v.sort_by(f64::total_cmp);
            percentile(v, 0.5)
        })
        .collect();
    let layer_sum: f64 = medians.iter().sum();
    let batch = opts.batch.max(1) as f64;
    let median = percentile(&totals, 0.5);
    let gflops = |macs: u64, t_ms: f64| {
        if t_ms > 0.0 {
            2.0 * macs as f64 * batch / (t_ms * 1e-3) / 1e9
        } else {
            0.0
        }
    };
    Ok(BenchReport {
        model: net.name.clone(),
        threads: opts.threads.max(1),
        batch: opts.batch.max(1),
        iters,
        median_ms: median,
        p10_ms: percentile(&totals, 0.1),
        p90_ms: percentile(&totals, 0.9),
        images_per_s: if median > 0.0 {
            batch / (median * 1e-3)
        } else {
            0.0
        },
        gflops: gflops(net.total_macs, median),
        kernel: isa.name().to_string(),
        gemm_kernel: crate::report::kernel::KernelJson::selected(),
        kernel_chosen_by: match cnn_conv::isa::requested() {
            Ok(Some(_)) => cnn_conv::isa::KERNEL_VAR.to_string(),
            _ => "cpu".to_string(),
        },
        fma_peak_gflops: peak,
        peak_share: share_of_peak(gflops(net.total_macs, median)),
        peak_rss_bytes: peak_rss_bytes(),
        largest_column_buffer_bytes: net.largest_column_buffer_bytes,
        layers: net
            .layers
            .iter()
            .zip(&medians)
            .map(|(l, &t)| LayerBench {
                name: l.name.clone(),
                type_name: l.type_name.clone(),
                median_ms: t,
                gflops: gflops(l.macs, t),
                share: if layer_sum > 0.0 { t / layer_sum } else { 0.0 },
                peak_share: share_of_peak(gflops(l.macs, t)),
            })
            .collect(),
    })
}

/// Times `model` (weights already allocated or loaded).
pub fn bench(model: &Model, opts: BenchOptions) -> Result<BenchReport, String> {
    model.weights().ok_or("the model has no weights")?;
    let plan = &model.plan;
    let x = random_input(plan, opts.batch.max(1), opts.seed)?;
    let net = Network::of_graph(&plan.graph, 1);
    measure(&net, opts, |times| {
        model
            .forward_profiled(&x, times)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

/// The terminal table.
pub fn render(r: &BenchReport) -> String {
    use crate::report::table::{Align, Table};
    use cnn_model::format::human_bytes;
    let mut t = Table::new(&[
        ("layer (type)", Align::Left),
        ("median ms", Align::Right),
        ("GFLOP/s", Align::Right),
        ("of peak", Align::Right),
        ("share", Align::Right),
    ]);
    for l in &r.layers {
        t.row(vec![
            format!("{} ({})", l.name, l.type_name),
            format!("{:.3}", l.median_ms),
            if l.gflops > 0.0 {
                format!("{:.1}", l.gflops)
            } else {
                "-".to_string()
            },
            if l.gflops > 0.0 {
                format!("{:.0}%", 100.0 * l.peak_share)
            } else {
                "-".to_string()
            },
            format!("{:.1}%", 100.0 * l.share),
        ]);
    }
    format!(
        "Model \"{}\": {} thread(s), batch {}, {} timed iterations (medians)\n\
         Kernels: {}; {}; measured multiply-add peak {:.1} GFLOP/s per core, \
         {:.1} for {} thread(s)\n\n{}\
         Forward pass: median {:.3} ms (p10 {:.3}, p90 {:.3}), {:.1} images/s, {:.1} GFLOP/s \
         ({:.0}% of peak)\n\
         Peak resident memory: {}; largest column buffer of a layer: {}\n",
        r.model,
        r.threads,
        r.batch,
        r.iters,
        r.gemm_kernel.words(),
        if r.kernel_chosen_by == "cpu" {
            format!(
                "the best this CPU runs ({} picks another)",
                crate::report::kernel::override_hint()
            )
        } else {
            "set by CNN_KERNEL".to_string()
        },
        r.fma_peak_gflops,
        r.fma_peak_gflops * r.threads as f64,
        r.threads,
        t.render(),
        r.median_ms,
        r.p10_ms,
        r.p90_ms,
        r.images_per_s,
        r.gflops,
        100.0 * r.peak_share,
        r.peak_rss_bytes
            .map(|b| human_bytes(b as u128))
            .unwrap_or_else(|| "not reported on this platform".to_string()),
        human_bytes(r.largest_column_buffer_bytes as u128),
    )
}
