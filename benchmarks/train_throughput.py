"""Training throughput of the paper's 5-layer MNIST LVAE, in samples per second.

Model: latents 64-32-16-8-4, hidden 512-256-128-64-32, 2 dense layers per block,
batch norm, batch 256, Adam (`--optimizer fused`, the default: `keras_lvae.optimizers.FusedAdam`,
what `lvae train` uses; `keras`: `keras.optimizers.Adam`) and by default `lvae train`'s
steps per call of Keras' train function (`--steps-per-execution 1`: Keras' default). Data:
random binary 28x28x1 images held in memory (the model's cost does not depend on pixel values;
the data pipeline has its own benchmark), without tf.data's autotuning: on a dataset that each
`fit` iterates afresh it paced some runs at 51 ms a step whatever the model (wall time up, CPU
time not; the library's own pipeline did not show it). Each run fits `--steps` steps after a
warm-up epoch that absorbs tracing and XLA compilation, and times them; the script prints every
run and the median, with and without `jit_compile`.

    python benchmarks/train_throughput.py --runs 5

The paper's fine-tuning draws `--mc-samples` x `--iw-samples` posterior samples
per image; the script then also prints those sample rows per second:

    python benchmarks/train_throughput.py --runs 3 --steps 20 --mc-samples 10 --iw-samples 10 --no-jit
"""

import argparse
import contextlib
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_lvae  # noqa: E402
from keras_lvae import training  # noqa: E402

# The threads `lvae train` and `lvae evaluate` choose for an MLP ladder, before any TensorFlow
# op (KERAS_LVAE_CPU_THREADS=tensorflow: TensorFlow's default).
THREADS = keras_lvae.threads.describe(keras_lvae.threads.configure_for("mlp"))


OPTIMIZERS = {"fused": keras_lvae.optimizers.FusedAdam, "keras": keras.optimizers.Adam}


def samples_per_second(jit_compile, steps, batch_size, inference, mc_samples=1, iw_samples=1,
                       strategy=None, optimizer="fused", steps_per_execution=1,
                       row_halves=False):
    """Training images per second (under `strategy`, if given)."""
    with strategy.scope() if strategy else contextlib.nullcontext():
        model = keras_lvae.LadderVAE(inference=inference, warmup_steps=1000, seed=1,
                                     mc_samples=mc_samples, iw_samples=iw_samples,
                                     row_halves=row_halves)
        model.compile(optimizer=OPTIMIZERS[optimizer](1e-3), jit_compile=jit_compile,
                      steps_per_execution=steps_per_execution)
    rng = np.random.default_rng(0)
    x = (rng.random((steps * batch_size, 28, 28, 1)) < 0.13).astype("float32")
    data = tf.data.Dataset.from_tensor_slices(x).batch(batch_size, drop_remainder=True).cache()
    options = tf.data.Options()
    options.autotune.enabled = False
    data = data.with_options(options)
    model.fit(data.take(5), epochs=1, verbose=0)  # trace and compile
    start = time.perf_counter()
    model.fit(data, epochs=1, verbose=0)
    return steps * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--inference", default="ladder", choices=["ladder", "bottom_up"])
    parser.add_argument("--mc-samples", type=int, default=1)
    parser.add_argument("--iw-samples", type=int, default=1)
    parser.add_argument("--no-jit", action="store_true", help="skip the jit_compile=True runs")
    parser.add_argument("--no-row-halves", action="store_true",
                        help="train the blocks on the whole batch even where ops run side by side")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="fused")
    parser.add_argument("--steps-per-execution", type=int, default=None,
                        help="training steps per call of Keras' train function (default: "
                             "lvae train's, a divisor of --steps up to train.steps_per_execution)")
    parser.add_argument("--replicas", type=int, default=1,
                        help="data parallelism: MirroredStrategy over this many logical CPUs")
    args = parser.parse_args()
    strategy = None
    if args.replicas > 1:  # logical CPUs share the process's thread pools
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.replicas)
        strategy = tf.distribute.MirroredStrategy(
            [f"/cpu:{i}" for i in range(args.replicas)])
    samples = args.mc_samples * args.iw_samples
    # As `lvae train`: MLP blocks in row halves where TensorFlow runs ops side by side.
    args.row_halves = keras_lvae.threads.ops_run_side_by_side() and not args.no_row_halves
    if args.steps_per_execution is None:  # as `lvae train` with an epoch of --steps steps
        args.steps_per_execution = training.steps_per_execution(
            training.MLP_STEPS_PER_EXECUTION, args.steps)
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"{len(os.sched_getaffinity(0))} usable cores, inference={args.inference}, "
          f"batch {args.batch_size}, {args.optimizer} Adam, "
          f"{args.mc_samples} x {args.iw_samples} samples per image, {args.replicas} replica(s), "
          f"{args.steps_per_execution} step(s) per execution, row halves {args.row_halves}; "
          + THREADS)
    for jit_compile in (False,) if args.no_jit else (False, True):
        rates = [samples_per_second(jit_compile, args.steps, args.batch_size, args.inference,
                                    args.mc_samples, args.iw_samples, strategy,
                                    args.optimizer, args.steps_per_execution, args.row_halves)
                 for _ in range(args.runs)]
        median = statistics.median(rates)
        rows = f" ({median * samples:,.0f} sample rows/s)" if samples > 1 else ""
        print(f"jit_compile={jit_compile!s:5}  runs: "
              + ", ".join(f"{r:,.0f}" for r in rates)
              + f"  median: {median:,.0f} samples/s{rows}")


if __name__ == "__main__":
    main()
