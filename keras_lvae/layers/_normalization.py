import keras


def batch_normalization(name):
    """Batch norm as in the paper's code (Lasagne's defaults): running averages
    with weight 0.1 on the new batch (Keras momentum 0.9) and epsilon 1e-4.

    Keras' default momentum of 0.99 lags by hundreds of steps, which makes the
    moving statistics used at evaluation stale for short runs.
    """
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-4, name=name)
