"""AUROC of the plain likelihood and the likelihood ratios for models trained here, with
several training seeds (issue 32): a semantic shift and a control without any shift.

    python experiments/ood/trained.py --pair semantic --size quickstart --seeds 3
    python experiments/ood/trained.py --pair binarization --size quickstart --seeds 3

`semantic`: a ladder trained on the MNIST training digits 0-4 (dynamically binarized);
in = test digits 0-4, out = test digits 5-9 (binarized once with the data module's seed).
`binarization`: a ladder trained on binarized MNIST (Larochelle's fixed binarization); in
= its test digits, out = the same MNIST test digits binarized afresh (seed 1). Nothing
shifts but the Bernoulli draw, so every score should give AUROC about 0.5.

Each seed trains a new model (initialisation, data order, binarization) and scores with
its own Monte Carlo draws: the standard errors cover training and scoring. `--size`:
`quickstart` (latents 32-16-8, widths 256-128-64) or `paper` (64-32-16-8-4, 512 ... 32).
Results go to results/<pair>_<size>.json; prints a Markdown row per score. Public API only.
"""

import argparse
import json
import os
import time

import keras
import numpy as np

import keras_lvae
from keras_lvae import data
from keras_lvae.pipelines import binarize_once, make_pipeline

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = {"quickstart": ((32, 16, 8), (256, 128, 64)),
         "paper": ((64, 32, 16, 8, 4), (512, 256, 128, 64, 32))}


def pair_data(pair, data_dir):
    """(training images, whether to binarize them each epoch, in test images, out ones)."""
    if pair == "semantic":
        train, train_labels = data.load_arrays("mnist", "train", data_dir=data_dir)
        test, labels = data.load_evaluation_arrays("mnist", "test", data_dir=data_dir)
        return train[train_labels < 5], True, test[labels < 5], test[labels >= 5]
    train, _ = data.load_arrays("binarized_mnist", "train", data_dir=data_dir)
    fixed, _ = data.load_evaluation_arrays("binarized_mnist", "test", data_dir=data_dir)
    grey, _ = data.load_arrays("mnist", "test", data_dir=data_dir)
    fresh = binarize_once(grey[..., None], seed=1)
    return train, False, fixed, fresh


def train(images, dynamic, size, seed, epochs, batch_size=250):
    latents, widths = SIZES[size]
    keras.utils.set_random_seed(seed)
    steps = -(-len(images) // batch_size)
    model = keras_lvae.LadderVAE(latent_dims=latents, hidden_dims=widths, seed=seed,
                                 warmup_steps=steps * max(1, epochs // 10))  # paper: a tenth
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    pipeline = make_pipeline(images, None, batch_size, shuffle=True, drop_remainder=False,
                             dynamic_binarization=dynamic, seed=seed)
    history = model.fit(pipeline, epochs=epochs, verbose=0).history
    return model, float(history["nelbo"][-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", choices=("semantic", "binarization"), required=True)
    parser.add_argument("--size", choices=tuple(SIZES), default="quickstart")
    parser.add_argument("--data-dir", default=os.environ.get(data.DATA_DIR_ENV))
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    keras_lvae.threads.configure_for("mlp")  # lvae train's CPU threads, before any op

    images, dynamic, inside, outside = pair_data(args.pair, args.data_dir)
    runs = []
    for seed in range(args.seeds):
        start = time.perf_counter()
        model, nelbo = train(images, dynamic, args.size, seed, args.epochs)
        trained = time.perf_counter() - start
        scores_in = keras_lvae.ood_scores(model, inside, args.samples)
        scores_out = keras_lvae.ood_scores(model, outside, args.samples)
        report = keras_lvae.ood_report(scores_in, scores_out)
        runs.append({"seed": seed, "train_nelbo": nelbo, "train_seconds": round(trained),
                     "test_L_k_in": float(-scores_in["nll"].mean()),
                     "test_L_k_out": float(-scores_out["nll"].mean()), "report": report})
        print(f"seed {seed}: trained {trained:.0f} s, L_{args.samples} in "
              f"{runs[-1]['test_L_k_in']:.2f} out {runs[-1]['test_L_k_out']:.2f}, AUROC "
              + ", ".join(f"{name} {row['auroc']:.3f}" for name, row in report.items()),
              flush=True)
    summary = {}
    for name in runs[0]["report"]:
        values = [run["report"][name]["auroc"] for run in runs]
        error = float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
        summary[name] = {"mean": float(np.mean(values)), "standard_error": error}
    record = {"pair": args.pair, "size": args.size, "epochs": args.epochs,
              "samples": args.samples, "examples": {"in": len(inside), "out": len(outside)},
              "training_images": len(images), "auroc": summary, "runs": runs}
    path = os.path.join(HERE, "results", f"{args.pair}_{args.size}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".partial", "w") as file:
        json.dump(record, file, indent=2)
        file.write("\n")
    os.replace(path + ".partial", path)
    print(f"| {args.pair}, {args.size} | " + " | ".join(
        f"{name} {row['mean']:.3f} ± {row['standard_error']:.3f}"
        for name, row in summary.items()) + " |")


if __name__ == "__main__":
    main()
