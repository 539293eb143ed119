"""TensorFlow CPU threads for MLP ladders: one op per core, ops side by side.

TensorFlow's default on a CPU splits every op over all cores (intra-op threads) and runs
as many ops at once (inter-op threads). A step of the paper's MLP ladder is hundreds of
small ops: the products of a 784-512-...-32 MLP at batch 256, batch-norm moments, the
weight and input gradients of each layer, the optimizer's updates. Splitting each small op
over both cores of a 2-core machine costs more in synchronisation than it gains; running
two independent ops at once, one per core, does not. Convolutional ladders are the
opposite: each convolution is big enough to split, and one intra-op thread halves their
speed on 2 cores. Measured on 2 cores (`benchmarks/README.md`, "Two cores"): for the MLP
ladder one intra-op and two inter-op threads train 1.2x faster than TensorFlow's default
and evaluate L_k slightly faster; for the conv ladder TensorFlow's default evaluates L_k
1.8x faster than that setting.

With one intra-op thread the layer-by-layer forward pass would still leave a core idle, so
where `ops_run_side_by_side()` is true `lvae train` asks for `row_halves=True`: wide MLP
blocks then train on the batch's two row halves side by side (`keras_lvae.layers.MLPBlock`),
another 1.13-1.15x on 2 cores.

Thread pools belong to the process and are made at TensorFlow's first op, before a model
exists, so the choice is made per run: `lvae train`, `lvae tune` and `lvae evaluate` call
`configure_for(config.model.architecture)` before they touch TensorFlow; from Python,
call it first:

    import keras_lvae
    keras_lvae.threads.configure_for("mlp")   # before any TensorFlow op

It sets nothing, and returns None, when:
- `architecture` is "conv" (TensorFlow's default suits convolutions);
- a GPU is visible (the GPU path keeps TensorFlow's defaults);
- the environment variable `KERAS_LVAE_CPU_THREADS` is `tensorflow` (it is `auto` or
  unset otherwise);
- `TF_NUM_INTRAOP_THREADS` or `TF_NUM_INTEROP_THREADS` is set, or a
  `tf.config.threading.set_*_parallelism_threads` call came first (the user's choice wins);
- TensorFlow has already run an op (its thread pools exist).

Example, keeping TensorFlow's own threads for an MLP run:

    KERAS_LVAE_CPU_THREADS=tensorflow lvae train quickstart
"""

import os

import tensorflow as tf

ENVIRONMENT_VARIABLE = "KERAS_LVAE_CPU_THREADS"
CHOICES = ("auto", "tensorflow")
ARCHITECTURES = ("mlp", "conv")


def usable_cores():
    """The cores this process may run on (its CPU affinity, e.g. under `taskset`)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_thread_counts(cores):
    """(intra-op, inter-op) threads for a CPU-only machine with `cores` usable cores.

    Two ops at a time, each on half the cores: on 2 cores one intra-op thread and two
    inter-op threads, the setting measured best there; on 1 core, one of each.

    >>> default_thread_counts(2), default_thread_counts(8), default_thread_counts(1)
    ((1, 2), (4, 2), (1, 1))
    """
    if not isinstance(cores, int) or isinstance(cores, bool) or cores < 1:
        raise ValueError(f"Invalid value for argument `cores`: expected a positive int, "
                         f"received {cores!r}")
    return max(1, cores // 2), min(2, cores)


def configure_for(architecture):
    """Set `default_thread_counts` for an "mlp" run unless the user chose (module doc).

    Returns the (intra-op, inter-op) pair it set, or None when it left TensorFlow's
    setting alone.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"Invalid value for argument `architecture`: expected one of "
                         f"{ARCHITECTURES}, received {architecture!r}")
    choice = os.environ.get(ENVIRONMENT_VARIABLE, "auto")
    if choice not in CHOICES:
        raise ValueError(f"Invalid value for environment variable {ENVIRONMENT_VARIABLE}: "
                         f"expected one of {CHOICES}, received {choice!r}")
    if architecture == "conv" or choice == "tensorflow":
        return None
    if "TF_NUM_INTRAOP_THREADS" in os.environ or "TF_NUM_INTEROP_THREADS" in os.environ:
        return None
    threading = tf.config.threading
    if threading.get_intra_op_parallelism_threads() or threading.get_inter_op_parallelism_threads():
        return None
    if tf.config.list_physical_devices("GPU"):
        return None
    intra_op, inter_op = default_thread_counts(usable_cores())
    try:
        threading.set_intra_op_parallelism_threads(intra_op)
        threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:  # TensorFlow already made its thread pools; too late to change
        return None
    return intra_op, inter_op


def ops_run_side_by_side():
    """Whether this process runs TensorFlow ops one per core, side by side: one intra-op
    thread, two or more inter-op threads (what `configure_for("mlp")` sets on 2 or 3 cores,
    or a user's own such setting, through `tf.config.threading` or TensorFlow's environment
    variables), and no GPU. Layers that can cut their work into independent ops
    (`MLPBlock` in training) then do.

    >>> isinstance(ops_run_side_by_side(), bool)
    True
    """
    threading = tf.config.threading
    # tf.config's setting wins; unset (0), TensorFlow reads its environment variables.
    intra_op = (threading.get_intra_op_parallelism_threads()
                or _int_or_zero(os.environ.get("TF_NUM_INTRAOP_THREADS")))
    inter_op = (threading.get_inter_op_parallelism_threads()
                or _int_or_zero(os.environ.get("TF_NUM_INTEROP_THREADS")))
    return intra_op == 1 and inter_op >= 2 and not tf.config.list_logical_devices("GPU")


def _int_or_zero(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


def describe(chosen):
    """One line for a command's output: what `configure_for` returned, in words."""
    if chosen is None:
        return "CPU threads: TensorFlow's default"
    return f"CPU threads: {chosen[0]} intra-op, {chosen[1]} inter-op (keras_lvae.threads)"
