"""Where the conditional model's gain over the unconditional one comes from (issue 33).

For the true densities, log p(x | y) - log p(x) = log p(y | x) - log p(y) <= -log p(y),
about log 10 = 2.30 nats for MNIST's near-uniform classes. Two different models need not
obey it: the gain splits into

    log p_c(x | y) - log p_u(x) = [log p_c(x | y) - log p_c(x)] + [log p_c(x) - log p_u(x)]

the label's information under the conditional model (at most -log p(y)) and how much better
the conditional model's own marginal p_c(x) = sum_y p(y) p_c(x | y) models the digits than
the unconditional model does. The marginal is bounded below by
log sum_y p(y) exp L_k(x | y) (each L_k is a lower bound). Public API only; writes
marginal.json into --output.

    KERAS_LVAE_DATA_DIR=../shared/data python experiments/conditional/marginal.py \
        --runs /work/runs/conditional --output experiments/conditional/results
"""

import argparse
import os

import keras
import numpy as np
from evaluate import mean_and_error as summary  # this folder's evaluate.py
from evaluate import write_json

import keras_lvae
from keras_lvae import data


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--samples", type=int, default=100, help="k of every L_k")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)
    conditional = keras.saving.load_model(os.path.join(args.runs, "conditional", "model.keras"))
    unconditional = keras.saving.load_model(
        os.path.join(args.runs, "unconditional", "model.keras"))
    x, y = data.load_evaluation_arrays("mnist", "test", data_dir=args.data_dir)
    _, train_labels = data.load_arrays("mnist", "train", data_dir=args.data_dir)
    log_prior = np.log(np.bincount(train_labels, minlength=10) / len(train_labels))
    k = args.samples
    by_class = np.stack([keras_lvae.log_likelihood(conditional, (x, np.full(len(x), c)), k)
                         for c in range(10)], axis=1)  # [examples, classes]: L_k(x | c)
    joint = by_class + log_prior
    top = joint.max(axis=1, keepdims=True)
    marginal = (top + np.log(np.exp(joint - top).sum(axis=1, keepdims=True)))[:, 0]
    given_label = by_class[np.arange(len(x)), y]
    unconditional_bound = keras_lvae.log_likelihood(unconditional, x, k)
    results = {
        "k": k, "test_examples": int(len(x)),
        "log p_c(x | y), L_k": summary(given_label),
        "log p_c(x), log sum_y p(y) exp L_k(x | y)": summary(marginal),
        "log p_u(x), L_k": summary(unconditional_bound),
        "label information, log p_c(x | y) - log p_c(x)": summary(given_label - marginal),
        "bound on it, -log p(y) of the true class": summary(-log_prior[y]),
        "model gain, log p_c(x) - log p_u(x)": summary(marginal - unconditional_bound),
        "Bayes accuracy from these bounds": float(np.mean(joint.argmax(axis=1) == y)),
    }
    for name, value in results.items():
        print(f"{name}: {value}")
    write_json(results, os.path.join(args.output, "marginal.json"))


if __name__ == "__main__":
    main()
