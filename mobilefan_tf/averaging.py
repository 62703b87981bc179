"""Weight averaging (SWA): the mean of a run's last epochs, with BatchNorm re-estimated.

Late in training, at a constant learning rate, successive epochs' weights
scatter around a wide minimum and each one's validation NME swings by a
tenth of a point. Their mean lands nearer the centre (Izmailov et al. 2018,
"Averaging Weights Leads to Wider Optima and Better Generalization").

The mean of BatchNorm's moving statistics is not the statistics of the mean
network, so they are re-estimated afterwards: one pass over training batches
with each BatchNorm layer's momentum set so that its moving mean and variance
become the plain average over the batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import keras
import numpy as np


def average_weight_files(model: keras.Model, paths: Sequence[str]) -> None:
    """Sets `model`'s weights to the element-wise mean of several weight files.

    Args:
        model: Built model of the same architecture as every file.
        paths: ``.weights.h5`` files (e.g. ``workdir/epochs/epoch_NNN.weights.h5``
            written by `training.fit(keep_epoch_weights=True)`).

    Raises:
        ValueError: No paths, or a file that does not fit `model` (named).
    """
    if not paths:
        raise ValueError("no weight files to average")
    total = None
    for path in paths:
        try:
            model.load_weights(path)
        except Exception as err:  # noqa: BLE001 - h5py / Keras raise many types; name the file
            raise ValueError(f"{path}: cannot load into {model.name}: {str(err).splitlines()[0]}") from None
        weights = [w.astype(np.float64) for w in model.get_weights()]
        total = weights if total is None else [t + w for t, w in zip(total, weights, strict=True)]
    model.set_weights([(t / len(paths)).astype(w.dtype) for t, w in zip(total, model.get_weights(), strict=True)])


def batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer of `model`, nested models included."""
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]


def recalibrate_batchnorm(model: keras.Model, batches: Iterable, max_batches: int | None = None) -> int:
    """Re-estimates every BatchNorm layer's moving mean and variance on `batches`.

    Batch k (from 0) is given momentum k / (k + 1), so after n batches each
    moving statistic is the mean of the n batch statistics (for equal batch
    sizes). The forward passes run eagerly, in training mode, so each layer
    sees the batch-normalised activations it saw in training; no other
    weight changes.

    Args:
        model: The model (its BatchNorm layers are updated in place).
        batches: Image batches [B, S, S, 3] 0..255, or (images, targets) tuples.
        max_batches: Stop after this many batches.

    Returns:
        The number of batches used.

    Raises:
        ValueError: `batches` is empty.
    """
    layers = batchnorm_layers(model)
    saved = [layer.momentum for layer in layers]
    count = 0
    try:
        for layer in layers:
            layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, "float32"))
            layer.moving_variance.assign(np.ones(layer.moving_variance.shape, "float32"))
        for batch in batches:
            if max_batches is not None and count >= max_batches:
                break
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            for layer in layers:
                layer.momentum = count / (count + 1.0)  # read at call time when run eagerly
            model(images, training=True)
            count += 1
    finally:
        for layer, momentum in zip(layers, saved, strict=True):
            layer.momentum = momentum
    if not count:
        raise ValueError("no batches to re-estimate BatchNorm statistics on")
    return count
