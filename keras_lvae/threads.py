"""keras-lvae's CPU thread default: fewer threads per op, independent ops side by side.

TensorFlow's default on a CPU splits every op over all cores (intra-op threads) and runs
as many ops at once (inter-op threads). A ladder VAE's step is hundreds of small ops: the
products of a 784-512-...-32 MLP at batch 256, batch-norm moments, the weight and input
gradients of each layer, the optimizer's per-variable updates. Splitting each small op
over both cores of a 2-core machine costs more in synchronisation than it gains; running
two independent ops at once, one per core, does not. Measured on 2 cores
(`benchmarks/README.md`, "Two cores"): one intra-op and two inter-op threads train the
paper's model 1.26x faster than TensorFlow's default and evaluate L_k 1.1-1.3x faster.

`import keras_lvae` applies `default_thread_counts(cores)` when all of these hold:
- no GPU is visible (the GPU path keeps TensorFlow's defaults);
- the environment variable `KERAS_LVAE_CPU_THREADS` is unset or `auto`
  (`tensorflow` keeps TensorFlow's defaults);
- neither `TF_NUM_INTRAOP_THREADS` nor `TF_NUM_INTEROP_THREADS` is set, and no
  `tf.config.threading.set_*_parallelism_threads` call came first (the user's choice wins);
- TensorFlow has not run an op yet (its thread pools are made once, at the first op;
  import keras_lvae before running TensorFlow code, or set the variables above).

Example, keeping TensorFlow's own thread default:

    KERAS_LVAE_CPU_THREADS=tensorflow python train.py
"""

import os

import tensorflow as tf

ENVIRONMENT_VARIABLE = "KERAS_LVAE_CPU_THREADS"
CHOICES = ("auto", "tensorflow")


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


def apply_cpu_thread_default():
    """Set `default_thread_counts` for this process unless the user chose (module doc).

    Returns the (intra-op, inter-op) pair it set, or None when it left TensorFlow's
    setting alone.
    """
    choice = os.environ.get(ENVIRONMENT_VARIABLE, "auto")
    if choice not in CHOICES:
        raise ValueError(f"Invalid value for environment variable {ENVIRONMENT_VARIABLE}: "
                         f"expected one of {CHOICES}, received {choice!r}")
    if choice == "tensorflow":
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
