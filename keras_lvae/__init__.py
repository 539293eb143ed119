"""keras-lvae: Ladder Variational Autoencoders on Keras 3, TensorFlow and TFP.

Importing the package registers its layers and model with Keras, so
`keras.saving.load_model("model.keras")` works after `import keras_lvae`. On a machine
without a GPU it also sets TensorFlow's CPU threads to what suits these models
(`keras_lvae.threads`), unless the user chose them.
"""
# First, before any import can run a TensorFlow op and so fix the thread pools.
from keras_lvae import threads

CPU_THREADS = threads.apply_cpu_thread_default()

from keras_lvae import layers, optimizers  # noqa: E402
from keras_lvae.evaluation import (  # noqa: E402
    bound_report, latent_diagnostics, log_likelihood, readjust_batch_norm,
    recompute_batch_norm_statistics)
from keras_lvae.export import export_saved_model  # noqa: E402
from keras_lvae.models import ConvLadderVAE, LadderVAE  # noqa: E402
from keras_lvae.schedules import step_decay, warmup_beta  # noqa: E402

__version__ = "0.2.0"

__all__ = [
    "ConvLadderVAE", "LadderVAE", "bound_report", "export_saved_model", "latent_diagnostics", "layers",
    "log_likelihood", "readjust_batch_norm", "recompute_batch_norm_statistics", "step_decay",
    "warmup_beta",
    "__version__",
]
