"""Pieces shared by the student and teacher models."""

from __future__ import annotations

import os

import keras
import numpy as np

# Names of the three decoder features that distillation matches, coarse to fine.
FEATURE_NAMES = ("feat1", "feat2", "feat3")


def preprocess_layer() -> keras.layers.Layer:
    """Maps RGB in [0, 255] to [-1, 1] inside the model (so exports take raw pixels)."""
    return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")


def head_initializer(seed: int | None = None) -> keras.initializers.Initializer:
    """N(0, 0.001), the authors' init for deconvs and the heatmap head."""
    return keras.initializers.RandomNormal(stddev=0.001, seed=seed)


def check_weights_file(path: str, what: str) -> None:
    """Raises a one-line error when a weights file is missing or unreadable."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} weights file not found: {path}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{what} weights file is empty: {path}")


def copy_weights_by_name(src: keras.Model, dst: keras.Model) -> int:
    """Copies weights of same-named layers from `src` into `dst`; returns the count."""
    copied = 0
    dst_layers = {layer.name: layer for layer in dst.layers}
    for layer in src.layers:
        target = dst_layers.get(layer.name)
        if target is not None and layer.weights:
            target.set_weights(layer.get_weights())
            copied += 1
    return copied


def check_image_batch(images, input_size: int, name: str) -> np.ndarray:
    """Validates a batch [B, S, S, 3] (or one [S, S, 3]) of RGB 0..255; returns float32 [B, S, S, 3]."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    want = (input_size, input_size, 3)
    if arr.ndim != 4 or arr.shape[1:] != want:
        raise ValueError(
            f"{name} expects images of shape [batch, {want[0]}, {want[1]}, 3] (RGB, 0-255), got {list(arr.shape)}"
        )
    return arr.astype(np.float32)


class LandmarkModelMixin:
    """Common API of every heatmap model in this package.

    Subclasses are functional `keras.Model`s that set `input_size`,
    `num_keypoints`, `heatmap_size` and a dict `_feature_tensors` of the
    three decoder features before calling ``super().__init__``, and list
    their constructor arguments in `CONFIG_KEYS` (keras-hub style: the
    config is the constructor's arguments, so `from_config` rebuilds).
    """

    CONFIG_KEYS: tuple[str, ...] = ()

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable}
        config.update({key: getattr(self, key) for key in self.CONFIG_KEYS})
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @property
    def feature_extractor(self) -> keras.Model:
        """A model sharing this one's layers that returns heatmaps and features.

        Returns a dict: ``heatmaps`` [B, Hm, Hm, K] (the final stack for a
        multi-stack model), and ``feat1``..``feat3``: the decoder features at
        1/16, 1/8 and 1/4 of the input resolution (post-ReLU).
        """
        if getattr(self, "_feature_model", None) is None:
            outputs = {"heatmaps": self.final_heatmaps_tensor}
            outputs.update(self._feature_tensors)
            self._feature_model = keras.Model(self.input, outputs, name=f"{self.name}_features")
        return self._feature_model

    @property
    def final_heatmaps_tensor(self):
        out = self.outputs
        return out[-1]

    @property
    def feature_channels(self) -> dict[str, int]:
        return {name: int(t.shape[-1]) for name, t in self._feature_tensors.items()}

    def check_images(self, images) -> np.ndarray:
        """Validates a batch of images, [B, S, S, 3] RGB in [0, 255]."""
        return check_image_batch(images, self.input_size, self.name)

    def predict_landmarks(self, images, batch_size: int = 16, method: str = "dark"):
        """Landmarks in input pixels for a batch of face crops.

        Returns:
            landmarks [B, K, 2] (x, y, pixel centres of the input) and
            scores [B, K] (heatmap peaks), as NumPy arrays.
        """
        from mobilefan_tf.heatmaps import decode_to_input  # keras.ops: any backend

        arr = self.check_images(images)
        heatmaps = self.predict(arr, batch_size=batch_size, verbose=0)
        if isinstance(heatmaps, (list, tuple)):
            heatmaps = heatmaps[-1]
        lm, sc = decode_to_input(heatmaps, self.input_size, method=method)
        return keras.ops.convert_to_numpy(lm), keras.ops.convert_to_numpy(sc)
