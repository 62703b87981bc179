"""Unlabelled faces pay: a student given them (teacher targets only) beats the same student without them."""

import os

import keras
import numpy as np
import pytest

from distillation import Distiller
from distillation.unlabeled import list_images, read_unlabeled
from mobilefan_tf.data import FaceSample, build_dataset, face_box, synthetic_faces
from mobilefan_tf.metrics import nme_per_image
from mobilefan_tf.models import build_model

S = 64
STEPS = 200  # measured at 200: teacher 0.218, student without unlabelled 0.728, with 0.432 (ratio 0.59)


def tiny(seed):
    keras.utils.set_random_seed(seed)
    return build_model("mobilefan", input_size=S, width=0.35, deconv_filters=16)


def faces(images, landmarks, prefix, labelled=True):
    return [
        FaceSample(f"{prefix}{i}", None, im, lm if labelled else None, box=None if labelled else face_box(lm))
        for i, (im, lm) in enumerate(zip(images, landmarks, strict=True))
    ]


def val_nme(model, images, landmarks):
    ds = build_dataset(faces(images, landmarks, "v"), input_size=S, batch_size=32, shuffle=False, with_landmarks=True)
    pred, gt = [], []
    for x, _, lm in ds:
        pred.append(model.predict_landmarks(x.numpy())[0])
        gt.append(lm.numpy())
    return float(nme_per_image(np.concatenate(pred), np.concatenate(gt), "300w").mean())


def distil(teacher, train, seed=3):
    ds = build_dataset(train, input_size=S, batch_size=8, seed=seed, repeat=True, with_label_weight=True,
                       allow_unlabeled=True, teacher_input_size=S)
    d = Distiller(tiny(seed), teacher)
    d.compile(keras.optimizers.Adam(5e-3), kd_weight=1.0, jit_compile=False)
    d.fit(ds, epochs=1, steps_per_epoch=STEPS, verbose=0)
    return d.student


@pytest.mark.slow
def test_unlabelled_faces_beat_the_same_student_without_them():
    images, landmarks = synthetic_faces(268, image_size=96, seed=11)
    labelled, pool, val = slice(0, 8), slice(8, 248), slice(248, 268)
    # The teacher learnt from plenty of faces (the pool); the students get 8 labelled faces.
    teacher = tiny(1)
    teacher.compile(keras.optimizers.Adam(5e-3), loss="mse", jit_compile=False)
    teacher_ds = build_dataset(faces(images[pool], landmarks[pool], "t"), input_size=S, batch_size=16, seed=1,
                               repeat=True)
    teacher.fit(teacher_ds, epochs=1, steps_per_epoch=2 * STEPS, verbose=0)
    few = faces(images[labelled], landmarks[labelled], "l")
    without = distil(teacher, few)
    with_unlabelled = distil(teacher, few + faces(images[pool], landmarks[pool], "u", labelled=False))
    nme_without = val_nme(without, images[val], landmarks[val])
    nme_with = val_nme(with_unlabelled, images[val], landmarks[val])
    nme_teacher = val_nme(teacher, images[val], landmarks[val])
    print(f"val NME: teacher {nme_teacher:.4f}, student without unlabelled {nme_without:.4f}, with {nme_with:.4f}")
    assert nme_with < 0.85 * nme_without


def test_unlabelled_folder_is_framed_by_the_teacher(tmp_path):
    import cv2

    images, landmarks = synthetic_faces(3, image_size=96, seed=12)
    for i, im in enumerate(images):
        os.makedirs(tmp_path / "sub", exist_ok=True)
        cv2.imwrite(str(tmp_path / ("sub" if i else ".") / f"face{i}.png"), im[:, :, ::-1])
    (tmp_path / "notes.txt").write_text("not an image")
    assert [os.path.basename(p) for p in list_images(str(tmp_path))] == ["face0.png", "face1.png", "face2.png"]

    class Oracle:  # a "teacher" that returns the true landmarks, in its 48 px input frame
        input_size = 48

        def predict_landmarks(self, crops, batch_size=16):
            assert crops.shape == (3, 48, 48, 3)
            order = [0, 1, 2]  # sorted paths: face0 (top level), face1, face2 (sub/)
            return (landmarks[order] + 0.5) * 48 / 96 - 0.5, None

    samples = read_unlabeled(str(tmp_path), Oracle())
    assert [s.landmarks for s in samples] == [None] * 3
    assert all(s.attributes["unlabeled"] for s in samples)
    for s, lm in zip(samples, landmarks, strict=True):
        np.testing.assert_allclose(s.box, face_box(lm), atol=1e-3)  # mapped back to image pixels exactly


def test_unlabelled_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        list_images(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no images"):
        list_images(str(tmp_path))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg: cannot decode"):
        read_unlabeled(str(tmp_path), teacher=None)
    with pytest.raises(ValueError, match="box mode"):
        read_unlabeled(str(tmp_path), teacher=None, box="magic")
