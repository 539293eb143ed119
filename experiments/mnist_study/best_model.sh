#!/usr/bin/env bash
# The run behind saved_models/mnist_lvae/2 (issue 20): the paper's 5-layer LVAE (recipe
# mnist_paper, no architectural change) continued from the 200-epoch model shipped in
# saved_models/mnist_lvae/1, 300 more epochs at learning rate 1e-3, then 300 epochs with the
# rate x0.7 every 30 (1 Monte Carlo x 1 importance sample), on one core; then 150 epochs of
# importance-weighted fine-tuning (stage 2). Resumable: run it again after an interruption.
# Then the evaluations (the paper's protocol) and the export with the evaluated batch-norm
# statistics baked in. Run from the repository root:
#
#     RUN=$HOME/lvae_best/run bash experiments/mnist_study/best_model.sh [DATA_DIR]
#
# The shipped run used keras-lvae 0.1 (commit b29d7fc), whose snapshots came from a watcher
# script; train.keep_epochs does the same now.
set -euo pipefail
DATA_DIR="${1:-../shared/data}"
RUN="${RUN:-runs/lvae5_best}"
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1  # one core, beside other work
BEST=(recipes/mnist_paper.py --set "data.data_dir=$DATA_DIR" --set train.warmup_epochs=20
      --set train.epochs=500 --set train.eval_samples=0 --set fine_tune.epochs=300
      --set fine_tune.mc_samples=1 --set fine_tune.iw_samples=1
      --set fine_tune.decay_every_epochs=30 --set fine_tune.decay_factor=0.7
      --set train.keep_epochs=300,400,500,600,700,800)
if [[ ! -f $RUN/checkpoint.npz ]]; then
    taskset -c 1 python experiments/mnist_study/continue_saved_model.py saved_models/mnist_lvae/1 \
        "${BEST[@]}" --epoch 200 --workdir "$RUN"
fi
taskset -c 1 lvae train "${BEST[@]}" --workdir "$RUN"

# Evaluation: L_5000 on all 10,000 test digits, batch-norm statistics recomputed over the
# training set; the snapshots: L_1000 on the first 1,000 digits (a trend).
[[ -f $RUN/evaluation/report.json ]] || lvae evaluate "$RUN" --samples 5000 --bn-statistics recompute
for epoch in 300 400 500 600 700 800; do
    out="$RUN/snapshots/epoch_${epoch}_evaluation"
    [[ -f $out/report.json ]] || lvae evaluate "$RUN/snapshots/epoch_$epoch.npz" --samples 1000 \
        --max-examples 1000 --bn-statistics recompute --no-plots --output "$out"
done

# Stage 2: importance-weighted fine-tuning (1 x 5 samples, loss -L_5) of the epoch-800 model,
# learning rate 1e-4 x0.7 every 25 epochs, a snapshot every 10 epochs.
STAGE2_RUN="${STAGE2_RUN:-${RUN}_iw5}"
STAGE2=(recipes/mnist_paper.py --set "data.data_dir=$DATA_DIR" --set train.warmup_epochs=20
        --set train.learning_rate=1e-4 --set train.epochs=800 --set train.eval_samples=0
        --set fine_tune.epochs=150 --set fine_tune.mc_samples=1 --set fine_tune.iw_samples=5
        --set fine_tune.decay_every_epochs=25 --set fine_tune.decay_factor=0.7
        --set train.keep_every_epochs=10)
if [[ ! -f $STAGE2_RUN/checkpoint.npz ]]; then
    [[ -d $RUN/export/best/800 ]] || lvae export "$RUN" --name best --base-dir "$RUN/export" \
        --version 800
    taskset -c 1 python experiments/mnist_study/continue_saved_model.py "$RUN/export/best/800" \
        "${STAGE2[@]}" --epoch 800 --workdir "$STAGE2_RUN"
fi
taskset -c 1 lvae train "${STAGE2[@]}" --workdir "$STAGE2_RUN"
for epoch in 850 900 950; do
    out="$STAGE2_RUN/snapshots/epoch_${epoch}_evaluation"
    [[ -f $out/report.json ]] || lvae evaluate "$STAGE2_RUN/snapshots/epoch_$epoch.npz" \
        --samples 1000 --max-examples 1000 --bn-statistics recompute --no-plots --output "$out"
done
[[ -f $STAGE2_RUN/evaluation/report.json ]] || lvae evaluate "$STAGE2_RUN" --samples 5000 \
    --bn-statistics recompute
# The export holds the statistics the evaluation used (same procedure and seed).
[[ -d saved_models/mnist_lvae/2 ]] || lvae export "$STAGE2_RUN" --name mnist_lvae --version 2 \
    --bn-statistics recompute
