"""The JAX trainer (experiments/jax_train.py) against the TensorFlow path it stands in for.

In-process tests compare the jax.numpy data path with the tf.data one
(pixels, heatmaps, landmarks, decoding, schedule). One subprocess runs the
trainer under KERAS_BACKEND=jax (this process's Keras is on TensorFlow) and
the weights it writes are loaded back here and must predict the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("optax")
import jax.numpy as jnp  # noqa: E402
import tensorflow as tf  # noqa: E402

from experiments import jax_train as jt  # noqa: E402
from mobilefan_tf.data import AugmentConfig, build_dataset, synthetic_faces  # noqa: E402
from mobilefan_tf.data.augment import warp_image as tf_warp  # noqa: E402
from mobilefan_tf.heatmaps import decode_heatmaps, encode_heatmaps  # noqa: E402
from mobilefan_tf.specs import get_spec  # noqa: E402
from mobilefan_tf.training import WarmupSchedule  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _faces(n=4, size=160, seed=0):
    images, landmarks = synthetic_faces(n, image_size=size, seed=seed)
    return np.asarray(images), np.asarray(landmarks, np.float32)


def test_plain_batch_matches_tf_pipeline():
    images, lms = _faces()
    spec = get_spec("300w")
    fn = jt.make_batch_fn(128, 32, 1.0, None, spec.flip_permutation)
    x, hm, moved = fn(jnp.asarray(images), jnp.asarray(lms), jax.random.PRNGKey(0))
    ds = build_dataset(images, lms, input_size=128, batch_size=4, shuffle=False, with_landmarks=True)
    tx, thm, tlm = next(iter(ds))
    np.testing.assert_allclose(np.asarray(moved), tlm.numpy(), atol=1e-3)
    np.testing.assert_allclose(np.asarray(hm), thm.numpy(), atol=1e-4)
    # Bilinear taps agree; TF's fill differs only in the outermost source pixels.
    assert np.mean(np.abs(np.asarray(x) - tx.numpy())) < 0.05


def test_warp_matches_tf_for_a_rotation():
    image = np.random.default_rng(0).uniform(0, 255, (96, 96, 3)).astype(np.float32)
    a = np.deg2rad(17.0)
    m = np.array([[1.1 * np.cos(a), -1.1 * np.sin(a), 5.0], [1.1 * np.sin(a), 1.1 * np.cos(a), -7.0], [0, 0, 1]],
                 np.float32)
    ours = np.asarray(jt.warp_image(jnp.asarray(image), jnp.asarray(m), 64))
    theirs = tf_warp(tf.constant(image), tf.constant(m), 64).numpy()
    inner = np.s_[4:-4, 4:-4]
    np.testing.assert_allclose(ours[inner], theirs[inner], atol=1e-2)


def test_augmented_landmarks_follow_the_pixels():
    """Dots drawn at the landmarks land where the augmented landmarks say."""
    rng = np.random.default_rng(1)
    k = 68
    lms = np.stack([rng.uniform(100, 220, (k, 2)) for _ in range(8)]).astype(np.float32)
    idx = [0, 8, 30, 36, 45, 48, 54]  # well-spread points, one dot each
    images = np.zeros((8, 320, 320, 3), np.uint8)
    for b in range(8):
        for i in idx:
            x, y = np.round(lms[b, i]).astype(int)
            lms[b, i] = (x, y)
            images[b, y - 1:y + 2, x - 1:x + 2] = 255
    fn = jt.make_batch_fn(128, 32, 1.0, AugmentConfig.geometric(), get_spec("300w").flip_permutation)
    x, _, moved = fn(jnp.asarray(images), jnp.asarray(lms), jax.random.PRNGKey(3))
    x, moved = np.asarray(x)[..., 0], np.asarray(moved)
    perm = np.asarray(get_spec("300w").flip_permutation)
    errors = []
    for b in range(8):
        for i in idx:
            cx, cy = moved[b, i]
            if not (4 <= cx < 124 and 4 <= cy < 124):
                continue
            y0, x0 = int(round(cy)), int(round(cx))
            win = x[b, y0 - 3:y0 + 4, x0 - 3:x0 + 4]
            if win.sum() < 1:  # a flipped sample: original point i now has index perm[i]
                cx, cy = moved[b, perm[i]]
                y0, x0 = int(round(cy)), int(round(cx))
                win = x[b, y0 - 3:y0 + 4, x0 - 3:x0 + 4]
            yy, xx = np.mgrid[y0 - 3:y0 + 4, x0 - 3:x0 + 4]
            assert win.sum() > 1, f"no dot near the augmented landmark {i} of sample {b}"
            errors.append(np.hypot((win * xx).sum() / win.sum() - cx, (win * yy).sum() / win.sum() - cy))
    assert len(errors) > 20 and np.median(errors) < 0.5


def test_decode_dark_matches_tf():
    rng = np.random.default_rng(2)
    points = rng.uniform(-0.4, 31.4, (3, 68, 2)).astype(np.float32)
    maps = encode_heatmaps(points, 32, 1.0).numpy() + rng.normal(0, 0.02, (3, 32, 32, 68)).astype(np.float32)
    ours = np.asarray(jt.decode_dark(jnp.asarray(maps)))
    theirs, _ = decode_heatmaps(maps)
    np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-3)
    inner = np.clip(points, 2.0, 29.0)  # the blur's zero padding biases peaks at the very border
    clean = np.asarray(jt.decode_dark(jnp.asarray(encode_heatmaps(inner, 32, 1.0).numpy())))
    assert np.max(np.abs(clean - inner)) < 0.05


def test_encode_heatmaps_matches_tf():
    points = np.random.default_rng(3).uniform(0, 31, (68, 2)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(jt.encode_heatmaps(jnp.asarray(points), 32, 1.5)),
                               encode_heatmaps(points, 32, 1.5).numpy(), atol=1e-6)


def test_lr_schedule_matches_keras_schedule():
    ref = WarmupSchedule(2e-3, total_steps=1000, warmup_steps=50, kind="cosine", min_ratio=0.01)
    for step in (0, 10, 49, 50, 51, 400, 999, 1200):
        assert jt.lr_at(step, 1000, 50, 2e-3, 0.01) == pytest.approx(float(ref(step)), rel=1e-5)


_CHILD = """
import json, sys, numpy as np, keras
from experiments import jax_train as jt
from mobilefan_tf.models import build_model
work = sys.argv[1]
data = jt.load_packed(work + "/faces.npz")
keras.utils.set_random_seed(0)
teacher = build_model("hourglass_lite", spec="300w")
teacher.save_weights(work + "/teacher.weights.h5")
plain = jt.train(data, "mobilefan_lite", work + "/plain", epochs=2, batch_size=8, warmup_epochs=0)
both = jt.train(data, "mobilefan_lite", work + "/both", epochs=1, batch_size=8, teacher=work + "/teacher.weights.h5",
                teacher_preset="hourglass_lite", fa_weight=0.01, fs_weight=0.001)
guarded = jt.train(data, "mobilefan_lite", work + "/nan", epochs=17, batch_size=8, eval_every=100,
                   loss_scale=float("nan"))
m = build_model("mobilefan_lite", spec="300w")
m.load_weights(work + "/nan/last.weights.h5")
finite = all(np.isfinite(w).all() for w in m.get_weights())
m.load_weights(work + "/plain/last.weights.h5")
x = np.random.default_rng(0).uniform(0, 255, (2, 128, 128, 3)).astype("float32")
np.save(work + "/pred.npy", np.asarray(m(x, training=False)))
print(json.dumps({"backend": keras.backend.backend(), "plain": plain, "both": both, "nan": guarded,
                  "nan_weights_finite": bool(finite)}))
"""


def test_trainer_runs_under_jax_and_its_weights_load_in_tensorflow(tmp_path):
    from mobilefan_tf.models import build_model

    images, lms = _faces(n=20, size=160, seed=5)
    folder = tmp_path / "faces"
    folder.mkdir()
    import cv2

    for i, (im, lm) in enumerate(zip(images, lms, strict=True)):
        cv2.imwrite(str(folder / f"f{i:02d}.jpg"), im[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        pts = "".join(f"{x:.3f} {y:.3f}\n" for x, y in lm)
        (folder / f"f{i:02d}.pts").write_text(f"version: 1\nn_points: 68\n{{\n{pts}}}\n")
    counts = jt.pack_dataset(str(folder), str(tmp_path / "faces.npz"))
    assert counts["train"] == 18 and counts["val"] == 2

    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax"
    assert result["plain"]["epochs_done"] == 2 and np.isfinite(result["plain"]["last"]["loss"])
    both = result["both"]["last"]
    assert both["fa_loss"] > 0 and both["fs_loss"] > 0 and both["loss"] > both["heatmap_loss"]
    # A NaN gradient never reaches the weights: every step is skipped, counted, and the
    # numerics fallbacks are tried in order.
    nan = result["nan"]
    assert nan["skipped_steps"] == 34 and result["nan_weights_finite"]
    assert [f["now"]["precision"] for f in nan["numerics_fallbacks"]] == [None, "highest"]
    assert result["plain"]["skipped_steps"] == 0
    with open(tmp_path / "plain" / "log.csv") as f:
        assert f.read().count("\n") == 3  # header + one row per epoch

    model = build_model("mobilefan_lite", spec="300w")  # TensorFlow backend, this process
    model.load_weights(str(tmp_path / "plain" / "last.weights.h5"))
    x = np.random.default_rng(0).uniform(0, 255, (2, 128, 128, 3)).astype("float32")
    np.testing.assert_allclose(model(x, training=False).numpy(), np.load(tmp_path / "pred.npy"), atol=1e-5)


def test_bad_packed_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        jt.load_packed(str(tmp_path / "missing.npz"))
    text = tmp_path / "notes.npz"
    text.write_text("not an archive")
    with pytest.raises(ValueError, match="notes.npz: not a packed dataset"):
        jt.load_packed(str(text))
