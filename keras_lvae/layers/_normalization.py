import keras
import tensorflow as tf


def batch_normalization(name, dtype=None):
    """Batch norm as in the paper's code (Lasagne's defaults): running averages
    with weight 0.1 on the new batch (Keras momentum 0.9) and epsilon 1e-4.

    Keras' default momentum of 0.99 lags by hundreds of steps, which makes the
    moving statistics used at evaluation stale for short runs. Built inside a
    multi-replica `tf.distribute` strategy, the batch statistics are computed
    over the global batch (`synchronized=True`), so training matches one device.
    """
    strategy = tf.distribute.get_strategy() if tf.distribute.has_strategy() else None
    synchronized = strategy is not None and strategy.num_replicas_in_sync > 1
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-4, synchronized=synchronized,
                                           name=name, dtype=dtype)
