"""evaluate_model's crop round trip and metrics, plot_ced and overlay_grid."""

import numpy as np
import pytest

from mobilefan_tf.data import FaceSample, apply_affine, crop_matrix, face_box, synthetic_faces
from mobilefan_tf.evaluation import evaluate_model, overlay_grid, plot_ced, shrink_faces


class OracleRunner:
    """Answers given crop-frame landmarks in call order (the ground truth, plus an offset)."""

    input_size = 96
    crop_scale = 1.4

    def __init__(self, answers):
        self.answers = list(answers)

    def predict_landmarks(self, images):
        out = np.stack([self.answers.pop(0) for _ in range(len(images))])
        return out, np.ones(out.shape[:2], np.float32)


@pytest.fixture()
def samples():
    images, landmarks = synthetic_faces(5, image_size=140, seed=4)
    return [FaceSample(f"face{i}", None, im, lm) for i, (im, lm) in enumerate(zip(images, landmarks, strict=True))]


def test_evaluate_model_round_trip(samples):
    # Predictions 2 crop pixels right of the truth; 96 px crops of side 1.4 x box.
    shifted = []
    for s in samples:
        matrix = crop_matrix(face_box(s.landmarks), 96, 1.4)
        shifted.append(apply_affine(matrix, s.landmarks) + np.array([2.0, 0.0]))
    result = evaluate_model(OracleRunner(shifted), samples, threshold=0.08, batch_size=2, return_landmarks=True)
    assert result["num_images"] == 5 and result["crop_scale"] == 1.4
    for s, pred, row in zip(samples, result["landmarks"], result["per_image"], strict=True):
        side = 1.4 * np.ptp(s.landmarks, axis=0).max()
        np.testing.assert_allclose(pred - s.landmarks, np.tile([2.0 * side / 96, 0.0], (68, 1)), atol=1e-3)
        iod = np.linalg.norm(s.landmarks[36] - s.landmarks[45])
        assert row["file"] == s.name and row["nme"] == pytest.approx(2.0 * side / 96 / iod, rel=1e-3)
    assert result["nme"] == pytest.approx(np.mean([r["nme"] for r in result["per_image"]]))
    # Every point is off by the same normalised amount, so every part's NME is the face's.
    nmes = np.array([r["nme"] for r in result["per_image"]])
    assert result["parts"] == pytest.approx(dict.fromkeys(result["parts"], nmes.mean()))
    assert 0.0 <= result["auc"] <= 1.0 and 0.0 <= result["failure_rate"] <= 1.0


def test_plots(samples, tmp_path):
    nmes = np.array([0.01, 0.03, 0.05, 0.09, 0.02])
    assert plot_ced({"a": nmes, "b": nmes / 2}, str(tmp_path / "ced.png"))
    preds = np.stack([s.landmarks + 1.0 for s in samples])
    gts = np.stack([s.landmarks for s in samples])
    path = overlay_grid([s.image for s in samples], preds, nmes, str(tmp_path / "grid.png"), ground_truth=gts, num=2)
    assert (tmp_path / "grid.png").stat().st_size > 1000 and path.endswith("grid.png")
    with pytest.raises(ValueError, match="no samples"):
        evaluate_model(OracleRunner([]), [])


def test_shrink_faces_keeps_landmarks_on_their_pixels():
    """A 2x2 white block centred on a landmark becomes one white pixel exactly at the scaled landmark."""
    image = np.zeros((40, 60, 3), np.uint8)
    image[10:12, 20:22] = 255  # centre (x, y) = (20.5, 10.5)
    landmarks = np.array([[20.5, 10.5], [40.5, 30.5]], np.float32)  # box side 20
    (small,) = shrink_faces([FaceSample("f", None, image, landmarks, box=np.zeros(4, np.float32))], 10)
    assert small.image.shape == (20, 30, 3) and small.box is None and small.image_path is None
    np.testing.assert_allclose(small.landmarks, [[10, 5], [20, 15]])
    ys, xs = np.nonzero(small.image[..., 0] == 255)
    assert (xs.tolist(), ys.tolist()) == ([10], [5])
    np.testing.assert_allclose((small.landmarks.max(0) - small.landmarks.min(0)).max(), 10)
    (same,) = shrink_faces([FaceSample("f", None, image, landmarks)], 50)  # never enlarged
    assert same.image.shape == image.shape
    np.testing.assert_array_equal(same.landmarks, landmarks)
    with pytest.raises(ValueError, match="> 1 pixel"):
        shrink_faces([], 0)

