"""Crops, the single-warp augmentation and the tf.data pipeline."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import tensorflow as tf

from mobilefan_tf.data import (
    AugmentConfig,
    FaceSample,
    apply_affine,
    build_dataset,
    crop_face,
    crop_matrix,
    face_box,
    invert_affine,
    read_300w,
    synthetic_faces,
)
from mobilefan_tf.data.augment import random_affine, warp_image
from mobilefan_tf.specs import W300

FLIP_ONLY = dataclasses.replace(AugmentConfig.none(), flip_prob=1.0)


def first_batch(*args, **kwargs):
    return [t.numpy() for t in next(iter(build_dataset(*args, **kwargs)))]


def test_crop_face_geometry():
    image = np.zeros((100, 200, 3), np.uint8)
    image[40, 120] = 255
    crop, matrix = crop_face(image, box=np.array([100, 30, 140, 50], np.float32), output_size=64, scale=1.25)
    # Box centre -> crop centre; side 1.25 * 40 = 50 px -> 64 px.
    np.testing.assert_allclose(apply_affine(matrix, [[120.0, 40.0]]), [[31.5, 31.5]], atol=1e-5)
    np.testing.assert_allclose(matrix[0, 0], 64 / 50, rtol=1e-6)
    back = apply_affine(invert_affine(matrix), apply_affine(matrix, [[3.0, 7.0], [150.5, 80.25]]))
    np.testing.assert_allclose(back, [[3.0, 7.0], [150.5, 80.25]], atol=1e-4)
    peak = np.unravel_index(np.argmax(crop[..., 0]), crop.shape[:2])
    assert abs(peak[0] - 31.5) <= 1 and abs(peak[1] - 31.5) <= 1


def test_augment_then_invert_recovers_landmarks():
    _, landmarks = synthetic_faces(8, 200, seed=3)
    crops = crop_matrix(face_box(landmarks), 128, 1.25)
    for i in range(8):
        aug, flipped = random_affine(AugmentConfig(), 128, tf.constant([7, i], tf.int64))
        full = (aug.numpy().astype(np.float64) @ np.vstack([crops[i], [0, 0, 1]]))[:2]
        moved = apply_affine(full, landmarks[i])
        if flipped:
            moved = moved[W300.flip_permutation]
        # Un-permute (the permutation is an involution), then invert the matrix.
        restored = apply_affine(invert_affine(full), moved[W300.flip_permutation] if flipped else moved)
        np.testing.assert_allclose(restored, landmarks[i], atol=1e-3)


def test_pipeline_without_augmentation_is_the_crop():
    images, landmarks = synthetic_faces(4, 160, seed=1)
    _, _, out = first_batch(images, landmarks, input_size=96, batch_size=4, shuffle=False, with_landmarks=True)
    matrices = crop_matrix(face_box(landmarks), 96, 1.25)
    np.testing.assert_allclose(out, apply_affine(matrices, landmarks), atol=1e-3)
    np.testing.assert_allclose(apply_affine(invert_affine(matrices), out), landmarks, atol=1e-3)


def test_flip_twice_is_identity():
    image = tf.constant(np.random.default_rng(0).uniform(0, 255, (32, 32, 3)), tf.float32)
    matrix, flipped = random_affine(FLIP_ONLY, 32, tf.constant([1, 2], tf.int64))
    assert bool(flipped)
    np.testing.assert_allclose((matrix @ matrix).numpy(), np.eye(3), atol=1e-6)
    twice = warp_image(warp_image(image, matrix, 32), matrix, 32)
    np.testing.assert_allclose(twice.numpy(), image.numpy(), atol=1e-3)
    perm = W300.flip_permutation
    np.testing.assert_array_equal(perm[perm], np.arange(68))


def test_flipped_real_face_mirrors_eye_corners(w300_dir):
    samples = read_300w(w300_dir / "300W-train/helen")[:2]
    kw = dict(input_size=128, batch_size=2, shuffle=False, with_landmarks=True)
    plain, _, lm = first_batch(samples, **kw)
    flipped, _, lm_f = first_batch(samples, augment=FLIP_ONLY, **kw)
    np.testing.assert_allclose(flipped, plain[:, :, ::-1], atol=1e-2)
    # Left outer eye corner of the flipped face = mirrored right outer corner (45) of the original.
    np.testing.assert_allclose(lm_f[:, 36, 0], 127 - lm[:, 45, 0], atol=1e-3)
    np.testing.assert_allclose(lm_f[:, 36, 1], lm[:, 45, 1], atol=1e-3)
    assert np.all(lm_f[:, 36, 0] < lm_f[:, 45, 0])  # Still the image-left eye.


def dot_images(n: int = 4, size: int = 320):
    """Faces of 68 Gaussian dots (sigma 2 px) on a 9 x 8 lattice, jittered."""
    rng = np.random.default_rng(5)
    gy, gx = np.mgrid[0:8, 0:9]
    base = np.stack([gx.ravel(), gy.ravel()], 1)[:68] * 28.0 + 50.0
    yy, xx = np.mgrid[0:size, 0:size]
    images, landmarks = [], []
    for _ in range(n):
        pts = base + rng.uniform(-3, 3, base.shape)
        img = np.zeros((size, size), np.float64)
        for x, y in pts:
            img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2))
        images.append(np.repeat((255 * img)[..., None].round().astype(np.uint8), 3, 2))
        landmarks.append(pts)
    return np.stack(images), np.stack(landmarks).astype(np.float32)


def test_warped_pixels_follow_warped_landmarks():
    images, landmarks = dot_images()
    config = AugmentConfig.geometric()
    out, _, lm = first_batch(images, landmarks, input_size=256, batch_size=4, augment=config, seed=11,
                             shuffle=False, with_landmarks=True)
    checked = 0
    for img, pts in zip(out[..., 0], lm, strict=True):
        for x, y in pts:
            x0, y0 = int(round(x)), int(round(y))
            if not (6 <= x0 < 250 and 6 <= y0 < 250):
                continue
            win = img[y0 - 6 : y0 + 7, x0 - 6 : x0 + 7]
            wy, wx = np.mgrid[y0 - 6 : y0 + 7, x0 - 6 : x0 + 7]
            centroid = np.array([(win * wx).sum(), (win * wy).sum()]) / win.sum()
            np.testing.assert_allclose(centroid, [x, y], atol=0.5)
            checked += 1
    assert checked > 150


def test_heatmap_peaks_sit_on_landmarks():
    images, landmarks = synthetic_faces(4, 128, seed=2)
    _, maps, lm = first_batch(images, landmarks, input_size=128, batch_size=4, augment=AugmentConfig(), seed=0,
                              with_landmarks=True)
    assert maps.shape == (4, 32, 32, 68)
    hm_xy = (lm + 0.5) / 4 - 0.5
    inside = np.all((hm_xy > 0.5) & (hm_xy < 30.5), axis=-1)
    flat = maps.transpose(0, 3, 1, 2).reshape(4, 68, -1).argmax(-1)
    peak = np.stack([flat % 32, flat // 32], -1)
    assert inside.sum() > 200
    np.testing.assert_array_less(np.abs(peak - hm_xy)[inside], 0.5 + 1e-4)


def test_seeded_pipeline_is_deterministic():
    images, landmarks = synthetic_faces(12, 96, seed=4)
    kw = dict(input_size=64, batch_size=6, augment=AugmentConfig())
    a = [b[0].numpy() for b in build_dataset(images, landmarks, seed=3, **kw)]
    b = [b[0].numpy() for b in build_dataset(images, landmarks, seed=3, **kw)]
    c = [b[0].numpy() for b in build_dataset(images, landmarks, seed=4, **kw)]
    assert len(a) == 2 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    repeated = build_dataset(images, landmarks, seed=3, repeat=True, **kw).take(4)
    epochs = [b[0].numpy() for b in repeated]
    assert not np.array_equal(np.sort(epochs[0].ravel()), np.sort(epochs[2].ravel()))  # New draws per pass.


def test_samples_from_files_cache_and_skip_bad(tmp_path):
    images, landmarks = synthetic_faces(5, 96, seed=6)
    samples = []
    for i in range(5):
        path = tmp_path / f"f{i}.png"
        cv2.imwrite(str(path), images[i][:, :, ::-1])
        samples.append(FaceSample(f"f{i}", str(path), None, landmarks[i]))
    kw = dict(input_size=96, batch_size=5, shuffle=False, with_landmarks=True, crop_scale=1.25)
    out, _, lm = first_batch(samples, cache=True, **kw)
    ref, _, ref_lm = first_batch(images, landmarks, **kw)
    np.testing.assert_allclose(out, ref, atol=1e-3)
    np.testing.assert_allclose(lm, ref_lm, atol=1e-4)
    (tmp_path / "f3.png").write_bytes((tmp_path / "f3.png").read_bytes()[:200])
    samples[1] = FaceSample("f1", samples[1].image_path, None, landmarks[1][:67])
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'f1.png'}: expected 68 points, found 67"):
        build_dataset(samples, **kw)
    ds = build_dataset(samples, skip_bad=True, **kw)
    assert [p for p, _ in ds.skipped] == [str(tmp_path / "f1.png"), str(tmp_path / "f3.png")]
    assert next(iter(ds))[0].shape[0] == 3
