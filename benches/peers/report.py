#!/usr/bin/env python3
"""Merges the peer comparison's JSON results and writes docs/performance.md.

Reads RESULTS/rust_t<N>_p<P>.json (the Rust harness: engine, tract, candle) and
RESULTS/ort_t<N>_p<P>.json (ort_bench.py) for every thread count N and pass P, takes per cell the
median over passes of each pass's median, and writes the Markdown report with the machine,
versions, one table per thread count, the engine's 2-thread scaling and the noise seen.

Usage: report.py --results DIR --out docs/performance.md
"""

import argparse
import datetime
import glob
import json
import os
import re
import statistics
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
RUST_IMPLS = ["engine", "tract", "candle"]  # plus "engine_1t", "machine", "machine_1t" with N > 1
# A round counts as one where the VM gave both cores when the control scaled at least this much.
TWO_CORES = 1.8


def sh(*cmd, cwd=None):
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def machine():
    info = {}
    for line in sh("lscpu").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            info[k.strip()] = v.strip()
    flags = info.get("Flags", "").split()
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
    except OSError:
        pass
    return {
        "model": info.get("Model name", "unknown"),
        "family": info.get("CPU family", "?"),
        "model_no": info.get("Model", "?"),
        "cpus": info.get("CPU(s)", "?"),
        "threads_per_core": info.get("Thread(s) per core", "?"),
        "hypervisor": info.get("Hypervisor vendor", ""),
        "l2": info.get("L2 cache", "?"),
        "l3": info.get("L3 cache", "?"),
        "avx512f": "avx512f" in flags,
        "avx2": "avx2" in flags,
        "mem_gib": mem_kib / 2**20,
    }


def lock_versions():
    out = {}
    try:
        with open(os.path.join(HERE, "Cargo.lock")) as f:
            text = f.read()
    except OSError:
        return out
    for name, ver in re.findall(r'name = "([^"]+)"\nversion = "([^"]+)"', text):
        out.setdefault(name, ver)
    return out


def load(results, kind):
    """{threads: [doc per pass]} for kind 'rust' or 'ort'."""
    by_t = {}
    for path in sorted(glob.glob(os.path.join(results, f"{kind}_t*_p*.json"))):
        m = re.search(r"_t(\d+)_p(\d+)\.json$", path)
        with open(path) as f:
            by_t.setdefault(int(m.group(1)), []).append(json.load(f))
    return by_t


def cells(docs):
    """{layer: {impl: [result per pass]}} from a list of per-pass docs."""
    out = {}
    for d in docs:
        for layer in d["layers"]:
            for impl, r in layer["results"].items():
                out.setdefault(layer["name"], {}).setdefault(impl, []).append(r)
    return out


def med(results):
    """Median over passes of the pass medians, or None if any pass failed its check."""
    if not results or any("median_ms" not in r for r in results):
        return None
    return statistics.median(r["median_ms"] for r in results)


def interleaved_scaling(impls, one="engine_1t", two="engine"):
    """Median over passes of one / two (both timed in the same rounds of a 2-thread run), or None."""
    ones, twos = impls.get(one, []), impls.get(two, [])
    ratios = [a["median_ms"] / b["median_ms"] for a, b in zip(ones, twos)
              if "median_ms" in a and "median_ms" in b]
    return statistics.median(ratios) if ratios else None


def two_core_rounds(impls):
    """The engine's scaling over the rounds (of every pass) in which the control scaled at least
    TWO_CORES: (median of engine_1t / engine round medians, rounds kept, rounds in all), or None."""
    names = ("engine_1t", "engine", "machine_1t", "machine")
    passes = zip(*(impls.get(n, []) for n in names))
    kept, total = [], 0
    for e1, e2, m1, m2 in passes:
        rms = [r.get("round_medians_ms") or [] for r in (e1, e2, m1, m2)]
        for a, b, c, d in zip(*rms):
            total += 1
            if c / d >= TWO_CORES:
                kept.append(a / b)
    return (statistics.median(kept), len(kept), total) if total else None


def extra_two_core_rounds(docs, name):
    """The engine's scaling over the extra rounds of `--two-core-rounds` (all passes) in which the
    control scaled at least TWO_CORES: the median of its one-thread round medians over all the
    extra rounds, over the median of its two-thread ones in the rounds kept (so that choosing
    rounds by the control cannot favour rounds whose one-thread times were slow), with the
    rounds kept and the extra rounds in all; or None."""
    ones, twos, total = [], [], 0
    for d in docs:
        for layer in d["layers"]:
            tc = layer.get("two_core")
            if layer["name"] == name and tc:
                ones += tc.get("engine_1t_round_ms", [])
                twos += tc.get("engine_2t_kept_round_ms", [])
                total += tc["rounds"]
    if not total:
        return None
    if not (ones and twos):
        return (None, len(twos), total)
    return (statistics.median(ones) / statistics.median(twos), len(twos), total)


def fmt_scaling(x):
    return f"{x:.2f}x" if x else "-"


def fmt_ms(v):
    if v is None:
        return "failed check"
    return f"{v:.3g}" if v < 10 else f"{v:.1f}"


def fmt_ratio(a, b):
    if a is None or b is None:
        return "-"
    return f"{a / b:.2f}"


def geomean(xs):
    xs = [x for x in xs if x]
    if not xs:
        return float("nan")
    p = 1.0
    for x in xs:
        p *= x
    return p ** (1 / len(xs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "performance.md"))
    args = ap.parse_args()

    rust, ortr = load(args.results, "rust"), load(args.results, "ort")
    threads = sorted(set(rust) | set(ortr))
    if not threads:
        raise SystemExit(f"no results in {args.results}")
    meta_path = os.path.join(args.results, "meta.json")
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {}

    mach = machine()
    lock = lock_versions()
    ort_version = next((d["onnxruntime"] for ds in ortr.values() for d in ds), "?")
    commit = meta.get("commit") or sh("git", "-C", ROOT, "rev-parse", "--short", "HEAD") or "?"
    if "dirty" in meta:
        dirty = meta["dirty"]
    else:
        dirty = [l.split()[-1] for l in sh("git", "-C", ROOT, "status", "--short", "crates/conv/src",
                                           "crates/conv/Cargo.toml", "crates/tensor").splitlines()]
    layers_meta = json.load(open(os.path.join(HERE, "models", "layers.json")))["layers"] if os.path.exists(
        os.path.join(HERE, "models", "layers.json")) else []
    names = [l["name"] for l in layers_meta] or sorted({n for ds in rust.values() for d in ds for n in [x["name"] for x in d["layers"]]})
    flops = {l["name"]: l["flops"] for l in layers_meta}

    # table[t][layer][impl] = median ms (or None)
    table, raw = {}, {}
    for t in threads:
        c = cells(rust.get(t, []))
        for lname, impls in cells(ortr.get(t, [])).items():
            c.setdefault(lname, {}).update(impls)
        raw[t] = c
        table[t] = {n: {impl: med(v) for impl, v in c.get(n, {}).items()} for n in names}

    rd = next((d for ds in rust.values() for d in ds), {})
    od = next((d for ds in ortr.values() for d in ds), {})
    passes = max((len(v) for v in list(rust.values()) + list(ortr.values())), default=0)
    L = []
    w = L.append
    w("<!-- Generated by benches/peers/run.sh (report.py); rerun it rather than editing by hand. -->")
    w("# Performance: the engine's conv2d against tract, candle and onnxruntime")
    w("")
    w("One convolution layer at a time, batch 1, f32, NCHW, no bias, on 8 layer shapes from VGG/ResNet/MobileNet. "
      "Every implementation gets the same fixed-seed input and weights, and its output is checked against the "
      "engine's naive direct convolution (`cnn_conv::conv2d_direct`, f64 accumulation) at max abs diff < 1e-3 "
      "before it is timed.")
    w("")
    w("## Setup")
    w("")
    w(f"- **Measured**: {meta.get('date', datetime.datetime.now().strftime('%Y-%m-%d %H:%M %Z'))}, "
      f"engine at commit `{commit}`" + (" (**uncommitted kernel changes present** in `crates/conv`: "
      + ", ".join(f"`{d.removeprefix('crates/conv/')}`" for d in dirty) + ")" if dirty else " (clean `crates/conv`)")
      + ", as built at the start of the run.")
    w(f"- **Machine**: {mach['model']} (family {mach['family']}, model {mach['model_no']}), {mach['cpus']} vCPU(s) ({mach['threads_per_core']} thread(s) per core"
      + (f", {mach['hypervisor']} guest" if mach["hypervisor"] else "") + f"), L2 {mach['l2']}, L3 {mach['l3']}, "
      f"{mach['mem_gib']:.0f} GiB; avx512f: {'yes' if mach['avx512f'] else 'no'}, avx2: {'yes' if mach['avx2'] else 'no'}.")
    if not mach["avx512f"]:
        w(f"- **Not the anchors' machine.** `shared/docs/perf-anchors.md` was measured on AMD EPYC family 26 (Zen 5) "
          f"with AVX-512; this one is family {mach['family']} model {mach['model_no']} without AVX-512, so its FMA peak "
          "is at most 32 flop/cycle/core (two 256-bit pipes), half the anchors' 64, and the anchors' absolute times "
          "and peak do not apply. Only ratios between implementations measured side by side here carry over, and "
          "even they may shift on AVX-512 hardware, where onnxruntime, tract and gemm switch to 512-bit kernels.")
    w(f"- **Versions**: {meta.get('rustc', sh('rustc', '--version'))}; tract-onnx {lock.get('tract-onnx', '?')} "
      f"(tract-linalg {lock.get('tract-linalg', '?')}, `multithread-mm`); candle-core {lock.get('candle-core', '?')} "
      f"(gemm {lock.get('gemm', '?')}); the engine's own packed GEMM (6x16 AVX2+FMA micro-kernel, chosen at run time); "
      f"onnxruntime {ort_version} (PyPI wheel, CPU EP); {meta.get('python', 'Python ?')}, onnx {meta.get('onnx', '?')}, numpy {meta.get('numpy', '?')}.")
    w(f"- **Rust build**: `--release`, RUSTFLAGS `{meta.get('rustflags', '?')}`; the engine crate with codegen-units = 1 "
      "(as its benches), the peers with cargo's default.")
    w(f"- **Timing**: per layer, each implementation is warmed up (>= 3 runs and 0.2 s), then run in "
      f"{rd.get('rounds', '?')} rounds of {rd.get('runs_per_round', '?')} runs, the implementations interleaved "
      f"round-robin (order rotating each round); each cell is the median of those "
      f"{(rd.get('rounds') or 0) * (rd.get('runs_per_round') or 0)} single-run times, and, over the {passes} pass(es) "
      "of the whole suite (the harness and onnxruntime alternate which goes first), the median of the pass medians.")
    w("- **Engine path**: the production path a model runs: the weights packed once into the GEMM's panels "
      "(`PackedWeights::new`, outside the timed loop, as tract and onnxruntime prepare theirs when a model is loaded), "
      "then `conv2d_packed` (depthwise: the direct kernel).")
    w("- **Threads**: the engine runs `conv2d_packed` inside an N-thread `rayon::ThreadPool::install`; tract uses "
      "`Executor::multithread(N)` for N = 2 and its single-thread default for N = 1; candle gets "
      "`RAYON_NUM_THREADS=N`; onnxruntime runs `InferenceSession.run` from Python with intra_op_num_threads = N, "
      "inter_op = 1, ORT_SEQUENTIAL, graph optimisation level ALL (the NCHWc path; its reorders are included, "
      "as is Python's call overhead of ~10-20 us). onnxruntime runs in its own process, so it is interleaved "
      "with the Rust implementations only at the level of passes, not of rounds.")
    w("- **Columns**: ms = median milliseconds per call; GFLOP/s = FLOPs / engine time, with FLOPs = "
      "2·C_out·OH·OW·C_in·k²/groups; engine/ORT and engine/tract = engine ms ÷ peer ms, so **below 1 means the "
      "engine is faster**, above 1 means it is slower by that factor.")
    w("")
    w("| layer | shape | MFLOP |")
    w("|---|---|---|")
    for l in layers_meta:
        g = f", groups {l['groups']}" if l["groups"] > 1 else ""
        w(f"| {l['name']} | {l['in_c']}x{l['size']}² → {l['filters']}x{l['out_size']}², k{l['kernel']} s{l['stride']} p{l['pad']}{g} | {l['flops'] / 1e6:.1f} |")
    w("")

    for t in threads:
        tb = table[t]
        w(f"## {t} thread{'s' if t > 1 else ''}")
        w("")
        w("| layer | engine ms | GFLOP/s | tract ms | candle ms | onnxruntime ms | engine/ORT | engine/tract |")
        w("|---|---|---|---|---|---|---|---|")
        r_ort, r_tract = [], []
        for n in names:
            c = tb[n]
            e, tr, ca, o = c.get("engine"), c.get("tract"), c.get("candle"), c.get("ort_all")
            gf = f"{flops[n] / (e * 1e6):.0f}" if e and n in flops else "-"
            if e and o:
                r_ort.append(e / o)
            if e and tr:
                r_tract.append(e / tr)
            w(f"| {n} | {fmt_ms(e)} | {gf} | {fmt_ms(tr)} | {fmt_ms(ca)} | {fmt_ms(o)} | {fmt_ratio(e, o)} | {fmt_ratio(e, tr)} |")
        w("")
        w(f"Geometric mean over the layers: engine/ORT {geomean(r_ort):.2f}, engine/tract {geomean(r_tract):.2f}. "
          f"The engine is faster than ORT on {sum(r < 1 for r in r_ort)} of {len(r_ort)} layers and faster than "
          f"tract on {sum(r < 1 for r in r_tract)} of {len(r_tract)}.")
        w("")

    by_pass_2t = raw.get(2, {})
    if 1 in table and 2 in table:
        w("## 2-thread scaling (1-thread ms ÷ 2-thread ms)")
        w("")
        w("The first engine column and the peers' compare the 1-thread and the 2-thread runs of the suite, "
          "which happen minutes apart; this shared VM's speed drifts between such runs (the same cell moves "
          "by 10-30% from pass to pass), so those ratios carry that drift. The 2-thread runs also time the "
          "engine on one thread in the same rounds (`engine_1t`, interleaved with the 2-thread engine and the "
          "peers); **interleaved** is, per pass, its median over the 2-thread engine's, and the median of that "
          "over the passes: both sides under the same load.")
        w("")
        w("**machine** is the control, timed in the same rounds: a fixed amount of register-only FMA work "
          "(no memory traffic, nothing shared) split in two on the 2-thread pool, against the whole of it on "
          "one thread. It is the speed-up this VM gave a perfectly divisible job while the layer was timed: "
          "2.00x on two free cores, less while another tenant holds one of them. The next column keeps only "
          f"the rounds in which the control scaled at least {TWO_CORES}x (the VM gave both cores) and gives the "
          "engine's median scaling over those rounds, with how many of all rounds they were. When the harness "
          "ran with `--two-core-rounds R` (`PEERS_TWO_CORE_ROUNDS`), these are extra rounds of only the engine "
          "and the control (each on two threads and on one), repeated until R of them saw the control scale that "
          "much or a time budget ran out, per layer and pass; the cell is then the engine's median one-thread "
          "time over all those extra rounds divided by its median two-thread time over the rounds kept.")
        w("")
        w("| layer | engine 1T ms | engine 2T ms | engine | engine, interleaved | machine, interleaved "
          f"| engine, rounds where machine ≥ {TWO_CORES}x | tract | candle | onnxruntime |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        for n in names:
            a, b = table[1][n], table[2][n]

            def sc(impl):
                x, y = a.get(impl), b.get(impl)
                return f"{x / y:.2f}x" if x and y else "-"

            impls = by_pass_2t.get(n, {})
            two = extra_two_core_rounds(rust.get(2, []), n) or two_core_rounds(impls)
            two_cell = f"{two[0]:.2f}x ({two[1]} of {two[2]})" if two and two[1] else (
                f"- (0 of {two[2]})" if two else "-")
            w(f"| {n} | {fmt_ms(a.get('engine'))} | {fmt_ms(b.get('engine'))} | {sc('engine')} | "
              f"**{fmt_scaling(interleaved_scaling(impls))}** | "
              f"{fmt_scaling(interleaved_scaling(impls, 'machine_1t', 'machine'))} | {two_cell} | "
              f"{sc('tract')} | {sc('candle')} | {sc('ort_all')} |")
        w("")
        def control_gflops(name):
            return [r["gflops"] for impls in by_pass_2t.values() for r in impls.get(name, []) if "gflops" in r]

        gf1, gf2 = control_gflops("machine_1t"), control_gflops("machine")
        if gf1 and gf2:
            w(f"The control ran at a median of {statistics.median(gf1):.0f} GFLOP/s on one thread and "
              f"{statistics.median(gf2):.0f} on two (256-bit FMA; the one-core peak is 32 flop per cycle).")
            w("")

    w("## onnxruntime detail: optimisation level ALL (NCHWc, used above) against EXTENDED (im2col + MLAS SGEMM)")
    w("")
    w("| layer | " + " | ".join(f"{t}T all ms | {t}T extended ms" for t in threads) + " |")
    w("|---|" + "---|---|" * len(threads))
    for n in names:
        w(f"| {n} | " + " | ".join(f"{fmt_ms(table[t][n].get('ort_all'))} | {fmt_ms(table[t][n].get('ort_extended'))}" for t in threads) + " |")
    w("")

    w("## Noise in this run")
    w("")
    for t in threads:
        within, rounds, across = [], [], []
        for n in names:
            for impl, rs in raw[t].get(n, {}).items():
                ok = [r for r in rs if "median_ms" in r]
                for r in ok:
                    within.append((r["p90_ms"] - r["p10_ms"]) / r["median_ms"])
                    rounds.append(r["round_spread"])
                if len(ok) > 1:
                    ms = [r["median_ms"] for r in ok]
                    across.append((max(ms) - min(ms)) / statistics.median(ms))
        line = (f"- {t} thread(s): within a run, (p90-p10)/median has a median of {100 * statistics.median(within):.0f}%; "
                f"the spread of the round medians (max-min)/median has a median of {100 * statistics.median(rounds):.0f}% "
                f"(max {100 * max(rounds):.0f}%)")
        if across:
            line += (f"; between passes the cell medians differ by a median of {100 * statistics.median(across):.0f}% "
                     f"(max {100 * max(across):.0f}%)")
        foreign = [l.get("foreign_cpu", 0.0) for ds in (rust.get(t, []), ortr.get(t, [])) for d in ds for l in d["layers"]]
        if foreign:
            line += (f"; other work on the VM took a median of {100 * statistics.median(foreign):.0f}% of its CPU "
                     f"while a layer was timed (max {100 * max(foreign):.0f}%)")
        w(line + ".")
    w("")

    w("Other work's share is the VM's busy CPU time (`/proc/stat`) minus the benchmark process's own, over the timed "
      "rounds of a layer. Before each attempt at a layer's rounds, the harness and `ort_bench.py` wait for it to drop "
      "to 10% or less (within a waiting budget, `PEERS_QUIET_BUDGET` s per step); when it was higher during the rounds "
      "they repeat them (up to 4 attempts) and keep the quietest attempt.")
    w("")
    w("## Caveats")
    w("")
    w("- This is a shared 2-vCPU VM: the host's load and clock drift (the anchors in `shared/docs/perf-anchors.md` saw the "
      "clock move between ~3.5 and ~4.1 GHz and the AVX-512 peak between 203 and 264 GFLOP/s per core). The anchors "
      "found differences below about **15% at 1 thread and 30% at 2 threads** not significant; this run's own noise "
      "(above) is the better guide for it. Compare implementations only within one run (as here), never against "
      "numbers from another day, and read single cells with that noise in mind: the geometric means and the "
      "consistent patterns across layers are sturdier than any one ratio.")
    w("- Other builds may have been running on the machine during the run; the interleaving spreads that over all "
      "implementations but does not remove it, and onnxruntime (another process) is interleaved only per pass.")
    if mach["avx512f"]:
        w("- For reference, the anchors measured ≈258 GFLOP/s per core (AVX-512 FMA) and ≈505 for both cores as the "
          "peak on their Zen 5 machine; check that this run's machine line matches theirs before using that.")
    else:
        w("- Absolute times and GFLOP/s here are **not comparable with `shared/docs/perf-anchors.md`**: see the machine "
          "note at the top.")
    w("- The engine's kernels were being optimised while this was measured; the numbers are for the commit above"
      + (" plus the uncommitted changes in `crates/conv` at that time." if dirty else "."))
    w("- candle allocates its output tensor per call (its API has no out-parameter) and tract's `state.run` returns a "
      "new tensor too; the engine writes into a preallocated buffer. At these sizes the allocation is a small "
      "fraction of the time, except possibly on the depthwise layer.")
    w("")
    w("## How to rerun")
    w("")
    w("```sh")
    w("bash benches/peers/run.sh        # from the repository root; ~6-10 min with a warm build (longer if it waits for a busy machine), +6-20 min for the first tract build")
    w("```")
    w("")
    w("It creates or reuses a Python venv (`PEERS_VENV`, default `/work/venv` if present, else `benches/peers/.venv`) "
      "with the pinned `benches/peers/requirements.txt`, writes the models (`make_models.py`), builds the standalone "
      "harness in `benches/peers/` (not part of the workspace; target dir `CARGO_TARGET_DIR`, default `target-peers/`), "
      "runs it and `ort_bench.py` for 1 and 2 threads, and regenerates this file with `report.py`. "
      "Knobs (environment): `PEERS_ROUNDS` (5), `PEERS_RUNS` (10), `PEERS_PASSES` (4), `PEERS_TWO_CORE_ROUNDS` (8), `PEERS_THREADS` (\"1 2\"), "
      "`PEERS_RUSTFLAGS` (`-C target-cpu=native`), `PEERS_QUIET_WAIT` (60), `PEERS_QUIET_BUDGET` (240). Raw per-run JSON (all samples' quantiles, per-round medians) "
      "lands in `benches/peers/results/` (git-ignored).")
    w("")
    with open(args.out, "w") as f:
        f.write("\n".join(L))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
