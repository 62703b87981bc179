"""Predictor: image conversion, model loading, face boxes and the crop round trip."""

import os

import numpy as np
import pytest
from PIL import Image
from skimage import data

from mobilefan_tf.data import apply_affine, crop_matrix, invert_affine, synthetic_faces
from mobilefan_tf.detector import FaceDetector, default_detector
from mobilefan_tf.predictor import Predictor, load_landmark_model, read_image, to_rgb_uint8

SHARED_300W = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "300w", "300W-train")


class FixedRunner:
    """A stand-in model that answers the same crop-frame landmarks for every face."""

    input_size = 128
    num_keypoints = 68

    def __init__(self):
        self.crop_landmarks = synthetic_faces(1, image_size=128, seed=3)[1][0]
        self.crops = []

    def predict_landmarks(self, images):
        self.crops.append(np.asarray(images))
        n = len(images)
        return np.tile(self.crop_landmarks, (n, 1, 1)), np.ones((n, 68), np.float32)


class FixedDetector(FaceDetector):
    def __init__(self, boxes):
        self.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)

    def detect(self, image):
        return self.boxes


def test_to_rgb_uint8_converts_layouts():
    gray = np.full((5, 7), 9, np.uint8)
    assert to_rgb_uint8(gray).shape == (5, 7, 3)
    assert to_rgb_uint8(gray[..., None]).shape == (5, 7, 3)
    rgba = np.zeros((5, 7, 4), np.uint8)
    assert to_rgb_uint8(rgba).shape == (5, 7, 3)
    deep = np.full((5, 7, 3), 65535, np.uint16)
    out = to_rgb_uint8(deep)
    assert out.dtype == np.uint8 and out.max() == 255
    with pytest.raises(ValueError, match="not an image"):
        to_rgb_uint8(np.zeros((4, 4, 5)))


def test_read_image_formats_and_errors(tmp_path):
    rgb = data.astronaut()[:64, :80]
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(tmp_path / "deep.png")
    for name in ("rgba.png", "gray.png", "pal.png", "deep.png"):
        out = read_image(str(tmp_path / name))
        assert out.shape == (64, 80, 3) and out.dtype == np.uint8, name
    assert abs(int(read_image(str(tmp_path / "deep.png"))[10, 10, 0]) - int(rgb[10, 10, 0])) <= 1
    Image.fromarray(rgb).save(tmp_path / "full.jpg")
    raw = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(ValueError, match="unreadable|truncated"):
        read_image(str(tmp_path / "cut.jpg"))
    with pytest.raises(ValueError, match="not an image"):
        read_image(str(tmp_path / "text.jpg"))
    with pytest.raises(FileNotFoundError):
        read_image(str(tmp_path / "missing.png"))


def test_load_landmark_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_landmark_model(str(tmp_path / "nope.keras"))
    for name in ("bad.keras", "bad.tflite", "bad.onnx"):
        (tmp_path / name).write_bytes(b"garbage")
        with pytest.raises(ValueError, match=f"cannot load model .*{name}"):
            load_landmark_model(str(tmp_path / name))
    with pytest.raises(ValueError, match="not a SavedModel"):
        load_landmark_model(str(tmp_path))


@pytest.mark.parametrize("shape", [(300, 400), (5000, 900)])
def test_predictor_maps_crops_back_to_photo(shape):
    """The model sees the training crop of the box; its answer comes back in photo pixels."""
    runner = FixedRunner()
    photo = np.random.default_rng(0).integers(0, 255, (*shape, 3), np.uint8)
    box = np.array([120.0, 80.0, 220.0, 200.0])
    faces = Predictor(runner, crop_scale=1.25, flip_test=False).predict(photo, boxes=[box])
    assert len(faces) == 1 and faces[0]["landmarks"].shape == (68, 2)
    expected = apply_affine(invert_affine(crop_matrix(box, 128, 1.25)), runner.crop_landmarks)
    # Photos over 4096 px are downscaled first: allow the resampling offset.
    tol = 1e-3 if max(shape) <= 4096 else 0.05
    np.testing.assert_allclose(faces[0]["landmarks"], expected, atol=tol)
    assert runner.crops[0].shape == (1, 128, 128, 3)


def test_predictor_flip_test_averages_with_the_mirror_crop():
    from mobilefan_tf.flip_averaging import mirror_landmarks

    runner = FixedRunner()
    photo = np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8)
    box = np.array([120.0, 80.0, 220.0, 200.0])
    faces = Predictor(runner, crop_scale=1.25).predict(photo, boxes=[box])  # flip test is the default
    (crops,) = runner.crops
    np.testing.assert_array_equal(crops[1], crops[0][:, ::-1])
    mean = (runner.crop_landmarks + mirror_landmarks(runner.crop_landmarks, 128, 68)) / 2
    expected = apply_affine(invert_affine(crop_matrix(box, 128, 1.25)), mean)
    np.testing.assert_allclose(faces[0]["landmarks"], expected, atol=1e-3)


def test_predictor_uses_detector_box_calibration():
    runner = FixedRunner()
    detector = FixedDetector([[100, 100, 200, 200]])
    detector.box_scale, detector.box_shift = 1.2, (0.0, 0.1)
    faces = Predictor(runner, detector=detector, flip_test=False).predict(np.zeros((400, 400, 3), np.uint8))
    np.testing.assert_allclose(faces[0]["box"], [90, 100, 210, 220], atol=1e-4)
    assert Predictor(runner, detector=FixedDetector(np.zeros((0, 4)))).predict(np.zeros((50, 50), np.uint8)) == []


def test_predictor_accepts_path_and_keras_model(tmp_path):
    from mobilefan_tf.models import build_model

    model = build_model("mobilefan_lite", num_keypoints=68)
    path = str(tmp_path / "lite.keras")
    model.save(path)
    predictor = Predictor(path, detector=FixedDetector([[10, 10, 60, 60]]))
    faces = predictor.predict(np.zeros((100, 120), np.uint16))
    assert faces[0]["landmarks"].shape == (68, 2) and faces[0]["scores"].shape == (68,)


def test_dlib_detector_finds_astronaut():
    pytest.importorskip("dlib")
    detector = default_detector()
    boxes = detector.detect(data.astronaut())
    assert len(boxes) >= 1
    x0, y0, x1, y1 = boxes[0]
    assert 150 < x0 < 200 and 60 < y0 < 110 and 240 < x1 < 290 and 150 < y1 < 200
    landmark_box = detector.to_landmark_box(boxes[:1])[0]
    assert landmark_box[3] > y1  # the landmark box reaches lower (chin)
    assert len(detector.detect(np.zeros((200, 200, 3), np.uint8))) == 0


@pytest.mark.skipif(not os.path.isdir(SHARED_300W), reason="shared 300W faces not present")
def test_dlib_box_calibration_on_300w():
    pytest.importorskip("dlib")
    from mobilefan_tf.data import read_300w

    samples = read_300w(SHARED_300W)[::25]  # 81 faces of all three subsets
    detector = default_detector()
    shipped = (detector.box_scale, detector.box_shift)
    fit = detector.calibrate([read_image(s.image_path) for s in samples], [s.landmarks for s in samples])
    assert fit["matched"] >= 0.8 * len(samples)
    assert abs(fit["box_scale"] - shipped[0]) < 0.06 and abs(fit["box_shift"][1] - shipped[1][1]) < 0.04
