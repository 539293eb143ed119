"""The conditional study's numbers (issue 33), from the two runs of `train.sh`.

1. Test L_k: log p(x | y) of the conditional ladder beside log p(x) of the unconditional
   one, per digit and paired (the gap should be near log 10 = 2.30 nats or less: knowing
   the class saves at most the class's code length when the classes are equally likely).
2. The Bayes classifier `keras_lvae.classify` (L_k(x | y) for each class, the training
   labels' frequencies as p(y)): test accuracy.
3. An independent judge: a small CNN trained here on MNIST's training digits, then the
   share of generated samples (means of p(x | z_1)) of each asked class that it labels as
   that class, at temperatures 1.0 and 0.7.

Public API only. Writes results.json (and prints a summary) into --output.

    KERAS_LVAE_DATA_DIR=../shared/data python experiments/conditional/evaluate.py \
        --runs /work/runs/conditional --output experiments/conditional/results
"""

import argparse
import json
import os
import time

import keras
import numpy as np

import keras_lvae
from keras_lvae import data

LOG_10 = float(np.log(10.0))


def mean_and_error(values):
    values = np.asarray(values, np.float64)
    return {"mean": float(values.mean()),
            "standard_error": float(values.std(ddof=1) / np.sqrt(values.size))}


def write_json(results, path):
    """`results` as JSON at `path`, written to a temporary file and renamed."""
    with open(path + ".tmp", "w") as file:
        json.dump(results, file, indent=1)
    os.replace(path + ".tmp", path)
    print(f"wrote {path}")


def judge(train_images, train_labels, seed):
    """A small CNN on the grey training digits (3 epochs): the independent classifier."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(train_images, train_labels, batch_size=128, epochs=3, verbose=0)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, help="the RUNS folder of train.sh")
    parser.add_argument("--output", required=True)
    parser.add_argument("--data-dir", default=None, help="MNIST's IDX files (default: "
                        "$KERAS_LVAE_DATA_DIR, else tfds)")
    parser.add_argument("--samples", type=int, default=1000, help="k of the test L_k")
    parser.add_argument("--classify-samples", type=int, default=100,
                        help="k of each class's L_k in the Bayes classifier")
    parser.add_argument("--generated", type=int, default=1000, help="samples per class")
    parser.add_argument("--max-examples", type=int, default=None, help="first N test digits")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    os.makedirs(args.output, exist_ok=True)
    keras.utils.set_random_seed(args.seed)

    conditional = keras.saving.load_model(os.path.join(args.runs, "conditional", "model.keras"))
    unconditional = keras.saving.load_model(
        os.path.join(args.runs, "unconditional", "model.keras"))
    x, y = data.load_evaluation_arrays("mnist", "test", data_dir=args.data_dir)
    if args.max_examples:
        x, y = x[:args.max_examples], y[:args.max_examples]
    grey_train, train_labels = data.load_arrays("mnist", "train", data_dir=args.data_dir)
    prior = np.bincount(train_labels, minlength=10) / len(train_labels)
    results = {"settings": vars(args), "test_examples": int(len(x)),
               "class_prior": prior.tolist()}

    # 1. Bounds, paired digit by digit.
    log_px_y = keras_lvae.log_likelihood(conditional, (x, y), num_samples=args.samples)
    log_px = keras_lvae.log_likelihood(unconditional, x, num_samples=args.samples)
    results["L_k"] = {"k": args.samples, "conditional log p(x|y)": mean_and_error(log_px_y),
                      "unconditional log p(x)": mean_and_error(log_px),
                      "gain, paired": mean_and_error(log_px_y - log_px), "log 10": LOG_10}
    print(f"test L_{args.samples}: log p(x|y) {log_px_y.mean():.2f}, log p(x) "
          f"{log_px.mean():.2f}, paired gain {(log_px_y - log_px).mean():.2f} +- "
          f"{results['L_k']['gain, paired']['standard_error']:.2f} nats (log 10 = 2.30)")

    # 2. The Bayes classifier.
    probabilities = keras_lvae.classify(conditional, x, num_samples=args.classify_samples,
                                        class_prior=prior)
    correct = probabilities.argmax(1) == y
    results["bayes_classifier"] = {"k": args.classify_samples,
                                   "accuracy": mean_and_error(correct)}
    print(f"Bayes classifier (L_{args.classify_samples} per class): accuracy "
          f"{correct.mean():.4f}")

    # 3. The independent judge on generated digits.
    cnn = judge(grey_train[..., None], train_labels, args.seed)
    test_grey, test_labels = data.load_arrays("mnist", "test", data_dir=args.data_dir)
    judge_accuracy = float((cnn.predict(test_grey[..., None], verbose=0).argmax(1)
                            == test_labels).mean())
    results["judge"] = {"architecture": "conv32-pool-conv64-pool-dropout-dense, 3 epochs",
                        "test_accuracy": judge_accuracy}
    print(f"judge CNN: test accuracy {judge_accuracy:.4f}")
    results["generated"] = {}
    for temperature in (1.0, 0.7):
        shares = []
        for label in range(10):
            images = conditional.generate(args.generated, seed=args.seed + label,
                                          temperature=temperature, labels=label)
            predicted = cnn.predict(np.asarray(images).reshape(-1, 28, 28, 1),
                                    verbose=0).argmax(1)
            shares.append(float((predicted == label).mean()))
        results["generated"][f"temperature {temperature:g}"] = {
            "share labelled as asked, per class": shares, "mean": float(np.mean(shares))}
        print(f"temperature {temperature:g}: labelled as asked "
              + " ".join(f"{s:.3f}" for s in shares) + f", mean {np.mean(shares):.3f}")
    results["seconds"] = time.perf_counter() - started
    write_json(results, os.path.join(args.output, "results.json"))


if __name__ == "__main__":
    main()
