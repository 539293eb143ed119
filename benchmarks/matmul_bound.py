"""Upper bound on training throughput from matrix products alone, in samples/s.

Times the dense products of the paper's 5-layer MNIST LVAE (the same shapes,
with fused mean/variance heads) at batch 256: forward, the gradient for every
weight and for every input but the data, and a plain SGD update; no batch norm,
no sampling, no KL, no Adam. A real training step cannot be faster than this.

    python benchmarks/matmul_bound.py --runs 5
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

# (inputs, outputs) of every Dense in LadderVAE(latent 64-32-16-8-4, hidden 512-256-128-64-32).
ENCODER = [(784, 512), (512, 512), (512, 256), (256, 256), (256, 128), (128, 128),
           (128, 64), (64, 64), (64, 32), (32, 32)]
ENCODER_HEADS = [(512, 128), (256, 64), (128, 32), (64, 16), (32, 8)]
DECODER = [(32, 512), (512, 512), (16, 256), (256, 256), (8, 128), (128, 128), (4, 64), (64, 64)]
DECODER_HEADS = [(512, 128), (256, 64), (128, 32), (64, 16)]
OUTPUT = [(64, 512), (512, 512), (512, 784)]
SHAPES = ENCODER + ENCODER_HEADS + DECODER + DECODER_HEADS + OUTPUT


def samples_per_second(batch_size, steps):
    weights = [tf.Variable(tf.random.normal(s, stddev=0.01)) for s in SHAPES]
    inputs = [tf.Variable(tf.random.normal((batch_size, s[0]))) for s in SHAPES]
    # A dense random upstream gradient: with plain sums (all-ones gradients) TF
    # simplifies the backward products and the bound comes out 2-3x too high.
    upstream = [tf.random.normal((batch_size, s[1])) for s in SHAPES]

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            total = tf.add_n([tf.reduce_sum((x @ w) * u)
                              for x, w, u in zip(inputs, weights, upstream)])
        grads = tape.gradient(total, weights + inputs[1:])  # the data needs no gradient
        # Apply every gradient, inputs' too: unused outputs would be pruned from the graph.
        for v, g in zip(weights + inputs[1:], grads):
            v.assign_sub(1e-6 * g)

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    macs = sum(a * b for a, b in SHAPES)
    flop = (6 * macs - 2 * SHAPES[0][0] * SHAPES[0][1]) / 1e6
    print(f"{macs:,} multiply-adds per sample forward; about {flop:.1f} MFLOP per training sample")
    rates = [samples_per_second(args.batch_size, args.steps) for _ in range(args.runs)]
    print("runs: " + ", ".join(f"{r:,.0f}" for r in rates)
          + f"  median: {statistics.median(rates):,.0f} samples/s"
          + f" ({statistics.median(rates) * flop / 1e3:.0f} GFLOP/s)")


if __name__ == "__main__":
    main()
