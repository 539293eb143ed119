#!/usr/bin/env bash
# The best-model run of issue 20 (resumable; run this script again to continue it).
# Frozen code at code/ (git archive of main at b29d7fc), its own venv, one core, one TF thread.
set -euo pipefail
cd /root/lvae_best
. venv/bin/activate
export TF_CPP_MIN_LOG_LEVEL=2 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=1
LONG=(code/recipes/mnist_paper.py --set data.data_dir=/work/shared/data --set train.warmup_epochs=20
      --set train.epochs=500 --set train.eval_samples=0 --set fine_tune.epochs=300
      --set fine_tune.mc_samples=1 --set fine_tune.iw_samples=1
      --set fine_tune.decay_every_epochs=30 --set fine_tune.decay_factor=0.7)
RUN=/root/lvae_best/run
if [[ ! -f $RUN/checkpoint.npz ]]; then
    taskset -c 1 python code/docs/continue_saved_model.py code/saved_models/mnist_lvae/1 "${LONG[@]}" \
        --epoch 200 --workdir "$RUN"
fi
taskset -c 1 python code/docs/snapshot_watch.py "$RUN" --epochs 300,400,500,600,700,800 &
taskset -c 1 lvae train "${LONG[@]}" --workdir "$RUN"
wait
