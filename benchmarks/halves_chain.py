"""A chain of Dense, batch-norm and leaky-ReLU layers trained on its whole batch or on the
batch's two row halves as independent ops (batch norm over the whole batch), in samples/s.

What `MLPBlock`'s halves rest on, without the rest of the model: ten layers
784-512-512-256-256-128-128-64-64-32-32 at batch 256, forward, gradients and a plain update
in one `tf.function`, with the threads `lvae train` picks for an MLP ladder (on 2 cores: one
intra-op, two inter-op). Modes: `whole`; `halves`, the two halves kept apart through the
whole chain; `per-layer`, split before each layer and joined after it.

    python benchmarks/halves_chain.py --runs 5
    python benchmarks/cores.py benchmarks/halves_chain.py --runs 5
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

import keras_lvae  # noqa: E402

THREADS = keras_lvae.threads.describe(keras_lvae.threads.configure_for("mlp"))
WIDTHS = (784, 512, 512, 256, 256, 128, 128, 64, 64, 32, 32)
MODES = ("whole", "halves", "per-layer")


def normalize_together(parts, gamma, beta):
    """Batch norm of the parts' concatenation, returned as parts (differentiated by TF)."""
    n = tf.cast(tf.add_n([tf.shape(p)[0] for p in parts]), tf.float32)
    mean = tf.add_n([tf.reduce_sum(p, 0) for p in parts]) / n
    variance = tf.add_n([tf.reduce_sum(tf.square(p - mean), 0) for p in parts]) / n
    scale = gamma * tf.math.rsqrt(variance + 1e-4)
    offset = beta - mean * scale
    return [p * scale + offset for p in parts]


def loss_fn(mode, weights, x):
    parts = [x] if mode == "whole" else tf.split(x, 2)
    for kernel, gamma, beta in weights:
        if mode == "per-layer":
            parts = tf.split(tf.concat(parts, 0), 2)
        parts = normalize_together([p @ kernel for p in parts], gamma, beta)
        parts = [tf.nn.leaky_relu(p, 0.1) for p in parts]
    return tf.add_n([tf.reduce_sum(tf.square(p)) for p in parts])


def samples_per_second(mode, steps, batch_size, runs):
    rng = tf.random.Generator.from_seed(0)
    weights = [(tf.Variable(rng.normal([a, b]) * 0.05), tf.Variable(tf.ones([b])),
                tf.Variable(tf.zeros([b]))) for a, b in zip(WIDTHS[:-1], WIDTHS[1:])]
    variables = [v for layer in weights for v in layer]
    x = tf.cast(rng.uniform([batch_size, WIDTHS[0]]) < 0.13, tf.float32)

    @tf.function(autograph=False)
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(mode, weights, x)
        for variable, gradient in zip(variables, tape.gradient(loss, variables)):
            variable.assign_sub(1e-6 * gradient)

    for _ in range(20):  # trace and warm up
        step()
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps * batch_size / (time.perf_counter() - start))
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    print(f"TensorFlow {tf.__version__}, {len(os.sched_getaffinity(0))} usable cores; {THREADS}")
    for mode in MODES:
        rates = samples_per_second(mode, args.steps, args.batch_size, args.runs)
        print(f"{mode}: runs " + ", ".join(f"{r:,.0f}" for r in rates)
              + f"  median: {statistics.median(rates):,.0f} samples/s")


if __name__ == "__main__":
    main()
