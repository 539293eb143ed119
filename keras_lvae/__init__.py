"""keras-lvae: Ladder Variational Autoencoders on Keras 3, TensorFlow and TFP.

Attributes load on first use (PEP 562), so `import keras_lvae` and the `lvae`
command's `--help` do not pay for importing TensorFlow.
"""

import importlib

__version__ = "0.1.0"

_ATTRIBUTES = {
    "LadderVAE": "keras_lvae.models",
    "log_likelihood": "keras_lvae.evaluation",
    "warmup_beta": "keras_lvae.schedules",
}
_MODULES = ("data", "distributions", "layers", "losses", "models", "schedules", "evaluation")

__all__ = ["LadderVAE", "layers", "log_likelihood", "warmup_beta", "__version__"]


def __getattr__(name):
    if name in _ATTRIBUTES:
        return getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    if name in _MODULES:
        return importlib.import_module(f"keras_lvae.{name}")
    raise AttributeError(f"module 'keras_lvae' has no attribute {name!r}")
