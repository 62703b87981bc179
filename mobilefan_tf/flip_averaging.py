"""Flip test: average a model's landmarks on a face crop and on its mirror image.

The student is trained with random horizontal flips, so the mirror image is an
equally good view of the face; averaging the two predictions removes part of
each one's error (MODEL_CARD.md gives the shipped model's NME with and
without it) at twice the model cost.

The mirror is exact in the library's pixel-centre frame: mirroring a crop of
width S sends x to S - 1 - x (and heatmap column j to Hm - 1 - j), and point i
of the mirrored face is point ``spec.flip_permutation[i]`` of the original
(left eye <-> right eye, ...).
"""

from __future__ import annotations

import numpy as np

from mobilefan_tf.specs import LandmarkSpec, get_spec, model_spec


def mirror_landmarks(landmarks, width: int, spec: LandmarkSpec | str | int) -> np.ndarray:
    """Landmarks of the mirror image of a crop, in the mirror image's point order.

    Args:
        landmarks: [..., K, 2] (x, y) in the crop's pixel-centre frame.
        width: Crop width S in pixels.
        spec: Landmark layout (name, K or `LandmarkSpec`) giving the flip pairs.

    Returns:
        [..., K, 2] float32: x -> S - 1 - x, points re-ordered so that index i
        is the mirrored face's point i.
    """
    spec = get_spec(spec)
    out = np.array(landmarks, np.float32)[..., spec.flip_permutation, :]
    out[..., 0] = width - 1 - out[..., 0]
    return out


class FlipTestModel:
    """Wraps a landmark model so that `predict_landmarks` averages crop and mirror.

    Works with anything that has ``input_size`` and ``predict_landmarks``: a
    Keras landmark model, `TFLiteModel`, `SavedModelRunner`. Every other
    attribute (``crop_scale``, ``name``, ``metadata``, ...) is the wrapped
    model's.

    Args:
        model: The landmark model.
        spec: Landmark layout; defaults to the model's own (``spec`` config of
            a Keras model, ``metadata["spec"]`` of an exported one), else the
            one with the model's number of points (68 -> 300W, 98 -> WFLW, 29 -> COFW).
    """

    def __init__(self, model, spec: LandmarkSpec | str | int | None = None):
        self.model = model
        self.spec = get_spec(spec) if spec is not None else model_spec(model)

    def __getattr__(self, name):  # only called for names not found on the wrapper
        if name == "model":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.model, name)

    def predict_landmarks(self, images, **kwargs):
        """Landmarks [B, K, 2] (input pixels) and scores [B, K], each the mean of crop and mirror.

        Args:
            images: [B, S, S, 3] (or one [S, S, 3]) RGB 0..255 face crops.
            **kwargs: Passed on to the wrapped model's `predict_landmarks`.
        """
        from mobilefan_tf.models.base import check_image_batch

        arr = check_image_batch(images, self.model.input_size, getattr(self.model, "name", "model"))
        both = np.concatenate([arr, arr[:, :, ::-1]])  # one call: a Keras model runs them as one batch
        landmarks, scores = self.model.predict_landmarks(both, **kwargs)
        n, perm = len(arr), self.spec.flip_permutation
        landmarks = (landmarks[:n] + mirror_landmarks(landmarks[n:], arr.shape[2], self.spec)) / 2
        scores = (scores[:n] + scores[n:][:, perm]) / 2
        return landmarks.astype(np.float32), np.asarray(scores, np.float32)


def with_flip_test(model, flip_test: bool = True):
    """`model` wrapped in a `FlipTestModel` when `flip_test` (and not already wrapped)."""
    if flip_test and not isinstance(model, FlipTestModel):
        return FlipTestModel(model)
    if not flip_test and isinstance(model, FlipTestModel):
        return model.model
    return model
