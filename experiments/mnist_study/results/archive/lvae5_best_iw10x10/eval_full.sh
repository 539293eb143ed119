#!/usr/bin/env bash
# L_5000 on all 10,000 test digits of stage 3's epoch-964 snapshot (recomputed BN), one core.
set -euo pipefail
cd /root/lvae_best/eval_code
. /work/main/.venv/bin/activate
export PYTHONPATH=/root/lvae_best/eval_code TF_CPP_MIN_LOG_LEVEL=2 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
RUN=/root/lvae_best/stage3/run
out="$RUN/snapshots/epoch_964_evaluation_L5000"
[[ -f $out/report.json ]] || taskset -c 1 python -m keras_lvae_cli evaluate "$RUN/snapshots/epoch_964.npz" \
    --samples 5000 --bn-statistics recompute --no-plots --output "$out"
