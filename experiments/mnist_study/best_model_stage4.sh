#!/usr/bin/env bash
# Stage 4 of issue 20: importance-weighted fine-tuning with more samples than stage 2 (1 Monte
# Carlo x 10 importance samples, loss -L_10) and a moving average of the weights (EMA 0.999),
# from the shipped saved_models/mnist_lvae/2 (epoch 950, stage 2's end), learning rate 5e-5
# x0.8 every 20 epochs, a snapshot every 10 epochs, on one core. Stage 3's 10 x 10 samples cost
# 10 times as much per epoch for +0.04 nats an hour; stage 2's 1 x 5 gained most per hour.
# Adam's moments are re-estimated (continue_saved_model.py). Resumable within a machine: run it
# again. From the repository root:
#
#     RUN=/root/lvae_best/stage4 EPOCHS=120 bash experiments/mnist_study/best_model_stage4.sh [DATA_DIR]
#
# Then evaluate_snapshots.sh for the snapshots (L_1000, first 1,000 digits) and the final L_5000.
set -euo pipefail
DATA_DIR="${1:-../shared/data}"
RUN="${RUN:?set RUN to a folder outside the checkout}"
EPOCHS="${EPOCHS:-120}"
CORE="${CORE:-1}"
export TF_CPP_MIN_LOG_LEVEL=2 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
STAGE4=(recipes/mnist_paper.py --set "data.data_dir=$DATA_DIR" --set train.warmup_epochs=20
        --set train.learning_rate=5e-5 --set train.epochs=950 --set train.eval_samples=0
        --set train.ema_decay=0.999 --set "fine_tune.epochs=$EPOCHS"
        --set fine_tune.mc_samples=1 --set fine_tune.iw_samples=10
        --set fine_tune.decay_every_epochs=20 --set fine_tune.decay_factor=0.8
        --set train.keep_every_epochs=10)
if [[ ! -f $RUN/checkpoint.npz ]]; then
    taskset -c "$CORE" python experiments/mnist_study/continue_saved_model.py \
        saved_models/mnist_lvae/2 "${STAGE4[@]}" --epoch 950 --workdir "$RUN"
fi
taskset -c "$CORE" python -m keras_lvae_cli train "${STAGE4[@]}" --workdir "$RUN"
