"""keras-lvae: Ladder Variational Autoencoders on Keras 3, TensorFlow and TFP.

Importing the package registers its layers and model with Keras, so
`keras.saving.load_model("model.keras")` works after `import keras_lvae`.
"""

from keras_lvae import layers, optimizers, threads
from keras_lvae.classification import classify
from keras_lvae.batch_norm_statistics import readjust_batch_norm, recompute_batch_norm_statistics
from keras_lvae.diagnostics import latent_diagnostics
from keras_lvae.evaluation import bound_report, log_likelihood
from keras_lvae.export import export_saved_model
from keras_lvae.models import ConvLadderVAE, LadderVAE
from keras_lvae.ood import ood_report, ood_scores
from keras_lvae.portable import export_model
from keras_lvae.schedules import step_decay, warmup_beta

__version__ = "0.2.0"

__all__ = [
    "ConvLadderVAE", "LadderVAE", "bound_report", "classify", "export_model", "export_saved_model",
    "latent_diagnostics", "layers", "log_likelihood", "ood_report", "ood_scores", "optimizers",
    "readjust_batch_norm",
    "recompute_batch_norm_statistics", "step_decay", "threads", "warmup_beta",
    "__version__",
]
