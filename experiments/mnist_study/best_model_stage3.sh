#!/usr/bin/env bash
# Stage 3 of issue 20, redone in one session: the paper's fine-tuning with 10 x 10 samples (loss
# -L_10 averaged over 10 Monte Carlo draws) of the shipped saved_models/mnist_lvae/2 (epoch 950),
# learning rate 5e-5 x0.7 every 4 epochs, a snapshot every epoch, on one core. The first stage-3
# run (epochs 951-964, records in results/archive/lvae5_best_iw10x10) lost its workdir with its
# machine; this one starts from the export, Adam's moments re-estimated (continue_saved_model.py).
# Resumable within a machine: run it again. From the repository root:
#
#     RUN=/root/lvae_best/stage3b EPOCHS=18 bash experiments/mnist_study/best_model_stage3.sh [DATA_DIR]
#
# Then: `eval` mode for snapshots (L_1000, first 1,000 digits) and the final L_5000, below.
set -euo pipefail
DATA_DIR="${1:-../shared/data}"
RUN="${RUN:?set RUN to a folder outside the checkout}"
EPOCHS="${EPOCHS:-18}"
CORE="${CORE:-1}"
export TF_CPP_MIN_LOG_LEVEL=2 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
STAGE3=(recipes/mnist_paper.py --set "data.data_dir=$DATA_DIR" --set train.warmup_epochs=20
        --set train.learning_rate=5e-5 --set train.epochs=950 --set train.eval_samples=0
        --set "fine_tune.epochs=$EPOCHS" --set fine_tune.mc_samples=10
        --set fine_tune.iw_samples=10 --set fine_tune.decay_every_epochs=4
        --set fine_tune.decay_factor=0.7 --set train.keep_every_epochs=1)
if [[ ! -f $RUN/checkpoint.npz ]]; then
    taskset -c "$CORE" python experiments/mnist_study/continue_saved_model.py \
        saved_models/mnist_lvae/2 "${STAGE3[@]}" --epoch 950 --workdir "$RUN"
fi
taskset -c "$CORE" python -m keras_lvae_cli train "${STAGE3[@]}" --workdir "$RUN"
