#!/usr/bin/env bash
# The MNIST study of experiments/mnist_study/README.md: every run, resumable. Run from the repository root:
#
#     bash experiments/mnist_study/mnist_study.sh [DATA_DIR [RUN ...]]     (default ../shared/data, every run)
#
# Each `lvae train` checkpoints after every epoch; running this script again skips finished
# runs and continues an interrupted one where it stopped, then evaluates every model that has no
# report yet. Naming RUNs (for example `vae5_bn depth2_ladder`) trains and evaluates only those.
# Runs live in $RUNS (default runs/study, git-ignored; a directory outside the checkout survives
# a fresh clone); experiments/mnist_study/README.md quotes their reports (collected by experiments/mnist_study/collect_results.py).
set -euo pipefail
DATA_DIR="${1:-../shared/data}"
shift || true
RUNS="${RUNS:-runs/study}"
PAPER=recipes/mnist_paper.py
COMMON=(--set "data.data_dir=$DATA_DIR" --set fine_tune.epochs=0 --set train.eval_samples=0)

selected() {  # name: is this run wanted?
    [[ ${#SELECTED[@]} -eq 0 ]] && return 0
    local name
    for name in "${SELECTED[@]}"; do [[ $name == "$1" ]] && return 0; done
    return 1
}
SELECTED=("$@")

# 5-layer models at an equal budget: 100 epochs, warm-up over the first 20 (the paper's tenth).
five_layer() {  # name, extra settings...
    local name=$1; shift
    selected "$name" || return 0
    lvae train "$PAPER" "${COMMON[@]}" --set train.epochs=100 "$@" --workdir "$RUNS/$name"
}
five_layer lvae5_bn_wu --set train.warmup_epochs=20
five_layer vae5 --set model.inference=bottom_up --set model.batch_norm=false --set train.warmup_epochs=0
five_layer vae5_bn --set model.inference=bottom_up --set train.warmup_epochs=0
five_layer vae5_bn_wu --set model.inference=bottom_up --set train.warmup_epochs=20

# Depth sweep: LVAE+BN+WU and VAE+BN+WU with 1 to 5 stochastic layers, 30 epochs (warm-up 3).
LATENT=(64 32 16 8 4)
HIDDEN=(512 256 128 64 32)
for depth in 1 2 3 4 5; do
    latent=$(IFS=,; echo "${LATENT[*]:0:$depth}")
    hidden=$(IFS=,; echo "${HIDDEN[*]:0:$depth}")
    for inference in ladder bottom_up; do
        selected "depth${depth}_$inference" || continue
        lvae train "$PAPER" "${COMMON[@]}" --set train.epochs=30 --set train.warmup_epochs=3 \
            --set "model.inference=$inference" --set "model.latent_dims=$latent" \
            --set "model.hidden_dims=$hidden" --workdir "$RUNS/depth${depth}_$inference"
    done
done

# The long run towards the paper's -81.74 nats: the 5-layer LVAE+BN+WU shipped in
# saved_models/mnist_lvae/1 (200 epochs of recipes/mnist_serving.py, the settings of lvae5_bn_wu)
# continued to epoch 510 at learning rate 1e-3, then 80 epochs with the rate x0.6 every 10.
LONG=(recipes/mnist_paper.py --set "data.data_dir=$DATA_DIR" --set train.warmup_epochs=20
      --set train.epochs=510 --set train.eval_samples=0 --set fine_tune.epochs=80
      --set fine_tune.mc_samples=1 --set fine_tune.iw_samples=1
      --set fine_tune.decay_every_epochs=10 --set fine_tune.decay_factor=0.6
      --set train.keep_epochs=300,400,500,510)  # snapshots/epoch_N.npz for the trajectory
SNAPSHOTS=(300 400 500 510)
if selected lvae5_long; then
    [[ -f $RUNS/lvae5_long/checkpoint.npz ]] || python experiments/mnist_study/continue_saved_model.py \
        saved_models/mnist_lvae/1 "${LONG[@]}" --epoch 200 --workdir "$RUNS/lvae5_long"
    lvae train "${LONG[@]}" --workdir "$RUNS/lvae5_long"
fi

# Evaluation (the paper's protocol: importance-weighted L_k on the 10,000 test digits, batch-norm
# statistics recomputed over the training set). L_1000 for the depth sweep first (minutes each),
# then L_5000 for the 5-layer models (~15 min each on 2 cores). report.json is written last, so
# a killed evaluation reruns.
evaluate() {  # name, samples
    selected "$1" || return 0
    local report="$RUNS/$1/evaluation/report.json"
    [[ -f $report ]] || lvae evaluate "$RUNS/$1/model.keras" --samples "$2" --bn-statistics recompute
}
for depth in 1 2 3 4 5; do
    for inference in ladder bottom_up; do evaluate "depth${depth}_$inference" 1000; done
done
for name in lvae5_bn_wu vae5 vae5_bn vae5_bn_wu lvae5_long; do evaluate "$name" 5000; done
# The long run's snapshots: L_1000 on the first 1,000 test digits (a trend, minutes each).
if selected lvae5_long; then
    for epoch in "${SNAPSHOTS[@]}"; do
        snapshot="$RUNS/lvae5_long/snapshots/epoch_$epoch"
        [[ -f $snapshot.npz && ! -f ${snapshot}_evaluation/report.json ]] || continue
        lvae evaluate "$snapshot.npz" --samples 1000 \
            --max-examples 1000 --bn-statistics recompute --output "${snapshot}_evaluation"
    done
fi
