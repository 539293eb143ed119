"""Importance samples per second of `log_likelihood` for the paper's 5-layer MNIST LVAE.

Evaluates L_k on `--examples` binary 28x28 images with `--samples` importance
samples each (the paper's test protocol is 10,000 images x 5,000 samples), after
one short call that traces the pass, and reports samples/s = examples * k / time
and the projected time for L_5000 on the 10,000 MNIST test images. Peak memory
is the process's maximum resident set size.

    python benchmarks/iw_throughput.py --runs 3
"""

import argparse
import os
import resource
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import keras_lvae  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--jit-compile", action="store_true")
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
    print(f"k={args.samples}, {args.examples} examples, batch {args.batch_size}, "
          f"jit_compile={args.jit_compile}: runs " + ", ".join(f"{r:,.0f}" for r in rates)
          + f"  median: {median:,.0f} samples/s")
    print(f"L_5000 on 10,000 test images would take {10_000 * 5000 / median / 60:.1f} min; "
          f"peak memory {peak_gib:.2f} GiB")


if __name__ == "__main__":
    main()
