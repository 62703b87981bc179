"""Flip test: exact mirror geometry, one batched model call, equivariance of the average."""

import numpy as np

from mobilefan_tf.flip_averaging import FlipTestModel, mirror_landmarks, with_flip_test
from mobilefan_tf.specs import get_spec

S = 256


class ConstantRunner:
    """Answers the same landmarks for every crop and records what it was given."""

    input_size = S
    num_keypoints = 68

    def __init__(self, landmarks):
        self.landmarks = np.asarray(landmarks, np.float32)
        self.calls = []

    def predict_landmarks(self, images):
        self.calls.append(np.asarray(images))
        n = len(images)
        return np.tile(self.landmarks, (n, 1, 1)), np.tile(np.arange(68, dtype=np.float32), (n, 1))


def _face():
    lm = np.zeros((68, 2), np.float32)
    lm[:, 0], lm[:, 1] = np.arange(68) + 60.0, 2 * np.arange(68) + 10.0
    lm[36], lm[45], lm[30] = (100, 50), (150, 52), (127, 120)  # outer eye corners, nose tip
    return lm


def test_mirror_landmarks_by_hand():
    m = mirror_landmarks(_face(), S, "300w")
    # Left outer eye corner of the mirror = right outer corner of the original, x -> 255 - x.
    np.testing.assert_array_equal(m[36], [105, 52])
    np.testing.assert_array_equal(m[45], [155, 50])
    np.testing.assert_array_equal(m[30], [128, 120])  # on the axis: keeps its index
    np.testing.assert_array_equal(mirror_landmarks(m, S, 68), _face())  # an involution


def test_flip_test_averages_crop_and_mirror_in_one_call():
    runner = ConstantRunner(_face())
    images = np.random.default_rng(0).uniform(0, 255, (3, S, S, 3)).astype(np.float32)
    landmarks, scores = FlipTestModel(runner).predict_landmarks(images)
    (batch,) = runner.calls
    assert batch.shape == (6, S, S, 3)
    np.testing.assert_array_equal(batch[3:], images[:, :, ::-1])
    np.testing.assert_allclose(landmarks[1, 36], [(100 + 105) / 2, (50 + 52) / 2])
    np.testing.assert_allclose(landmarks[2, 30], [127.5, 120])
    perm = get_spec("300w").flip_permutation
    np.testing.assert_allclose(scores[0], (np.arange(68) + perm) / 2)
    assert landmarks.shape == (3, 68, 2) and scores.shape == (3, 68)


def test_flip_test_keras_model_is_mirror_equivariant():
    """For any model, the averaged answer on the mirror image is the mirrored answer (to 1e-3 px)."""
    from mobilefan_tf.models import build_model

    model = build_model("mobilefan_lite", num_keypoints=68)
    flip = FlipTestModel(model)
    assert flip.input_size == model.input_size and getattr(flip, "crop_scale", None) == getattr(model, "crop_scale", None)
    size = model.input_size
    image = np.random.default_rng(1).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    a, _ = flip.predict_landmarks(image)
    b, _ = flip.predict_landmarks(image[:, :, ::-1])
    perm = get_spec(68).flip_permutation
    expected = a[:, perm].copy()
    expected[..., 0] = size - 1 - expected[..., 0]  # written out here, not with mirror_landmarks
    np.testing.assert_allclose(b, expected, atol=1e-3)


def test_with_flip_test_wraps_once_and_unwraps():
    runner = ConstantRunner(_face())
    wrapped = with_flip_test(runner)
    assert isinstance(wrapped, FlipTestModel) and with_flip_test(wrapped) is wrapped
    assert with_flip_test(wrapped, False) is runner and with_flip_test(runner, False) is runner
