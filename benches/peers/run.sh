#!/usr/bin/env bash
# The peer comparison in one command (from anywhere):  bash benches/peers/run.sh
#
# 1. Python venv with the pinned onnx/onnxruntime/numpy (requirements.txt);
# 2. make_models.py: one single-Conv ONNX model + input + weights per layer, into models/;
# 3. builds the standalone Rust harness (engine, tract, candle) in release;
# 4. for each pass and thread count: the harness and ort_bench.py (alternating which goes first);
# 5. report.py merges the JSON in results/ and rewrites docs/performance.md.
#
# Environment knobs: PEERS_VENV, CARGO_TARGET_DIR (default <repo>/target-peers), PEERS_THREADS
# ("1 2"), PEERS_ROUNDS (5), PEERS_RUNS (10), PEERS_PASSES (4), PEERS_TWO_CORE_ROUNDS (8: with N > 1,
# extra rounds of the engine and the control until that many saw the control scale >= 1.8x, at
# most 30 s per layer; 0 turns them off), PEERS_RUSTFLAGS
# (-C target-cpu=native), PEERS_QUIET_WAIT (60: seconds to wait, before each timed step, for the
# machine to be at most 10% busy with other work), PEERS_QUIET_BUDGET (240: seconds each timed
# step may wait in all, layer by layer, for the same). After that it runs anyway, and the report
# shows the foreign load each layer was measured under.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$HERE"

if [[ -n "${PEERS_VENV:-}" ]]; then VENV=$PEERS_VENV
elif [[ -x /work/venv/bin/python ]]; then VENV=/work/venv
else VENV=$HERE/.venv; fi
THREADS=${PEERS_THREADS:-1 2}
ROUNDS=${PEERS_ROUNDS:-5}
TWO_CORE_ROUNDS=${PEERS_TWO_CORE_ROUNDS:-8}
RUNS=${PEERS_RUNS:-10}
PASSES=${PEERS_PASSES:-4}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-peers}
export RUSTFLAGS=${PEERS_RUSTFLAGS:--C target-cpu=native}
RESULTS=$HERE/results

QUIET_WAIT=${PEERS_QUIET_WAIT:-60}
QUIET_BUDGET=${PEERS_QUIET_BUDGET:-240}

say() { printf '\n== %s [%s]\n' "$*" "$(date +%H:%M:%S)"; }

# Busy share of the whole VM's CPU over the next 3 s, in percent (nothing of ours runs meanwhile).
busy_pct() {
    local a b
    a=$(head -1 /proc/stat); sleep 3; b=$(head -1 /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {
        split(a, x, " "); split(b, y, " "); busy = 0; tot = 0
        for (i = 2; i <= 9; i++) { d = y[i] - x[i]; tot += d; if (i != 5 && i != 6) busy += d }
        printf "%d", (tot > 0 ? 100 * busy / tot : 0) }'
}
# Waits (up to PEERS_QUIET_WAIT s) until another tenant leaves the machine at most 10% busy.
wait_quiet() {
    local start=$SECONDS pct
    while pct=$(busy_pct); ((pct > 10 && SECONDS - start < QUIET_WAIT)); do
        echo "   machine ${pct}% busy with other work; waiting (up to ${QUIET_WAIT}s in all)"
        sleep 7
    done
    echo "   machine ${pct}% busy before this step"
}

say "Python environment: $VENV"
[[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
PY=$VENV/bin/python
"$PY" -m pip install -q -r requirements.txt

say "Models"
"$PY" make_models.py

# What is measured is what crates/conv holds when the harness is built: note the commit now, and
# any uncommitted change to what the harness compiles of it (its sources and manifest, and the
# cnn-tensor crate it depends on; not its tests, benches or examples).
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
DIRTY=$(git -C "$ROOT" status --short crates/conv/src crates/conv/Cargo.toml crates/tensor 2>/dev/null \
    | awk '{print $2}' | tr '\n' ' ')

say "Building the Rust harness (release; the first build of tract takes 6-10 min)"
cargo build --release --manifest-path "$HERE/Cargo.toml"
BIN=$CARGO_TARGET_DIR/release/cnn-peers

rm -rf "$RESULTS"
mkdir -p "$RESULTS"
"$PY" - "$RESULTS/meta.json" <<EOF
import json, sys, datetime, platform, numpy, onnx
json.dump({
    "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    "rustc": "$(rustc --version)",
    "rustflags": "$RUSTFLAGS",
    "commit": "$COMMIT",
    "dirty": "$DIRTY".split(),
    "python": "Python " + platform.python_version(),
    "onnx": onnx.__version__,
    "numpy": numpy.__version__,
}, open(sys.argv[1], "w"), indent=1)
EOF

rust() { wait_quiet; "$BIN" --threads "$1" --rounds "$ROUNDS" --runs "$RUNS" --quiet-budget "$QUIET_BUDGET" \
    --two-core-rounds "$TWO_CORE_ROUNDS" --out "$RESULTS/rust_t$1_p$2.json"; }
ortb() { wait_quiet; "$PY" ort_bench.py --threads "$1" --rounds "$ROUNDS" --runs "$RUNS" --quiet-budget "$QUIET_BUDGET" \
    --out "$RESULTS/ort_t$1_p$2.json"; }

# The harness must run first once: it writes the direct reference (models/*.ref.npy) that
# ort_bench.py checks against.
for ((p = 1; p <= PASSES; p++)); do
    for t in $THREADS; do
        if ((p % 2 == 1)); then
            say "pass $p, $t thread(s): engine/tract/candle"; rust "$t" "$p"
            say "pass $p, $t thread(s): onnxruntime"; ortb "$t" "$p"
        else
            say "pass $p, $t thread(s): onnxruntime"; ortb "$t" "$p"
            say "pass $p, $t thread(s): engine/tract/candle"; rust "$t" "$p"
        fi
    done
done

say "Report"
"$PY" report.py --results "$RESULTS" --out "$ROOT/docs/performance.md"
