"""Which `keras.ops` implementation a backend-neutral function runs on.

The heatmap coding (`mobilefan_tf.heatmaps`), the augmentation's apply half
(`mobilefan_tf.data.augment`) and the learning-rate schedule are written once
against the `keras.ops` API. They take an ``ops`` argument:

* ``None`` (the default): `keras.ops`, i.e. the active Keras backend
  (TensorFlow, JAX, ...). This is what models, metrics and the NumPy /
  `keras.utils.PyDataset` feeder use.
* `tf_ops()`: keras.ops' own TensorFlow implementations whatever the active
  backend is. `tf.data` map functions are TensorFlow graphs, so under
  ``KERAS_BACKEND=jax`` the tf.data pipeline cannot call `keras.ops` (they
  would be jax functions of graph tensors); it passes `tf_ops()` and runs
  the same code on TensorFlow. Under the TensorFlow backend the two are the
  same functions.
"""

from __future__ import annotations

import functools

import keras


def resolve(ops=None):
    """`ops`, or `keras.ops` when None."""
    return keras.ops if ops is None else ops


class _TensorFlowOps:
    """The keras.ops API backed by ``keras.src.backend.tensorflow`` (needs TensorFlow)."""

    def __init__(self):
        from keras.src.backend.tensorflow import core, linalg, math, nn, numpy

        self._modules = (numpy, core, nn, math, linalg)

    def __getattr__(self, name):
        for module in self._modules:
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"keras.ops has no TensorFlow function {name!r}")


@functools.cache
def tf_ops():
    """The keras.ops API on TensorFlow tensors, under any Keras backend (for tf.data and tf.function)."""
    if keras.backend.backend() == "tensorflow":
        return keras.ops
    return _TensorFlowOps()
