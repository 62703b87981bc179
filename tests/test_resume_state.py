"""A killed-and-resumed run behaves like one uninterrupted run: the best checkpoint and the input stream.

Before the fix a resumed run (1) restarted the best-checkpoint callback from
infinity, so its first epoch overwrote best.keras even when worse, and (2)
rebuilt the input pipeline from its first element, replaying epoch 1's
shuffle and augmentation.
"""

import json

import keras
import numpy as np
import pytest

from mobilefan_tf.data import AugmentConfig, build_dataset, synthetic_faces
from mobilefan_tf.training import make_callbacks, resumed_epoch


def tiny_model():
    """A one-layer heatmap model (32 px in, 8x8x68 out): what is tested is the callbacks, not the network."""
    x = keras.Input((32, 32, 3))
    model = keras.Model(x, keras.layers.Conv2D(68, 3, padding="same")(keras.layers.AveragePooling2D(4)(x)))
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    return model


def run_epochs(workdir, epochs, val_nme):
    """One process's run through `make_callbacks`' real callbacks, as `model.fit` drives them.

    Before epoch e the weights are set to the constant e, so a checkpoint
    tells which epoch it holds. Resumes where the backup says; returns
    without `on_train_end` (a kill) unless every epoch ran.
    """
    model = tiny_model()
    callbacks = keras.callbacks.CallbackList(make_callbacks(workdir, tensorboard=False), model=model)
    callbacks.on_train_begin()
    for epoch in range(model._initial_epoch or 0, epochs):  # BackupAndRestore sets _initial_epoch
        callbacks.on_epoch_begin(epoch)
        for v in model.trainable_variables:
            v.assign(np.full(v.shape, epoch, "float32"))
        callbacks.on_epoch_end(epoch, {"loss": 1.0, "val_nme": val_nme[epoch]})
        if epoch + 1 == len(val_nme):
            callbacks.on_train_end()


def saved_epoch(path):
    weights = keras.saving.load_model(path, compile=False).get_weights()
    values = {float(v) for w in weights for v in np.unique(w)}
    assert len(values) == 1, values
    return values.pop()


def test_resumed_run_keeps_better_best_checkpoint(tmp_path):
    workdir = str(tmp_path)
    nme = [0.5, 0.3, 0.4, 0.2]  # epoch 2 (0-based 1) is the best until the last one
    run_epochs(workdir, 3, nme)  # killed after 3 of 4 epochs
    assert resumed_epoch(workdir) == 3
    assert saved_epoch(tmp_path / "best.keras") == 1

    resume = [0.5, 0.3, 0.45, 0.6]  # the resumed process's last epoch is worse than the best
    run_epochs(workdir, 4, resume)
    assert saved_epoch(tmp_path / "last.keras") == 3  # it did run
    assert saved_epoch(tmp_path / "best.keras") == 1  # ... and kept the better model
    assert json.loads((tmp_path / "best.json").read_text()) == {"monitor": "val_nme", "best": 0.3, "epoch": 2}
    assert resumed_epoch(workdir) == 0  # the finished run deleted its backup


def test_resumed_run_replaces_best_when_better(tmp_path):
    run_epochs(str(tmp_path), 2, [0.5, 0.3, 0.2])
    run_epochs(str(tmp_path), 3, [0.5, 0.3, 0.2])
    assert saved_epoch(tmp_path / "best.keras") == 2
    assert json.loads((tmp_path / "best.json").read_text()) == {"monitor": "val_nme", "best": 0.2, "epoch": 3}


def batches(ds, count):
    return [tuple(np.asarray(t) for t in b) for b in ds.take(count)]


@pytest.mark.parametrize("cache", [False, True])
def test_start_continues_the_augmented_stream(cache):
    images, landmarks = synthetic_faces(10, image_size=64, seed=1)
    kwargs = {"input_size": 32, "batch_size": 4, "seed": 7, "repeat": True, "cache": cache,
              "augment": AugmentConfig(), "with_landmarks": True}
    steps = 3  # ceil(10 / 4) batches per epoch; batches straddle passes (12 faces per epoch of 10)
    whole = batches(build_dataset(images, landmarks, **kwargs), 3 * steps)
    resumed = batches(build_dataset(images, landmarks, start=2 * steps * 4, **kwargs), steps)
    for got, want in zip(resumed, whole[2 * steps:], strict=True):  # epoch 3 of the uninterrupted stream
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
    # ... and not a replay of epoch 1 (new shuffle and new draws).
    assert not np.allclose(resumed[0][2], whole[0][2])


def test_start_continues_a_stream_of_files(tmp_path):
    """FaceSample image files (decoded after the skip): the same continuation."""
    import cv2

    from mobilefan_tf.data import FaceSample

    images, landmarks = synthetic_faces(6, image_size=64, seed=2)
    samples = []
    for i, (im, lm) in enumerate(zip(images, landmarks, strict=True)):
        path = str(tmp_path / f"{i}.png")
        cv2.imwrite(path, im[:, :, ::-1])
        samples.append(FaceSample(f"{i}", path, None, lm))
    kwargs = {"input_size": 32, "batch_size": 3, "seed": 0, "repeat": True, "augment": AugmentConfig()}
    whole = batches(build_dataset(samples, **kwargs), 4)
    resumed = batches(build_dataset(samples, start=6, **kwargs), 2)
    for got, want in zip(resumed, whole[2:], strict=True):
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
    with pytest.raises(ValueError, match="needs repeat=True"):
        build_dataset(samples, start=6, input_size=32, repeat=False)
