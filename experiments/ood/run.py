"""AUROC of the plain likelihood and of the likelihood ratios LLR^{>k} for MNIST (in) against
out-of-distribution sets this machine has offline (issue 32).

    python experiments/ood/run.py --model RUN_OR_KERAS_FILE --data-dir DIR [--seeds 3]

In: a seeded random subset of the MNIST test digits, binarized as the data module's
protocol does. Out: the same digits binarized with another seed (a control: nothing
shifts, so every score should give about 0.5), blank images (all 0), full images (all 1),
Bernoulli(0.5) noise, Bernoulli noise at MNIST's mean pixel intensity, and the test digits
inverted (1 - x).
Each seed redraws the importance samples of every bound (the model is fixed), so the
standard errors are those of the scoring's Monte Carlo noise. Writes results/auroc.json
(or --output) and prints a Markdown table. Public API only.
"""

import argparse
import json
import os

import keras
import numpy as np

import keras_lvae
from keras_lvae import data
from keras_lvae.pipelines import binarize_once

HERE = os.path.dirname(os.path.abspath(__file__))


def load(path):
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    model = keras.saving.load_model(path)
    model.use_ema_weights()
    return model


def out_sets(digits, grey, rng):
    shape = digits.shape
    mean = float(digits.mean())
    return {
        "the same digits binarized afresh (no shift)": binarize_once(grey, seed=1),
        "blank (all 0)": np.zeros(shape, np.float32),
        "full (all 1)": np.ones(shape, np.float32),
        "Bernoulli(0.5) noise": (rng.random(shape) < 0.5).astype(np.float32),
        f"Bernoulli({mean:.2f}) noise": (rng.random(shape) < mean).astype(np.float32),
        "inverted digits (1 - x)": 1.0 - digits,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-dir", default=os.environ.get(data.DATA_DIR_ENV))
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--output", default=os.path.join(HERE, "results", "auroc.json"))
    args = parser.parse_args()

    model = load(args.model)
    images, _ = data.load_evaluation_arrays("mnist", "test", data_dir=args.data_dir)
    grey, _ = data.load_arrays("mnist", "test", data_dir=args.data_dir)
    rng = np.random.default_rng(0)
    chosen = np.sort(rng.choice(len(images), args.examples, replace=False))
    outside = out_sets(images[chosen], grey[chosen][..., None], rng)
    digits = images[chosen]
    results = {}
    for seed in range(args.seeds):
        keras.utils.set_random_seed(seed)
        scores_in = keras_lvae.ood_scores(model, digits, args.samples)
        for name, images_out in outside.items():
            scores_out = keras_lvae.ood_scores(model, images_out, args.samples)
            report = keras_lvae.ood_report(scores_in, scores_out)
            for score, row in report.items():
                results.setdefault(name, {}).setdefault(score, []).append(row["auroc"])
    summary = {name: {score: {"mean": float(np.mean(v)),
                              "standard_error": float(np.std(v, ddof=1) / np.sqrt(len(v)))
                              if len(v) > 1 else 0.0, "runs": v}
                      for score, v in scores.items()}
               for name, scores in results.items()}
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output + ".partial", "w") as file:
        json.dump({"model": args.model, "examples": args.examples, "samples": args.samples,
                   "seeds": args.seeds, "auroc": summary}, file, indent=2)
        file.write("\n")
    os.replace(args.output + ".partial", args.output)
    scores = list(next(iter(summary.values())))
    print("| out-of-distribution set | " + " | ".join(scores) + " |")
    print("|---|" + "---|" * len(scores))
    for name, row in summary.items():
        print(f"| {name} | " + " | ".join(
            f"{row[s]['mean']:.3f} ± {row[s]['standard_error']:.3f}" for s in scores) + " |")


if __name__ == "__main__":
    main()
