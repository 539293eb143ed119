import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_lvae")
class LadderMerge(keras.layers.Layer):
    """Precision-weighted merge of the bottom-up and top-down Gaussians (paper eq. 1).

        variance = 1 / (1 / variance_hat + 1 / variance_p)
        mean = (mean_hat / variance_hat + mean_p / variance_p) * variance

    computed with the bottom-up share w = variance_p / (variance_hat + variance_p) as
    mean = w * mean_hat + (1 - w) * mean_p and variance = w * variance_hat. This
    never forms 1 / variance, so it stays finite in float32 for variances anywhere
    in [1e-8, 1e8].

    Call arguments:
        inputs: tuple `(mean_hat, variance_hat, mean_p, variance_p)`, equal shapes.

    Returns:
        Tuple `(mean, variance)`.

    Example:
    >>> import numpy as np
    >>> one = np.ones((1, 2), "float32")
    >>> mean, variance = LadderMerge()((0 * one, one, 2 * one, one))
    >>> mean.numpy().tolist(), variance.numpy().tolist()
    ([[1.0, 1.0]], [[0.5, 0.5]])
    """

    def call(self, inputs):
        if not isinstance(inputs, (tuple, list)) or len(inputs) != 4:
            raise ValueError(
                "Invalid value for argument `inputs`: expected a tuple "
                "(mean_hat, variance_hat, mean_p, variance_p), "
                f"received {type(inputs).__name__} of length {len(inputs) if hasattr(inputs, '__len__') else '?'}."
            )
        mean_hat, variance_hat, mean_p, variance_p = (ops.cast(t, "float32") for t in inputs)
        total = variance_hat + variance_p
        weight_hat = variance_p / total  # precision share of the bottom-up estimate
        weight_p = variance_hat / total
        mean = weight_hat * mean_hat + weight_p * mean_p
        variance = variance_hat * weight_hat
        return mean, variance

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0]), tuple(input_shape[0])
