#!/usr/bin/env bash
# Issue 19's evidence: the paper's 5-layer MNIST LVAE for 30 epochs (10 of warm-up), three ways
# at equal budget: plain, with EMA weights (0.999), with KL balancing; each evaluated on all
# 10,000 test digits (L_1, L_1000, active units; batch-norm statistics recomputed). Then a
# temperature sweep of prior samples of the plain model. Resumable: run it again. From the
# repository root (one core, about 15 minutes per variant):
#   RUNS=/root/toolkit DATA_DIR=../shared/data bash experiments/training_toolkit/run.sh
set -euo pipefail
RUNS="${RUNS:?set RUNS to a folder outside the checkout}"
DATA_DIR="${DATA_DIR:-../shared/data}"
CORE="${CORE:-1}"
export TF_CPP_MIN_LOG_LEVEL=2 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
COMMON=(recipes/mnist_paper.py --set "data.data_dir=$DATA_DIR" --set train.epochs=30
        --set train.warmup_epochs=10 --set fine_tune.epochs=0 --set train.eval_samples=0
        --set train.sample_every_epochs=0)
declare -A VARIANT=([plain]="" [ema]="--set train.ema_decay=0.999"
                    [kl_balance]="--set model.kl_balance=true")
for name in plain ema kl_balance; do
    # shellcheck disable=SC2086
    taskset -c "$CORE" python -m keras_lvae_cli train "${COMMON[@]}" ${VARIANT[$name]} \
        --workdir "$RUNS/$name"
    [[ -f $RUNS/$name/evaluation/report.json ]] || taskset -c "$CORE" python -m keras_lvae_cli \
        evaluate "$RUNS/$name" --samples 1000 --bn-statistics recompute --no-plots
done
taskset -c "$CORE" python experiments/training_toolkit/temperature_sweep.py "$RUNS/plain" \
    experiments/training_toolkit/results/temperature_sweep.png
