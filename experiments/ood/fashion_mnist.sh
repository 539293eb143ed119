#!/bin/sh
# Havtorn et al.'s headline pair: FashionMNIST (in) against MNIST (out), with the paper's
# 5-layer ladder (recipes/mnist_paper.py) trained on FashionMNIST, one run per seed, each
# scored with `lvae evaluate --ood-dataset`; prints each score's AUROC, mean and standard
# error over the seeds. Needs the data: tfds downloads both where there is internet (or put
# the IDX files in KERAS_LVAE_DATA_DIR). Their Table 1: AUROC of the likelihood about 0.27,
# of LLR^{>1} about 0.98 (their hierarchical VAE, 3 layers, trained longer).
#
#   sh experiments/ood/fashion_mnist.sh            # EPOCHS=200 SEEDS=3 RUNS=runs/ood_fashion
#
# Every setting is a variable: IN and OUT (datasets), EPOCHS, SEEDS, SAMPLES (importance
# samples per bound), EXAMPLES (test images of each set), RUNS (where the runs go). A run
# that exists is resumed, not redone.
set -eu
IN=${IN:-fashion_mnist}
OUT=${OUT:-mnist}
EPOCHS=${EPOCHS:-200}
SEEDS=${SEEDS:-3}
SAMPLES=${SAMPLES:-100}
EXAMPLES=${EXAMPLES:-10000}
RUNS=${RUNS:-runs/ood_fashion}
seed=0
while [ "$seed" -lt "$SEEDS" ]; do
    run="$RUNS/seed_$seed"
    lvae train mnist_paper --workdir "$run" --set data.dataset="$IN" \
        --set train.epochs="$EPOCHS" --set train.warmup_epochs=$((EPOCHS / 10)) \
        --set train.seed="$seed" --set fine_tune.epochs=0 --set train.eval_samples=0
    lvae evaluate "$run" --samples 10 --ood-dataset "$OUT" --ood-samples "$SAMPLES" \
        --max-examples "$EXAMPLES" --seed "$seed" --no-plots --output "$run/evaluation"
    seed=$((seed + 1))
done
python - "$RUNS" "$SEEDS" <<'PY'
import json, sys
import numpy as np

runs, seeds = sys.argv[1], int(sys.argv[2])
reports = [json.load(open(f"{runs}/seed_{s}/evaluation/ood_report.json")) for s in range(seeds)]
print("| score | AUROC, mean ± standard error | per seed |")
print("|---|---|---|")
for name in reports[0]["scores"]:
    values = np.array([r["scores"][name]["auroc"] for r in reports])
    error = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    print(f"| {name} | {values.mean():.3f} ± {error:.3f} | "
          + ", ".join(f"{v:.3f}" for v in values) + " |")
PY
