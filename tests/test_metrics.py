"""Metrics on hand-computed cases."""

import numpy as np
import pytest

from mobilefan_tf.heatmaps import encode_heatmaps
from mobilefan_tf.metrics import (
    NormalizedMeanError,
    auc,
    ced_curve,
    failure_rate,
    nme_per_image,
    nme_per_part,
    normalizer,
    summarize,
)


def _face(k=68):
    gt = np.zeros((1, k, 2))
    gt[0, :, 0] = np.arange(k) % 10
    gt[0, :, 1] = np.arange(k) // 10
    return gt


def test_nme_inter_ocular_exact():
    gt = _face()
    gt[0, 36] = [0.0, 0.0]
    gt[0, 45] = [40.0, 0.0]  # inter-ocular distance 40
    pred = gt.copy()
    pred[0, 0] += [3.0, 4.0]  # one point off by 5 px
    # mean error 5 / 68 px, divided by 40
    assert nme_per_image(pred, gt, "300w")[0] == pytest.approx(5 / 68 / 40)


def test_nme_per_part_by_hand():
    gt = np.concatenate([_face(), _face()])
    gt[:, 36] = [0.0, 0.0]
    gt[0, 45] = [40.0, 0.0]  # inter-ocular 40 px
    gt[1, 45] = [20.0, 0.0]  # 20 px
    pred = gt.copy()
    pred[:, 0] += [3.0, 4.0]  # a jaw point 5 px off in both faces
    pred[1, 60] += [0.0, 2.0]  # an inner-mouth point 2 px off in the second face
    parts = nme_per_part(pred, gt, "300w")
    assert list(parts)[:2] == ["jaw", "brow_left"]  # the layout's group order
    assert parts["jaw"] == pytest.approx((5 / 40 + 5 / 20) / (2 * 17))  # 17 jaw points, 2 faces
    assert parts["mouth_inner"] == pytest.approx((2 / 20) / (2 * 8))
    assert parts["eye_left"] == 0 and parts["nose_base"] == 0
    # 300W's groups split the 68 points, so their point-weighted mean is the NME.
    sizes = {"jaw": 17, "brow_left": 5, "brow_right": 5, "nose_bridge": 4, "nose_base": 5, "eye_left": 6,
             "eye_right": 6, "mouth_outer": 12, "mouth_inner": 8}
    assert sum(parts[g] * n for g, n in sizes.items()) / 68 == pytest.approx(nme_per_image(pred, gt, "300w").mean())


def test_nme_inter_pupil_300w_uses_eye_centroids():
    gt = _face()
    gt[0, 36:42] = [[0, 0], [2, -1], [4, -1], [6, 0], [4, 1], [2, 1]]  # centroid (3, 0)
    gt[0, 42:48] = gt[0, 36:42] + [30, 0]  # centroid (33, 0)
    assert normalizer(gt, "300w", "inter_pupil")[0] == pytest.approx(30.0)
    pred = gt + [1.5, 0.0]
    assert nme_per_image(pred, gt, "300w", "inter_pupil")[0] == pytest.approx(1.5 / 30)


def test_nme_pupils_wflw_and_bbox():
    gt = np.zeros((1, 98, 2))
    gt[0, 96] = [10, 10]
    gt[0, 97] = [70, 90]  # pupil distance 100
    assert normalizer(gt, "wflw", "inter_pupil")[0] == pytest.approx(100.0)
    # bounding box 70 x 90 from (0, 0)
    assert normalizer(gt, "wflw", "bbox_diagonal")[0] == pytest.approx(np.hypot(70, 90))
    with pytest.raises(ValueError, match="normaliser"):
        normalizer(gt, "wflw", "eye_width")


def test_fr_auc_on_known_ced():
    nmes = np.array([0.01, 0.02, 0.04, 0.08, 0.10])
    assert failure_rate(nmes, 0.08) == pytest.approx(0.2)  # only 0.10 is > 0.08
    # AUC = mean(max(0, 0.08 - e)) / 0.08 = (0.07 + 0.06 + 0.04 + 0 + 0) / 5 / 0.08
    assert auc(nmes, 0.08) == pytest.approx(0.17 / 5 / 0.08)
    x, y = ced_curve(nmes, 0.08, num=9)  # x = 0, 0.01, ..., 0.08
    np.testing.assert_allclose(y, [0, 0.2, 0.4, 0.4, 0.6, 0.6, 0.6, 0.6, 0.8])
    # The trapezoid area of a finely sampled CED converges to the exact AUC.
    xf, yf = ced_curve(nmes, 0.08, num=200001)
    assert np.trapezoid(yf, xf) / 0.08 == pytest.approx(auc(nmes, 0.08), abs=1e-4)
    s = summarize(nmes)
    assert s["nme"] == pytest.approx(0.05) and s["num_images"] == 5


def test_keras_metric_matches_numpy():
    rng = np.random.default_rng(0)
    gt = rng.uniform(5, 58, (4, 68, 2)).astype(np.float32)
    pred = gt + rng.normal(0, 1.0, gt.shape).astype(np.float32)
    pred = np.clip(pred, 2, 61)
    metric = NormalizedMeanError("300w")
    metric.update_state(encode_heatmaps(gt, 64), encode_heatmaps(pred, 64))
    expected = nme_per_image(pred, gt, "300w").mean()
    assert float(metric.result()) == pytest.approx(expected, rel=2e-3)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_shape_mismatch_is_clear():
    with pytest.raises(ValueError, match=r"\[N, K, 2\]"):
        nme_per_image(np.zeros((2, 68, 2)), np.zeros((2, 67, 2)), "300w")
