#!/usr/bin/env bash
# Issue 15's quality run: conv_static_mnist_small.py on static binarized MNIST for a fixed
# wall-clock budget on one core (18 epochs, about 48 minutes here), then its evaluation.
# Resumable: run it again. `python -m keras_lvae_cli` is `lvae` from this checkout. Usage, from
# the repository root:
#   RUN=/root/conv_quality/run DATA_DIR=../shared/data bash experiments/conv_mnist/quality_run.sh
set -euo pipefail
RUN="${RUN:?set RUN to a folder outside the checkout}"
DATA_DIR="${DATA_DIR:-../shared/data}"
export TF_CPP_MIN_LOG_LEVEL=2 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
CORE="${CORE:-1}"
taskset -c "$CORE" python -m keras_lvae_cli train recipes/conv_static_mnist_small.py --set "data.data_dir=$DATA_DIR" \
    --set train.epochs=18 --set train.keep_every_epochs=6 --workdir "$RUN"
# L_1 and L_100 on all 10,000 test digits; L_1000 on the first 1,000 (all 10,000 at k = 1,000
# take about 2.4 h on one core: 1,150 importance samples/s).
for spec in "100 10000" "1000 1000"; do
    set -- $spec
    out="$RUN/evaluation_L$1_n$2"
    [[ -f $out/report.json ]] || taskset -c "$CORE" python -m keras_lvae_cli evaluate "$RUN" --split test \
        --samples "$1" --max-examples "$2" --bn-statistics recompute --output "$out"
done
