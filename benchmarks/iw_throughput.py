"""Importance samples per second of `log_likelihood` for the paper's 5-layer MNIST LVAE.

Evaluates L_k on `--examples` binary 28x28 images with `--samples` importance
samples each (the paper's test protocol is 10,000 images x 5,000 samples), after
one short call that traces the pass, and reports samples/s = examples * k / time
and the projected time for L_5000 on the 10,000 MNIST test images. Peak memory
is the process's maximum resident set size.

It also times the per-sample dense products alone (top-down path and p(x|z_1),
the part that cannot be shared across samples) on rows of the same size: an
upper bound for this model's importance sampling in float32 on this machine.

    python benchmarks/iw_throughput.py --runs 5

`--ood` also times `ood_scores` (issue 32) on the same images and samples: L_k and the
bounds L^{>k} with the k lowest layers drawn from the prior (all of them, then L^{>1}
alone), sharing the bottom-up pass and the posterior samples above layer k.
"""

import argparse
import os
import resource
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_lvae  # noqa: E402
from keras_lvae.evaluation import DEFAULT_ROWS_PER_PASS  # noqa: E402

# The threads `lvae train` and `lvae evaluate` choose for an MLP ladder, before any TensorFlow
# op (KERAS_LVAE_CPU_THREADS=tensorflow: TensorFlow's default).
THREADS = keras_lvae.threads.describe(keras_lvae.threads.configure_for("mlp"))


def per_sample_matmul_rate(model, rows, runs):
    """Samples/s of the per-sample matrix products alone, `rows` rows per pass."""
    layers = [*model.decoder_blocks, *model.decoder_heads, model.output_block, model.output_head]
    kernels = [w for layer in layers for w in layer.trainable_weights if "kernel" in w.path]
    inputs = [tf.random.normal((rows, int(k.shape[0]))) for k in kernels]
    products = tf.function(lambda: [tf.reduce_sum(tf.matmul(x, k)) for x, k in zip(inputs, kernels)])
    products()
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(10):
            [float(p) for p in products()]
        rates.append(10 * rows / (time.perf_counter() - start))
    macs = sum(int(k.shape[0]) * int(k.shape[1]) for k in kernels)
    return statistics.median(rates), macs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--ood", action="store_true",
                        help="also time ood_scores (L_k and every L^{>k}) on the same images")
    args = parser.parse_args()
    model = keras_lvae.LadderVAE(seed=1)
    x = (np.random.default_rng(0).random((args.examples, 28, 28, 1)) < 0.13).astype("float32")
    model(x[:2])
    options = dict(batch_size=args.batch_size, jit_compile=args.jit_compile)
    keras_lvae.log_likelihood(model, x[: args.batch_size], num_samples=10, **options)
    rates = []
    for _ in range(args.runs):
        start = time.perf_counter()
        keras_lvae.log_likelihood(model, x, num_samples=args.samples, **options)
        rates.append(args.examples * args.samples / (time.perf_counter() - start))
    median = statistics.median(rates)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(THREADS)
    print(f"k={args.samples}, {args.examples} examples, batch {args.batch_size}, "
          f"jit_compile={args.jit_compile}: runs " + ", ".join(f"{r:,.0f}" for r in rates)
          + f"  median: {median:,.0f} samples/s")
    print(f"L_5000 on 10,000 test images would take {10_000 * 5000 / median / 60:.1f} min; "
          f"peak memory {peak_gib:.2f} GiB")
    if args.ood:
        for ratios, name in ((None, f"every L^>k, k = 1 .. {model.num_layers - 1}"),
                             ((1,), "L^>1 only")):
            ood_rates = []
            keras_lvae.ood_scores(model, x[: args.batch_size], num_samples=10,
                                  batch_size=args.batch_size, ratios=ratios)  # traces
            for _ in range(args.runs):
                start = time.perf_counter()
                keras_lvae.ood_scores(model, x, num_samples=args.samples,
                                      batch_size=args.batch_size, ratios=ratios)
                ood_rates.append(args.examples * args.samples / (time.perf_counter() - start))
            ood_median = statistics.median(ood_rates)
            print(f"ood_scores (L_k and {name}): runs "
                  + ", ".join(f"{r:,.0f}" for r in ood_rates) + f"  median: {ood_median:,.0f} "
                  f"samples/s, {median / ood_median:.2f}x the time of log_likelihood")
    bound, macs = per_sample_matmul_rate(model, DEFAULT_ROWS_PER_PASS, args.runs)
    print(f"per-sample dense products alone ({macs:,} multiply-adds per sample, "
          f"{DEFAULT_ROWS_PER_PASS} rows): median {bound:,.0f} samples/s "
          f"({2 * macs * bound / 1e9:.0f} GFLOP/s); the pass above reaches {median / bound:.0%}")


if __name__ == "__main__":
    main()
