#!/usr/bin/env python3
"""Time onnxruntime (CPU) on ONNX network fixtures, as a reference for the engine.

For each model dir (model.onnx + test_data_set_0/input_0.pb), runs onnxruntime with
CPUExecutionProvider, ORT_ENABLE_ALL, sequential execution, inter_op_num_threads=1 and
intra_op_num_threads 1 then 2: 5 warmup runs, then N timed runs (time.perf_counter).
Prints a markdown table (median, p10, p90 in ms) and optionally writes JSON.

With --cnn PATH (the built `cnn` binary), each onnxruntime measurement is followed at once by
`cnn bench MODEL --threads T` with the same warmup and run count, so both engines are timed in
the same run under the same machine load, and the table gains the engine's median and the
ratio engine / onnxruntime.

Usage (from the repository root):
    /work/venv/bin/python scripts/onnx_timing.py tests/onnx/networks/* /work/onnx-extra/resnet18 \
        [--runs 30] [--threads 1 2] [--json timings.json] [--cnn target/release/cnn]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

WARMUP = 5


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def time_model(model_dir: str, threads: int, runs: int) -> dict:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), so,
                                providers=["CPUExecutionProvider"])
    t = onnx.load_tensor(os.path.join(model_dir, "test_data_set_0", "input_0.pb"))
    feed = {sess.get_inputs()[0].name: numpy_helper.to_array(t)}
    for _ in range(WARMUP):
        sess.run(None, feed)
    ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        ms.append((time.perf_counter() - t0) * 1e3)
    a = np.array(ms)
    return {
        "model": os.path.basename(os.path.normpath(model_dir)),
        "path": model_dir,
        "intra_op_threads": threads,
        "runs": runs,
        "median_ms": round(float(np.median(a)), 3),
        "p10_ms": round(float(np.percentile(a, 10)), 3),
        "p90_ms": round(float(np.percentile(a, 90)), 3),
    }


def time_engine(cnn: str, model_dir: str, threads: int, runs: int) -> dict:
    out = subprocess.run(
        [cnn, "bench", os.path.join(model_dir, "model.onnx"), "--threads", str(threads),
         "--iters", str(runs), "--warmup", str(WARMUP), "--format", "json"],
        check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    return {"median_ms": r["median_ms"], "p10_ms": r["p10_ms"], "p90_ms": r["p90_ms"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dirs", nargs="+")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json", help="write results to this JSON file")
    ap.add_argument("--cnn", help="the cnn binary: time `cnn bench` right after each ORT run")
    args = ap.parse_args()

    info = {"onnxruntime": ort.__version__, "cpu": cpu_model(), "nproc": os.cpu_count(),
            "warmup": WARMUP, "runs": args.runs,
            "graph_optimization": "ORT_ENABLE_ALL", "execution_mode": "sequential",
            "inter_op_threads": 1}
    results = []
    for d in args.model_dirs:
        for th in args.threads:
            r = time_model(d, th, args.runs)
            if args.cnn:
                r["engine"] = time_engine(args.cnn, d, th, args.runs)
            results.append(r)

    print(f"onnxruntime {info['onnxruntime']}, CPUExecutionProvider, ORT_ENABLE_ALL, "
          f"sequential, inter_op 1; CPU: {info['cpu']} ({info['nproc']} logical CPUs); "
          f"warmup {WARMUP}, {args.runs} timed runs\n")
    if args.cnn:
        print("| model | threads | onnxruntime median ms (p10-p90) | cnn median ms (p10-p90) "
              "| cnn / onnxruntime |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for r in results:
            e = r["engine"]
            print(f"| {r['model']} | {r['intra_op_threads']} | {r['median_ms']:.2f} "
                  f"({r['p10_ms']:.2f}-{r['p90_ms']:.2f}) | {e['median_ms']:.2f} "
                  f"({e['p10_ms']:.2f}-{e['p90_ms']:.2f}) | {e['median_ms'] / r['median_ms']:.2f} |")
    else:
        print("| model | intra-op threads | median ms | p10 ms | p90 ms |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for r in results:
            print(f"| {r['model']} | {r['intra_op_threads']} | {r['median_ms']:.2f} | "
                  f"{r['p10_ms']:.2f} | {r['p90_ms']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "results": results}, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
