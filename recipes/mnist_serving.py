"""Recipe: the model shipped in saved_models/mnist_lvae/1.

The paper's 5-layer LVAE (batch norm, KL warm-up) on full MNIST, trained with
`lvae train`, evaluated with `lvae evaluate` (test L_1 and L_5000) and exported
for TF Serving with `lvae export`. Run from the repository root:

    python recipes/mnist_serving.py --data-dir ../shared/data --workdir runs/mnist_serving

`--from evaluate` (or `export`) resumes after a finished stage. The commands it
runs are printed first, so the recipe doubles as their record.
"""

import argparse
import shlex
import sys

from keras_lvae import cli

CONFIG = dict(
    dataset="mnist",        # all 60,000 training digits, dynamically binarized; test set fixed
    latent_dims="64,32,16,8,4",
    hidden_dims="512,256,128,64,32",
    epochs=200,             # the paper trains 2,000; 200 take about 45 min on 2 CPU cores
    warmup_epochs=20,       # the paper's ratio: beta from 0 to 1 over the first tenth
    batch_size=256,         # as in the paper
    learning_rate=1e-3,     # Adam, as in the paper
    seed=0,
    eval_samples=5000,      # k of the test L_k, the paper's L_5000
    name="mnist_lvae",      # TF Serving's model name: saved_models/<name>/<version>
    version=1,
)
STAGES = ("train", "evaluate", "export")


def commands(data_dir, workdir, base_dir, config=CONFIG):
    """The `lvae` argument lists of each stage."""
    c, model = config, f"{workdir}/model.keras"
    data = ["--dataset", c["dataset"], "--data-dir", data_dir]
    return {
        "train": ["train", *data, "--latent-dims", c["latent_dims"], "--hidden-dims",
                  c["hidden_dims"], "--epochs", str(c["epochs"]), "--warmup-epochs",
                  str(c["warmup_epochs"]), "--batch-size", str(c["batch_size"]),
                  "--learning-rate", str(c["learning_rate"]), "--eval-samples", "0",
                  "--seed", str(c["seed"]), "--output", workdir],
        "evaluate": ["evaluate", model, *data, "--samples", str(c["eval_samples"]),
                     "--output", f"{workdir}/evaluation"],
        "export": ["export", model, "--name", c["name"], "--version", str(c["version"]),
                   "--base-dir", base_dir],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="directory with the MNIST files")
    parser.add_argument("--workdir", default="runs/mnist_serving")
    parser.add_argument("--base-dir", default="saved_models")
    parser.add_argument("--from", dest="start", default="train", choices=STAGES)
    args = parser.parse_args(argv)
    stages = commands(args.data_dir, args.workdir, args.base_dir)
    for stage in STAGES[STAGES.index(args.start):]:
        print("$ lvae " + shlex.join(stages[stage]), flush=True)
        code = cli.main(stages[stage])
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
