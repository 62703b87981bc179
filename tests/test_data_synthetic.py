"""Procedural faces: shapes, determinism, speed, landmarks on the drawn features."""

from __future__ import annotations

import time

import numpy as np

from mobilefan_tf.data import synthetic_faces


def test_shapes_and_determinism():
    images, landmarks = synthetic_faces(6, 128, seed=9)
    assert images.shape == (6, 128, 128, 3) and images.dtype == np.uint8
    assert landmarks.shape == (6, 68, 2) and landmarks.dtype == np.float32
    again, again_lm = synthetic_faces(6, 128, seed=9)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(landmarks, again_lm)
    assert not np.array_equal(synthetic_faces(6, 128, seed=10)[1], landmarks)
    assert np.all((landmarks > 0) & (landmarks < 127))


def test_fast_enough():
    start = time.perf_counter()
    synthetic_faces(100, 256)
    assert (time.perf_counter() - start) / 100 < 0.005  # ~1 ms/face on one core.


def test_left_right_layout_matches_300w_flip_pairs():
    _, lm = synthetic_faces(50, 256, seed=1)
    # Rotations are below 30 degrees, so image-left parts stay left.
    for left, right in ((0, 16), (36, 45), (39, 42), (17, 26), (48, 54), (31, 35)):
        assert np.all(lm[:, left, 0] < lm[:, right, 0])
    assert np.all(lm[:, 37, 1] < lm[:, 41, 1])  # Upper lid above lower lid.
    assert np.all(lm[:, 51, 1] < lm[:, 57, 1])  # Upper lip above lower lip.


def test_landmarks_sit_on_drawn_features():
    images, lm = synthetic_faces(20, 256, seed=2)
    gray = images.astype(np.float32).mean(-1)
    idx = np.round(lm).astype(int)
    at = gray[np.arange(20)[:, None], idx[..., 1], idx[..., 0]]  # [N, 68]
    # Eye points lie on the dark eye outline; brow points on the dark brows.
    assert np.median(at[:, 36:48]) < 90
    assert np.median(at[:, 17:27]) < np.median(gray) - 20
    # Jaw points lie on the face outline: the pixel on the outline is darker than
    # the skin a few pixels inside (towards the nose tip, point 30).
    inward = lm[:, :17] + 5 * (lm[:, 30:31] - lm[:, :17]) / np.linalg.norm(lm[:, 30:31] - lm[:, :17], axis=-1, keepdims=True)
    ii = np.round(inward).astype(int)
    skin = gray[np.arange(20)[:, None], ii[..., 1], ii[..., 0]]
    assert np.mean(at[:, :17] < skin) > 0.9
