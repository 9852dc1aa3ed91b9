#!/usr/bin/env bash
# `make bench-peers`: build the peers' venvs, run every tool on the protocol, write docs/peers.md.
# Each stage's wall time goes to results/durations.txt (shown in docs/peers.md).
# Environment knobs: see protocol.py (PEERS_MODELS, PEERS_SAMPLES, PEERS_CALIB, PEERS_T, ...).
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
RESULTS="${PEERS_RESULTS:-$HERE/results}"
mkdir -p "$RESULTS"
DUR="$RESULTS/durations.txt"
: > "$DUR"
stage() {  # stage NAME COMMAND...: run, log its wall time; a failing stage is reported, not fatal
    local name=$1; shift
    local start=$SECONDS
    echo "== $name"
    "$@" || echo "!! $name failed (exit $?); its results are missing from the report"
    echo "$name $((SECONDS - start))" >> "$DUR"
}
cd "$HERE"
stage setup_venvs bash "$HERE/setup_venvs.sh"
stage snncompile "$ROOT/.venv/bin/python" run_snncompile.py
stage spikingjelly "$HERE/.venv-spikingjelly/bin/python" run_spikingjelly.py
stage sinabs "$HERE/.venv-sinabs/bin/python" run_sinabs.py
stage snntoolbox "$HERE/.venv-snntoolbox/bin/python" run_snntoolbox.py
# timing-only passes, all tools back to back, with 2 threads (the protocol) and 1 thread (see docs/peers.md:
# 2 OpenMP threads on a busy 2-core machine mostly wait for each other)
for threads in 2 1; do
    export PEERS_THREADS=$threads PEERS_TIMING_ONLY=1
    stage "timing_${threads}thread" bash -c "'$ROOT/.venv/bin/python' run_snncompile.py && \
        '$HERE/.venv-spikingjelly/bin/python' run_spikingjelly.py && '$HERE/.venv-sinabs/bin/python' run_sinabs.py && \
        '$HERE/.venv-snntoolbox/bin/python' run_snntoolbox.py"
done
unset PEERS_THREADS PEERS_TIMING_ONLY
echo "total $(awk '{s += $2} END {print s}' "$DUR")" >> "$DUR"
"$ROOT/.venv/bin/python" report.py --durations "$DUR"
