#!/usr/bin/env bash
# Evaluate stage 2 (issue 20) with the committed code at /root/lvae_best/eval_code, one core.
set -euo pipefail
cd /root/lvae_best/eval_code
. /work/main/.venv/bin/activate
export PYTHONPATH=/root/lvae_best/eval_code TF_CPP_MIN_LOG_LEVEL=2 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
RUN=/root/lvae_best/stage2/run
for epoch in 900 950; do
    out="$RUN/snapshots/epoch_${epoch}_evaluation"
    [[ -f $out/report.json ]] || taskset -c 1 python -m keras_lvae_cli evaluate "$RUN/snapshots/epoch_$epoch.npz" \
        --samples 1000 --max-examples 1000 --bn-statistics recompute --no-plots --output "$out"
done
[[ -f $RUN/evaluation/report.json ]] || taskset -c 1 python -m keras_lvae_cli evaluate "$RUN" --samples 5000 \
    --bn-statistics recompute
