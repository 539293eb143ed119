#!/usr/bin/env bash
# Stage 2 of the issue-20 run: importance-weighted fine-tuning (1 x 5 samples, the loss -L_5)
# of the epoch-800 model of ../run, learning rate 1e-4 x0.7 every 25 epochs, one core.
# Resumable: run this script again. Code: keras-lvae 0.2 (code/), its own venv.
set -euo pipefail
cd /root/lvae_best/stage2
. venv/bin/activate
export TF_CPP_MIN_LOG_LEVEL=2 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
STAGE2=(code/recipes/mnist_paper.py --set data.data_dir=/work/shared/data
        --set train.warmup_epochs=20 --set train.learning_rate=1e-4 --set train.epochs=800
        --set train.eval_samples=0 --set fine_tune.epochs=150 --set fine_tune.mc_samples=1
        --set fine_tune.iw_samples=5 --set fine_tune.decay_every_epochs=25
        --set fine_tune.decay_factor=0.7 --set train.keep_every_epochs=10)
RUN=/root/lvae_best/stage2/run
if [[ ! -f $RUN/checkpoint.npz ]]; then
    [[ -d export/best/800 ]] || taskset -c 1 lvae export /root/lvae_best/run --name best \
        --base-dir export --version 800
    taskset -c 1 python code/experiments/mnist_study/continue_saved_model.py export/best/800 \
        "${STAGE2[@]}" --epoch 800 --workdir "$RUN"
fi
taskset -c 1 lvae train "${STAGE2[@]}" --workdir "$RUN"
