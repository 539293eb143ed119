"""Training images/s and L_k samples/s of a recipe's model (default: the conv recipes).

For each recipe: the model, batch size and optimizer of the recipe (or each of
`--batch-sizes`); random images of the recipe's dataset shape in memory, binary or
8-bit (the cost does not depend on pixel values). Training:
`--steps` steps after a warm-up fit that absorbs tracing and XLA compilation.
L_k: `--samples` importance samples on `--examples` images after a traced call.
Each model is traced once, then timed `--runs` times; every run is printed with the
median, with `jit_compile` off and on (`--no-jit`: off only). Pin the
process to one core (and one TF thread) or leave it two:

    taskset -c 1 env TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \
        python benchmarks/conv_throughput.py --runs 3
    python benchmarks/conv_throughput.py --runs 3

The CIFAR-10 recipe at batch 32 and 128 (issue 16), and the peak resident memory of a
process that builds the model and evaluates L_k (`--evaluation-memory`, nothing else):

    python benchmarks/conv_throughput.py recipes/cifar10.py --batch-sizes 32,128 --steps 2 \
        --examples 4 --samples 32 --no-jit
    python benchmarks/conv_throughput.py recipes/cifar10.py --evaluation-memory \
        --examples 100 --samples 41

(log_likelihood's default passes hold about 4,096 rows: 100 images x 41 samples is one full
pass, the memory of any larger k at batch 100.)
"""

import argparse
import dataclasses
import os
import resource
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_lvae  # noqa: E402
from keras_lvae import config as config_lib, data as data_lib, training  # noqa: E402

# What `lvae train` chooses for a conv ladder: TensorFlow's threads (unless TF_NUM_* are set).
THREADS = keras_lvae.threads.describe(keras_lvae.threads.configure_for("conv"))

RECIPES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "recipes")
DEFAULT = [os.path.join(RECIPES, name) for name in
           ("conv_static_mnist_small.py", "conv_static_mnist.py")]


def model_of(config, jit_compile):
    model = training.build_model(config, steps_per_epoch=100)
    training.compile_model(model, config, steps_per_epoch=100)
    model.compile(optimizer=model.optimizer, jit_compile=jit_compile)
    return model


def images(config, count):
    """`count` random images shaped as the recipe's data: binary, or 8-bit levels v / 255."""
    shape = data_lib.image_shape(config.data.dataset, config.data.image_size)
    rng = np.random.default_rng(0)
    if config.model.likelihood == "bernoulli":
        return (rng.random((count, *shape)) < 0.13).astype("float32")
    return (rng.integers(0, 256, (count, *shape)) / 255).astype("float32")


def training_rates(config, jit_compile, steps, runs):
    """Training images per second of `runs` timed fits of one model (traced once)."""
    batch = config.data.batch_size
    model = model_of(config, jit_compile)
    x = images(config, steps * batch)
    data = tf.data.Dataset.from_tensor_slices(x).batch(batch, drop_remainder=True).cache()
    # Without tf.data's autotuning, which paced fits of a re-iterated dataset at multiples of
    # 51 ms a step here (see train_throughput.py).
    options = tf.data.Options()
    options.autotune.enabled = False
    data = data.with_options(options)
    model.fit(data.take(3), epochs=1, verbose=0)  # trace and compile
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        model.fit(data, epochs=1, verbose=0)
        rates.append(steps * batch / (time.perf_counter() - start))
    return rates


def bound_rates(config, jit_compile, examples, samples, runs):
    """Importance samples per second of `runs` timed `log_likelihood` calls on one model."""
    model = model_of(config, False)
    x = images(config, examples)
    options = dict(batch_size=min(examples, 100), jit_compile=jit_compile)
    keras_lvae.log_likelihood(model, x[:options["batch_size"]], num_samples=10, **options)
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        keras_lvae.log_likelihood(model, x, num_samples=samples, **options)
        rates.append(examples * samples / (time.perf_counter() - start))
    return rates


def report(name, rates, unit):
    def number(rate):  # three significant figures for slow models
        return f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"

    print(f"  {name}: runs " + ", ".join(number(r) for r in rates)
          + f"  median: {number(statistics.median(rates))} {unit}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="*", default=DEFAULT)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--batch-sizes", default=None,
                        help="comma-separated training batch sizes (default: the recipe's)")
    parser.add_argument("--no-jit", action="store_true",
                        help="only jit_compile=False (XLA compiles big models for minutes)")
    parser.add_argument("--evaluation-memory", action="store_true",
                        help="only evaluate L_k once and print the process's peak memory")
    args = parser.parse_args()
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"{len(os.sched_getaffinity(0))} usable cores, "
          f"TF_NUM_INTRAOP_THREADS={os.environ.get('TF_NUM_INTRAOP_THREADS', 'unset')}; {THREADS}")
    for path in args.recipes:
        recipe = config_lib.load_recipe(path)
        if args.evaluation_memory:
            rate, = bound_rates(recipe, False, args.examples, args.samples, 1)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
            print(f"{os.path.basename(path)}: L_{args.samples} of {args.examples} images at "
                  f"{rate:,.0f} samples/s; peak resident memory {peak:,.0f} MiB")
            continue
        sizes = ([int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes
                 else [recipe.data.batch_size])
        for index, batch in enumerate(sizes):
            config = dataclasses.replace(
                recipe, data=dataclasses.replace(recipe.data, batch_size=batch))
            measure(path, config, args, bound=index == 0)  # L_k does not depend on it


def measure(path, config, args, bound=True):
    """Print the training and L_k rates of `config`'s model, jit_compile off and on."""
    model = training.build_model(config, steps_per_epoch=1)
    model.build((None, *data_lib.image_shape(config.data.dataset, config.data.image_size)))
    print(f"{os.path.basename(path)}: batch {config.data.batch_size}, "
          f"{model.count_params():,} weights, optimizer {config.train.optimizer}")
    modes = (False,) if args.no_jit else (False, True)
    for jit_compile in modes:
        report(f"training, jit_compile={jit_compile}",
               training_rates(config, jit_compile, args.steps, args.runs), "images/s")
    for jit_compile in modes if bound else ():
        report(f"L_{args.samples}, jit_compile={jit_compile}",
               bound_rates(config, jit_compile, args.examples, args.samples, args.runs),
               "samples/s")


if __name__ == "__main__":
    main()
