"""The `lvae` command line.

    lvae train --dataset mnist_5k --epochs 10 --output runs/quickstart
"""

import argparse
import logging
import os
import sys
import warnings

import keras
import numpy as np

import keras_lvae
from keras_lvae import data


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive ints such as 64,32,16, received {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive ints, received {text!r}")
    return values


def _int_at_least(minimum):
    """An argparse type for ints >= minimum."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an int >= {minimum}, received {text!r}")
        return value
    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="lvae", description="Ladder Variational Autoencoders on Keras 3."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train a model, print the ELBO per epoch, save it",
        description="Train a Ladder VAE on a dynamically binarized dataset, report the test "
        "ELBO (L_1) and importance-weighted bound L_k, and save OUTPUT/model.keras.",
    )
    train.add_argument("--dataset", default="mnist_5k", choices=data.list_datasets(),
                       help="mnist_5k ships with the install (offline); the others read local "
                       "files from --data-dir, else tfds (default: %(default)s)")
    train.add_argument("--data-dir", default=None,
                       help="directory with the raw files (or set KERAS_LVAE_DATA_DIR)")
    train.add_argument("--likelihood", default=None, choices=["bernoulli", "gaussian"],
                       help="default: gaussian for norb, bernoulli otherwise")
    train.add_argument("--latent-dims", type=_int_list, default=[64, 32, 16, 8, 4],
                       help="latent sizes, bottom to top (default: 64,32,16,8,4)")
    train.add_argument("--hidden-dims", type=_int_list, default=[512, 256, 128, 64, 32],
                       help="MLP width per stochastic layer (default: 512,256,128,64,32)")
    train.add_argument("--inference", default="ladder", choices=["ladder", "bottom_up"],
                       help="ladder (LVAE) or bottom_up (the VAE baseline) (default: %(default)s)")
    train.add_argument("--no-batch-norm", action="store_true", help="disable batch norm")
    train.add_argument("--epochs", type=_positive_int, default=10)
    train.add_argument("--batch-size", type=_positive_int, default=256)
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--warmup-epochs", type=_non_negative_int, default=None,
                       help="epochs of linear KL warm-up (default: a tenth of --epochs, the "
                       "paper's ratio of 200 in 2000)")
    train.add_argument("--eval-samples", type=_non_negative_int, default=100,
                       help="importance samples k for the final test L_k; 0 skips it "
                       "(default: %(default)s)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--jit-compile", action="store_true", help="compile the steps with XLA")
    train.add_argument("--output", default="runs/lvae", help="output directory (default: %(default)s)")
    train.set_defaults(run=run_train)
    return parser


def run_train(args):
    if len(args.latent_dims) != len(args.hidden_dims):
        raise ValueError(
            f"--hidden-dims needs one width per latent layer ({len(args.latent_dims)}), "
            f"received {len(args.hidden_dims)}"
        )
    # Our pipelines shuffle themselves; Keras' note about fit(shuffle=True) is noise.
    warnings.filterwarnings("ignore", message="`shuffle=True` was passed")
    keras.utils.set_random_seed(args.seed)
    handler = logging.StreamHandler(sys.stdout)  # say where the data come from
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("keras_lvae").addHandler(handler)
    logging.getLogger("keras_lvae").setLevel(logging.INFO)
    load = dict(data_dir=args.data_dir, seed=args.seed)
    train_ds = data.load_dataset(args.dataset, "train", batch_size=args.batch_size, **load)
    test_ds = data.load_dataset(args.dataset, "test", batch_size=args.batch_size, **load)
    steps_per_epoch = int(train_ds.cardinality())
    if steps_per_epoch == 0:
        raise ValueError(f"--batch-size {args.batch_size} is larger than the training set")
    warmup_epochs = args.warmup_epochs if args.warmup_epochs is not None else args.epochs // 10
    num_test = int(sum(int(b.shape[0]) for b in test_ds))
    print(f"{args.dataset}: {steps_per_epoch} steps of {args.batch_size} images per epoch, "
          f"{num_test} test images, warm-up over {warmup_epochs} epochs")
    likelihood = args.likelihood or ("gaussian" if args.dataset == "norb" else "bernoulli")

    model = keras_lvae.LadderVAE(
        latent_dims=args.latent_dims,
        hidden_dims=args.hidden_dims,
        inference=args.inference,
        likelihood=likelihood,
        batch_norm=not args.no_batch_norm,
        warmup_steps=warmup_epochs * steps_per_epoch,
        seed=args.seed,
    )
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), jit_compile=args.jit_compile)
    model.fit(train_ds, validation_data=test_ds, epochs=args.epochs,
              verbose=1 if sys.stdout.isatty() else 2)  # one line per epoch in logs

    result = model.evaluate(test_ds, return_dict=True, verbose=0)
    print(f"test L_1 (ELBO): {-result['nelbo']:.2f} nats")
    if args.eval_samples:
        bound = keras_lvae.log_likelihood(model, test_ds, num_samples=args.eval_samples)
        print(f"test L_{args.eval_samples}: {np.mean(bound):.2f} nats")

    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, "model.keras")
    partial = os.path.join(args.output, ".model.partial.keras")  # Keras wants the suffix
    model.save(partial)
    os.replace(partial, path)  # never leave a half-written model.keras
    print(f"saved {path}")
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:  # bad data or arguments: a message, not a traceback
        print(f"lvae {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
