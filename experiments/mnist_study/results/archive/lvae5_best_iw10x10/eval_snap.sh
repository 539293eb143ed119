#!/usr/bin/env bash
# L_1000 on the first 1,000 test digits of stage-3 snapshots (recomputed BN), core ${CORE:-0}.
set -euo pipefail
cd /root/lvae_best/eval_code
. /work/main/.venv/bin/activate
export PYTHONPATH=/root/lvae_best/eval_code TF_CPP_MIN_LOG_LEVEL=2 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
RUN=/root/lvae_best/stage3/run
for epoch in "$@"; do
    out="$RUN/snapshots/epoch_${epoch}_evaluation"
    [[ -f $out/report.json ]] || taskset -c "${CORE:-0}" python -m keras_lvae_cli evaluate "$RUN/snapshots/epoch_$epoch.npz" \
        --samples 1000 --max-examples 1000 --bn-statistics recompute --no-plots --output "$out"
done
