#!/usr/bin/env bash
# Stage 3 of the issue-20 run: the paper's fine-tuning, 10 x 10 samples (loss -L_10 averaged
# over 10 Monte Carlo draws), from the epoch-950 model of ../stage2/run (its checkpoint and
# history copied here), learning rate 5e-5 x0.7 every 4 epochs, a snapshot every epoch.
# Code: the committed keras-lvae at /root/lvae_best/eval_code (85b3989). Resumable: run again.
set -euo pipefail
cd /root/lvae_best/eval_code
. /work/main/.venv/bin/activate
export PYTHONPATH=/root/lvae_best/eval_code TF_CPP_MIN_LOG_LEVEL=2 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
taskset -c 1 python -m keras_lvae_cli train recipes/mnist_paper.py --set data.data_dir=/work/shared/data \
    --set train.warmup_epochs=20 --set train.learning_rate=5e-5 --set train.epochs=950 \
    --set train.eval_samples=0 --set fine_tune.epochs=14 --set fine_tune.mc_samples=10 \
    --set fine_tune.iw_samples=10 --set fine_tune.decay_every_epochs=4 \
    --set fine_tune.decay_factor=0.7 --set train.keep_every_epochs=1 \
    --workdir /root/lvae_best/stage3/run
