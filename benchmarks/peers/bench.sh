#!/usr/bin/env bash
# `make bench-peers`: build the peers' venvs, run every tool on the protocol, write docs/peers.md.
#
# Phases:
#   1. setup_venvs: one venv per peer (idempotent).
#   2. accuracy: one job per (tool, model), PEERS_JOBS at a time (default: the number of cores),
#      each on one thread, longest jobs first. Accuracy, spikes and synops do not depend on how
#      many jobs share the machine; the times of this phase are never reported as speed.
#   3. timing: the timing-only passes, every tool back to back, nothing else running, with
#      PEERS_THREADS=2 (the protocol) and 1 (see docs/peers.md).
#   4. report: docs/peers.md and its PNGs.
# Stage wall times go to results/durations.txt, one wall time per job to results/jobs.txt; both are
# shown in docs/peers.md. Job logs: results/logs/ (gitignored).
# Environment knobs: PEERS_JOBS here; see protocol.py for PEERS_MODELS, PEERS_SAMPLES, PEERS_CALIB,
# PEERS_T, PEERS_RESULTS.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
RESULTS="${PEERS_RESULTS:-$HERE/results}"
JOBS="${PEERS_JOBS:-$(nproc)}"
mkdir -p "$RESULTS/logs"
DUR="$RESULTS/durations.txt"
: > "$DUR"
: > "$RESULTS/jobs.txt"
T0=$SECONDS
FAILED=0

python_of() {  # python_of TOOL: the interpreter of that tool's venv
    if [ "$1" = snncompile ]; then echo "$ROOT/.venv/bin/python"; else echo "$HERE/.venv-$1/bin/python"; fi
}

stage() {  # stage NAME COMMAND...: run, log its wall time; a failing stage is reported, not fatal
    local name=$1; shift
    local start=$SECONDS
    echo "== $name"
    if ! "$@"; then echo "!! $name failed; its results are missing from the report"; FAILED=1; fi
    echo "$name $((SECONDS - start))" >> "$DUR"
}

job() {  # job TOOL MODEL: one accuracy run, one thread, logged to results/logs/TOOL_MODEL.log
    local tool=$1 model=$2 start=$SECONDS log="$RESULTS/logs/$1_$2.log"
    PEERS_MODELS=$model PEERS_THREADS=1 "$(python_of "$tool")" "run_$tool.py" > "$log" 2>&1
    local rc=$?
    echo "$tool $model $((SECONDS - start))" >> "$RESULTS/jobs.txt"
    if [ $rc -eq 0 ]; then
        echo "   $tool $model: done in $((SECONDS - start)) s ($(grep -c . "$log") log lines in $log)"
    else
        echo "!! $tool $model: exit $rc after $((SECONDS - start)) s; last lines of $log:"
        tail -n 5 "$log" | sed 's/^/   | /'
    fi
    return $rc
}
export -f job python_of
export HERE ROOT RESULTS

# (tool, model) jobs, longest first by the durations of earlier runs, so the lanes finish together.
ORDER="snncompile:mnist_resnet sinabs:mnist_resnet snncompile:mnist_cnn spikingjelly:mnist_cnn
snncompile:mnist_relu6 snncompile:mnist_concat snncompile:mnist_functional spikingjelly:mnist_concat
sinabs:mnist_cnn sinabs:mnist_concat spikingjelly:mnist_resnet snntoolbox:mnist_resnet
snntoolbox:mnist_functional snntoolbox:mnist_cnn sinabs:mnist_relu6 snntoolbox:mnist_mlp
snntoolbox:mnist_relu6 snncompile:mnist_mlp spikingjelly:mnist_mlp sinabs:mnist_mlp
sinabs:mnist_functional snntoolbox:mnist_concat spikingjelly:mnist_functional spikingjelly:mnist_relu6"
MODELS=$(cd "$HERE" && "$ROOT/.venv/bin/python" -c 'import protocol as P; print(" ".join(P.models()))')

accuracy() {
    local list=()
    for pair in $ORDER; do
        for m in $MODELS; do [ "${pair#*:}" = "$m" ] && list+=("${pair%%:*} $m"); done
    done
    for m in $MODELS; do  # models outside the ordered list (new examples) go last
        echo "$ORDER" | tr ' ' '\n' | grep -qx "[a-z]*:$m" && continue
        for t in snncompile spikingjelly sinabs snntoolbox; do list+=("$t $m"); done
    done
    echo "   ${#list[@]} jobs, $JOBS at a time"
    printf '%s\n' "${list[@]}" | xargs -P "$JOBS" -L 1 bash -c 'cd "$HERE" && job "$@"' _
}

timing() {  # timing THREADS: every tool's timing-only pass, back to back
    export PEERS_THREADS=$1 PEERS_TIMING_ONLY=1
    local ok=0
    for tool in snncompile spikingjelly sinabs snntoolbox; do
        echo "   $tool"
        "$(python_of "$tool")" "run_$tool.py" || { echo "!! $tool timing failed"; ok=1; }
    done
    unset PEERS_THREADS PEERS_TIMING_ONLY
    return $ok
}

cd "$HERE"
stage setup_venvs bash "$HERE/setup_venvs.sh"
stage "accuracy_${JOBS}jobs" accuracy
stage timing_2thread timing 2
stage timing_1thread timing 1
echo "total $((SECONDS - T0))" >> "$DUR"
"$ROOT/.venv/bin/python" report.py --durations "$DUR" --jobs "$RESULTS/jobs.txt"
echo "make bench-peers: $((SECONDS - T0)) s"
exit $FAILED
