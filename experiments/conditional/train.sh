#!/bin/sh
# The conditional study's two trainings (issue 33): the paper's 5-layer MLP ladder on MNIST,
# with and without labels, identical otherwise: 200 epochs, KL warm-up over 50, no
# fine-tuning. Run from the checkout's root; each run resumes when started again.
#   RUNS=/work/runs/conditional sh experiments/conditional/train.sh conditional
#   RUNS=/work/runs/conditional sh experiments/conditional/train.sh unconditional
# One core each: TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 taskset -c N sh ...
set -eu
RUNS=${RUNS:-runs/conditional}
WHICH=$1
case "$WHICH" in
  conditional) LABELS="--set model.num_classes=10" ;;
  unconditional) LABELS="" ;;
  *) echo "expected conditional or unconditional, received $WHICH" >&2; exit 2 ;;
esac
# shellcheck disable=SC2086
lvae train recipes/mnist_paper.py --workdir "$RUNS/$WHICH" $LABELS \
  --set train.epochs=200 --set train.warmup_epochs=50 --set fine_tune.epochs=0 \
  --set train.keep_every_epochs=50
