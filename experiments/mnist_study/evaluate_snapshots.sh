#!/usr/bin/env bash
# Evaluate snapshots of a run with the paper's protocol (batch-norm statistics recomputed on the
# training set), one core: L_1000 on the first 1,000 test digits (a trend), or with SAMPLES=5000
# FULL=1 L_5000 on all 10,000. From the repository root:
#
#     RUN=/root/lvae_best/stage3b CORE=0 bash experiments/mnist_study/evaluate_snapshots.sh 955 960
set -euo pipefail
RUN="${RUN:?set RUN to the run folder}"
CORE="${CORE:-0}"
SAMPLES="${SAMPLES:-1000}"
export TF_CPP_MIN_LOG_LEVEL=2 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
for epoch in "$@"; do
    if [[ -n ${FULL:-} ]]; then
        out="$RUN/snapshots/epoch_${epoch}_evaluation_L${SAMPLES}"; limit=()
    else
        out="$RUN/snapshots/epoch_${epoch}_evaluation"; limit=(--max-examples 1000)
    fi
    [[ -f $out/report.json ]] || taskset -c "$CORE" python -m keras_lvae_cli evaluate \
        "$RUN/snapshots/epoch_$epoch.npz" --samples "$SAMPLES" "${limit[@]}" \
        --bn-statistics recompute --no-plots --output "$out"
done
