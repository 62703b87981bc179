"""One training path on every Keras backend.

This process runs Keras on TensorFlow; a subprocess with KERAS_BACKEND=jax
runs the same backend-neutral code (augmentation apply half, heatmaps, LR
schedule, and tf.data through `tf_ops`), and must give the same numbers for
the same draws. A second subprocess hides TensorFlow (a meta-path blocker)
and trains through `experiments.train_student` with the NumPy feeder,
including a resume.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from mobilefan_tf.data import AugmentConfig, FaceSample, build_dataset, crop_matrix, face_box, synthetic_faces
from mobilefan_tf.data.augment import NUM_DRAWS, augment_batch, warp_images
from mobilefan_tf.data.feeder import FaceFeeder
from mobilefan_tf.heatmaps import encode_heatmaps, input_to_heatmap
from mobilefan_tf.schedule import WarmupSchedule
from mobilefan_tf.specs import W300

pytest.importorskip("jax")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every photometric op on (probability 1), and the default mix.
ALL_ON = dataclasses.replace(AugmentConfig(), rotation_prob=1.0, occlusion_prob=1.0, blur_prob=1.0)
SCHEDULES = [dict(peak=2e-3, total_steps=100, warmup_steps=10, kind="cosine"),
             dict(peak=1e-3, total_steps=100, warmup_steps=0, kind="step", boundaries=(30, 60)),
             dict(peak=5e-4, total_steps=100, warmup_steps=5, kind="constant")]
STEPS = [0, 3, 9, 10, 11, 29, 30, 31, 59, 60, 77, 99, 140]

_JAX_CHILD = """
import json, sys, numpy as np, keras
from mobilefan_tf.data import AugmentConfig, build_dataset
from mobilefan_tf.data.augment import augment_batch
from mobilefan_tf.heatmaps import encode_heatmaps, input_to_heatmap
from mobilefan_tf.schedule import WarmupSchedule
from mobilefan_tf.specs import W300
from tests.test_backends import ALL_ON, SCHEDULES, STEPS
z = np.load(sys.argv[1] + "/in.npz")
out = {}
for name, config in (("all", ALL_ON), ("default", AugmentConfig())):
    for i, (px, lm) in enumerate(augment_batch(z["images"], z["landmarks"], z["crops"], z["draws"], config,
                                               [48, 96], W300.flip_permutation)):
        out[f"{name}_px{i}"] = keras.ops.convert_to_numpy(px)
        out[f"{name}_lm{i}"] = keras.ops.convert_to_numpy(lm)
        out[f"{name}_hm{i}"] = keras.ops.convert_to_numpy(encode_heatmaps(input_to_heatmap(lm, 4.0), [12, 24][i]))
ds = build_dataset(z["images"], z["landmarks"], input_size=48, augment=AugmentConfig(), batch_size=3, seed=5,
                   shuffle=False)
out["tfdata_px"], out["tfdata_hm"] = (t.numpy() for t in next(iter(ds)))
out["lr"] = np.array([[float(keras.ops.convert_to_numpy(WarmupSchedule(**s)(t))) for t in STEPS] for s in SCHEDULES])
np.savez(sys.argv[1] + "/out.npz", **out)
print(json.dumps({"backend": keras.backend.backend()}))
"""


def _child(code, tmp_path, timeout=900):
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _faces(n=3, size=96, seed=0):
    images, landmarks = synthetic_faces(n, image_size=size, seed=seed)
    return np.asarray(images), np.asarray(landmarks, np.float32)


def test_same_draws_same_faces_heatmaps_and_schedule_on_tensorflow_and_jax(tmp_path):
    images, lms = _faces()
    crops = crop_matrix(face_box(lms), 48, 1.25)
    draws = np.random.default_rng(4).random((3, NUM_DRAWS), np.float32)
    draws[0, 5] = 0.1  # one flipped face, one not
    draws[1, 5] = 0.9
    np.savez(tmp_path / "in.npz", images=images, landmarks=lms, crops=crops, draws=draws)
    assert json.loads(_child(_JAX_CHILD, tmp_path).strip().splitlines()[-1])["backend"] == "jax"
    theirs = np.load(tmp_path / "out.npz")
    for name, config in (("all", ALL_ON), ("default", AugmentConfig())):
        for i, (px, lm) in enumerate(augment_batch(images, lms, crops, draws, config, [48, 96], W300.flip_permutation)):
            hm = encode_heatmaps(input_to_heatmap(lm, 4.0), [12, 24][i])
            np.testing.assert_allclose(lm.numpy(), theirs[f"{name}_lm{i}"], atol=1e-4)
            np.testing.assert_allclose(hm.numpy(), theirs[f"{name}_hm{i}"], atol=1e-5)
            np.testing.assert_allclose(px.numpy(), theirs[f"{name}_px{i}"], atol=0.05)  # of 0..255
    # The photometric ops really ran: the occlusion's flat colour fills part of every face.
    px = augment_batch(images, lms, crops, draws, ALL_ON, [48], W300.flip_permutation)[0][0].numpy()
    assert all(np.mean(np.all(np.abs(np.diff(px[b], axis=1)) < 1e-3, -1)) > 0.05 for b in range(3))
    # The tf.data pipeline under JAX (tf_ops) is the one here.
    ds = build_dataset(images, lms, input_size=48, augment=AugmentConfig(), batch_size=3, seed=5, shuffle=False)
    mine_px, mine_hm = (t.numpy() for t in next(iter(ds)))
    np.testing.assert_allclose(mine_px, theirs["tfdata_px"], atol=0.05)
    np.testing.assert_allclose(mine_hm, theirs["tfdata_hm"], atol=1e-5)
    # The schedule: identical on both backends, and the hand formula.
    mine = np.array([[float(WarmupSchedule(**s)(t)) for t in STEPS] for s in SCHEDULES])
    np.testing.assert_allclose(theirs["lr"], mine, rtol=1e-6)
    t = np.asarray(STEPS, np.float64)
    cosine = 2e-3 * np.minimum(1, (t + 1) / 10) * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * np.clip((t - 10) / 90, 0, 1))))
    np.testing.assert_allclose(mine[0], cosine, rtol=1e-5)
    np.testing.assert_allclose(mine[1], 1e-3 * np.where(t >= 60, 0.01, np.where(t >= 30, 0.1, 1.0)), rtol=1e-5)
    np.testing.assert_allclose(mine[2], 5e-4 * np.minimum(1, (t + 1) / 5), rtol=1e-6)


def test_warp_matches_tensorflows_image_transform_kernel():
    image = np.random.default_rng(0).uniform(0, 255, (2, 50, 70, 3)).astype(np.float32)
    a = np.deg2rad(17.0)
    m = np.array([[1.1 * np.cos(a), -1.1 * np.sin(a), 5.0], [1.1 * np.sin(a), 1.1 * np.cos(a), -7.0], [0, 0, 1]])
    mats = np.stack([m, np.diag([0.5, 0.7, 1.0]) + [[0, 0, 3.3], [0, 0, 1.6], [0, 0, 0]]]).astype(np.float32)
    ours = warp_images(image, mats, 64).numpy()
    inv = np.linalg.inv(mats.astype(np.float64))
    transforms = np.concatenate([inv[:, :2].reshape(2, 6), np.zeros((2, 2))], 1).astype(np.float32)
    ref = tf.raw_ops.ImageProjectiveTransformV3(
        images=image, transforms=transforms, output_shape=[64, 64], fill_value=0.0, interpolation="BILINEAR",
        fill_mode="CONSTANT").numpy()
    np.testing.assert_allclose(ours, ref, atol=2e-3)
    assert (ours == 0).mean() > 0.05  # black fill is part of the comparison


def test_one_draw_two_sizes_show_the_same_face():
    images, lms = _faces(n=4, size=128, seed=2)
    crops = crop_matrix(face_box(lms), 32, 1.25)
    draws = np.random.default_rng(1).random((4, NUM_DRAWS), np.float32)
    config = dataclasses.replace(AugmentConfig(), occlusion_prob=0.0, blur_prob=0.0)
    (small, lm_small), (big, lm_big) = augment_batch(images, lms, crops, draws, config, [32, 64], W300.flip_permutation)
    # Same points in the unit frame: (u + 0.5) / S.
    np.testing.assert_allclose((lm_big.numpy() + 0.5) / 64, (lm_small.numpy() + 0.5) / 32, atol=1e-5)
    pooled = big.numpy().reshape(4, 32, 2, 32, 2, 3).mean((2, 4))
    assert np.mean(np.abs(pooled - small.numpy())) < 4.0  # 0..255 grey levels; a wrong frame gives ~30+


def test_feeder_gives_the_tf_data_batches_and_a_reproducible_stream():
    images, lms = _faces(n=5, size=96, seed=3)
    feeder = FaceFeeder(images, lms, input_size=48, batch_size=5, shuffle=False, with_landmarks=True)
    ds = build_dataset(images, lms, input_size=48, batch_size=5, shuffle=False, with_landmarks=True)
    for mine, ref in zip(feeder[0], next(iter(ds)), strict=True):
        np.testing.assert_allclose(mine, ref.numpy(), atol=0.05)
    # Distillation batches: the teacher's 2x image of the same crop, and an unlabelled face weighted 0.
    faces = [FaceSample(f"f{i}", None, im, lm) for i, (im, lm) in enumerate(zip(images, lms, strict=True))]
    faces.append(FaceSample("u", None, images[0], None, box=face_box(lms[0])))
    dual = {"input_size": 48, "batch_size": 6, "shuffle": False, "teacher_input_size": 96, "with_label_weight": True,
            "allow_unlabeled": True}
    ref = next(iter(build_dataset(faces, **dual)))
    mine = FaceFeeder(faces, **dual)[0]
    for key in ("student", "teacher"):
        np.testing.assert_allclose(mine[0][key], ref[0][key].numpy(), atol=0.05)
    np.testing.assert_allclose(mine[1], ref[1].numpy(), atol=1e-5)
    np.testing.assert_array_equal(mine[2], [1, 1, 1, 1, 1, 0])
    a = FaceFeeder(images, lms, input_size=48, batch_size=2, augment=AugmentConfig(), seed=7)
    b = FaceFeeder(images, lms, input_size=48, batch_size=2, augment=AugmentConfig(), seed=7)
    first = a[1][0]
    np.testing.assert_array_equal(first, b[1][0])
    a.on_epoch_end()
    assert len(a) == 3 and np.abs(a[1][0] - first).mean() > 1.0  # the next epoch draws anew
    # fit's callback sets the epoch fit runs (a resumed run starts later): epoch 5's draws, not 0's.
    b.epoch_callback().on_epoch_begin(5)
    a.epoch = 5
    np.testing.assert_array_equal(b[0][0], a[0][0])
    assert np.abs(b[0][0] - FaceFeeder(images, lms, input_size=48, batch_size=2, augment=AugmentConfig(),
                                       seed=7)[0][0]).mean() > 1.0


def _epochs(log) -> list[int]:
    if not os.path.isfile(log):
        return []
    with open(log) as f:
        return [int(row.split(",")[0]) for row in f.read().strip().splitlines()[1:]]


@pytest.mark.slow
def test_train_student_without_tensorflow_on_jax_resumes_after_a_kill(tmp_path):
    work = str(tmp_path / "run")
    log = os.path.join(work, "log.csv")
    cmd = [sys.executable, os.path.join(ROOT, "tests", "no_tensorflow.py"), "experiments.train_student", "--smoke",
           "--epochs", "2", "--workdir", work]
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    with open(tmp_path / "first.log", "w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.time() + 900
    try:
        while not _epochs(log):  # the backup of epoch 1 is written before its log row
            assert proc.poll() is None, f"run ended before its first epoch: {(tmp_path / 'first.log').read_text()[-3000:]}"
            assert time.time() < deadline, "no first epoch within 900 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert _epochs(log) == [0], "the run was not interrupted after its first epoch"
    assert os.path.isfile(os.path.join(work, "best.keras"))
    resumed = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]  # includes no_tensorflow.py's "tensorflow was imported"
    assert _epochs(log) == [0, 1]  # resumed at epoch 2, log appended
    import keras

    import mobilefan_tf.models  # noqa: F401 - registers the classes

    model = keras.saving.load_model(os.path.join(work, "last.keras"), compile=False)  # written under JAX
    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    assert np.all(np.isfinite(model(x, training=False).numpy()))


def test_packed_faces_round_trip_and_bad_files_name_the_file(tmp_path):
    import cv2

    from mobilefan_tf.data.packed import pack_faces, read_packed

    images, lms = _faces(n=3, size=64, seed=6)
    folder = tmp_path / "faces"
    folder.mkdir()
    for i, (im, lm) in enumerate(zip(images, lms, strict=True)):
        cv2.imwrite(str(folder / f"f{i}.png"), im[:, :, ::-1])
        pts = "".join(f"{x:.3f} {y:.3f}\n" for x, y in lm)
        (folder / f"f{i}.pts").write_text(f"version: 1\nn_points: 68\n{{\n{pts}}}\n")
    assert pack_faces(str(folder), str(tmp_path / "p.npz"))["faces"] == 3
    faces = read_packed(str(tmp_path / "p.npz"))
    assert [f.name for f in faces] == ["f0", "f1", "f2"]
    for face, im, lm in zip(faces, images, lms, strict=True):
        np.testing.assert_array_equal(face.image, im)  # PNG: lossless
        np.testing.assert_allclose(face.landmarks, lm, atol=1e-3)
    (tmp_path / "notes.npz").write_text("not an archive")
    with pytest.raises(ValueError, match="notes.npz: not a packed faces file"):
        read_packed(str(tmp_path / "notes.npz"))
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        read_packed(str(tmp_path / "missing.npz"))
