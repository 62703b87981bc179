"""One-Euro filter, `Tracker` (ids, loss, re-detection, smoothing) and test videos.

The tracker tests use an oracle "model" on synthetic scenes of bright discs:
it finds the disc in each crop and returns 68 points on its outline, with a
score that drops to 0 when no disc is in the crop. That checks the tracker's
own logic (crop from the previous landmarks, ids, loss) exactly, without a
trained network.
"""

import math

import cv2
import numpy as np
import pytest

from mobilefan_tf.data.motion import moving_face_video, still_face_video
from mobilefan_tf.detector import FaceDetector
from mobilefan_tf.predictor import Predictor
from mobilefan_tf.tracking import LandmarkSmoother, OneEuroFilter, Tracker, box_iou, smooth_landmarks

K = 68
ANGLES = 2 * np.pi * np.arange(K) / K


class DiscModel:
    """Landmarks = 68 points on the bright disc in a crop; score 0.9 with a disc, 0 without."""

    input_size, num_keypoints, crop_scale = 64, K, 1.25

    def predict_landmarks(self, images, **kwargs):
        landmarks, scores = [], []
        for crop in np.asarray(images):
            mask = crop[..., 0] > 100
            area = mask.sum()
            ys, xs = np.nonzero(mask)
            centre = np.array([xs.mean(), ys.mean()]) if area else np.full(2, 31.5)
            r = math.sqrt(area / math.pi) if area else 1.0
            landmarks.append(centre + r * np.stack([np.cos(ANGLES), np.sin(ANGLES)], -1))
            scores.append(np.full(K, 0.9 if area > 20 else 0.0))
        return np.asarray(landmarks, np.float32), np.asarray(scores, np.float32)


class DiscDetector(FaceDetector):
    """Boxes of the bright blobs of a frame, largest first; counts its calls."""

    def __init__(self):
        self.calls = 0

    def detect(self, image):
        self.calls += 1
        n, _, stats, _ = cv2.connectedComponentsWithStats((image[..., 0] > 100).astype(np.uint8))
        boxes = [[x, y, x + w, y + h] for x, y, w, h, a in stats[1:] if a > 20]
        return np.asarray(sorted(boxes, key=lambda b: -(b[2] - b[0])), np.float32).reshape(-1, 4)


def scene(centres, radius=16, size=(160, 240)):
    frame = np.zeros((*size, 3), np.uint8)
    for c in centres:
        cv2.circle(frame, (round(c[0] * 16), round(c[1] * 16)), radius * 16, (200, 200, 200), -1, cv2.LINE_AA, 4)
    return frame


def disc_tracker(**kwargs):
    detector = DiscDetector()
    return Tracker(Predictor(DiscModel(), detector=detector, flip_test=False), **kwargs), detector


def test_one_euro_matches_hand_computed_sequence():
    # min_cutoff 1, beta 0.5, d_cutoff 1, dt 0.1: a(1 Hz) = 1 / (1 + 1 / (2 pi 0.1)) = 0.385870.
    # t=0.1: dx = 10, dxh = 3.858695, cutoff 2.929348, a = 0.647957, x = 0.647957
    # t=0.2: dx = 3.520430, dxh = 3.728168, cutoff 2.864084, a = 0.642801, x = 0.874251
    # t=0.3: dx = 21.257490, dxh = 10.492202, cutoff 6.246101, a = 0.796935, x = 2.568336
    f = OneEuroFilter(min_cutoff=1.0, beta=0.5, d_cutoff=1.0)
    out = [float(f(x, t)) for x, t in zip([0.0, 1.0, 1.0, 3.0], [0.0, 0.1, 0.2, 0.3], strict=True)]
    np.testing.assert_allclose(out, [0.0, 0.647957, 0.874251, 2.568336], atol=2e-6)


def test_one_euro_scale_divides_speed_and_works_elementwise():
    xs = np.array([[0.0, 5.0], [1.0, 4.0], [3.0, 4.5], [2.0, 7.0]])
    a, b = OneEuroFilter(1.0, 0.5), OneEuroFilter(1.0, 0.25)
    for i, x in enumerate(xs):
        np.testing.assert_allclose(a(x, i / 30, scale=2.0), b(x, i / 30), rtol=1e-12)
    # Each element is its own scalar filter.
    c, d = OneEuroFilter(1.0, 0.5), OneEuroFilter(1.0, 0.5)
    for i, x in enumerate(xs):
        out = c(x, i / 30)
        assert out[1] == pytest.approx(float(d(x[1], i / 30)))
    with pytest.raises(ValueError, match="min_cutoff > 0"):
        OneEuroFilter(min_cutoff=0.0)


def test_one_euro_cuts_noise_and_follows_a_ramp():
    rng = np.random.default_rng(0)
    t = np.arange(300) / 30
    noise = rng.normal(0, 1, 300)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    still = np.array([f(x, s) for x, s in zip(noise, t, strict=True)])
    assert still[30:].std() < 0.5 * noise[30:].std()  # a 1 Hz low-pass at 30 fps
    # On a fast ramp (30 units/s), a high beta keeps the lag small; beta 0 lags ~ 1 / (2 pi fc) s.
    ramp = 30 * t
    for beta, max_lag in ((0.0, 6.0), (10.0, 0.2)):
        g = OneEuroFilter(min_cutoff=1.0, beta=beta)
        out = np.array([g(x, s) for x, s in zip(ramp, t, strict=True)])
        assert np.abs(ramp - out)[150:].max() < max_lag


def test_landmark_smoother_one_cutoff_per_face_hand_computed():
    # Two points 10 px apart (face side 10), dt 0.1, min_cutoff 1, beta 0.5, d_cutoff 1.
    # Pan by +1 px: velocities (10, 0) each, filtered 0.385870 * 10 = 3.858695 px/s; centroid speed
    # 3.858695, spread 0 -> 0.385870 face sizes/s; cutoff 1 + 0.5 * 0.385870 = 1.192935 Hz; a = 0.428422.
    # With min_speed 0.2: cutoff 1 + 0.5 * 0.185870 = 1.092935 Hz; a = 0.407130.
    start = np.array([[0.0, 0.0], [10.0, 0.0]])
    for min_speed, a in ((0.0, 0.428422), (0.2, 0.407130)):
        f = LandmarkSmoother(min_cutoff=1.0, beta=0.5, d_cutoff=1.0, min_speed=min_speed)
        np.testing.assert_array_equal(f(start, 0.0), start)
        np.testing.assert_allclose(f(start + [1.0, 0.0], 0.1), start + [a, 0.0], atol=2e-6)
        assert f.cutoff == pytest.approx(1 + 0.5 * max(0.0, 0.385870 - min_speed), abs=1e-6)
    # Rotation (the points move apart in y): centroid still, RMS spread 3.858695 -> the same cutoff.
    f = LandmarkSmoother(min_cutoff=1.0, beta=0.5, d_cutoff=1.0, min_speed=0.0)
    f(start, 0.0)
    np.testing.assert_allclose(f(start + [[0.0, 1.0], [0.0, -1.0]], 0.1), start + [[0, 0.428422], [0, -0.428422]], atol=2e-6)


def test_landmark_smoother_defaults_cut_noise_and_bound_the_lag_of_a_slow_drift():
    rng = np.random.default_rng(0)
    face = rng.uniform(0, 100, (68, 2))  # side ~100 px
    side = np.ptp(face, axis=0).max()
    t = np.arange(150) / 30
    noisy = face + rng.normal(0, 0.5, (150, 68, 2))
    out = smooth_landmarks(noisy, t)
    assert out[30:].std(axis=0).mean() < 0.3 * noisy[30:].std(axis=0).mean()
    # A drift at 0.2 face sizes/s (inside the dead zone): the error stays ~ min_speed * dt face sizes,
    # because the speed is measured against the filtered value (a lagging output opens the cutoff).
    drift = face + (0.2 * side * t)[:, None, None] * np.array([1.0, 0.0])
    lagging = np.abs(smooth_landmarks(drift, t) - drift)[60:, :, 0].max()
    assert lagging < 0.02 * side


def test_box_iou_hand_cases():
    iou = box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]])
    np.testing.assert_allclose(iou, [[1 / 7, 1.0, 0.0]])


def test_tracker_two_faces_keep_their_ids_and_detect_once():
    tracker, detector = disc_tracker(max_faces=2, smoothing=False)
    for i in range(30):
        a, b = (40 + 4 * i, 45.0), (200 - 4 * i, 115.0)  # they pass each other, rows apart
        faces = tracker.update(scene([a, b]), i / 30)
        assert [f["id"] for f in faces] == [0, 1]
        by_id = {f["id"]: f["landmarks"].mean(0) for f in faces}
        np.testing.assert_allclose(by_id[0], a, atol=0.5)
        np.testing.assert_allclose(by_id[1], b, atol=0.5)
        assert all(f["detected"] == (i == 0) for f in faces)
    assert detector.calls == 1  # tracking alone after the first frame


def test_tracker_loses_a_face_and_gives_a_new_one_a_new_id():
    tracker, detector = disc_tracker(max_faces=1, smoothing=False)
    ids = []
    for i in range(40):
        # Moves right and leaves the frame at ~frame 22; a new face appears on the left at frame 30.
        centres = [(150 + 5 * i, 80.0)] if i < 25 else ([(60.0, 80.0)] if i >= 30 else [])
        faces = tracker.update(scene(centres), i / 30)
        ids.append(faces[0]["id"] if faces else None)
    first_gone = ids.index(None)
    assert set(ids[:first_gone]) == {0} and 18 <= first_gone <= 25
    assert ids[30:] == [1] * 10
    assert detector.calls >= 30 - first_gone  # looked for faces on every empty frame


def test_tracker_face_that_dips_below_confidence_keeps_its_id():
    class Blinking(DiscModel):
        calls = 0

        def predict_landmarks(self, images, **kwargs):
            landmarks, scores = super().predict_landmarks(images, **kwargs)
            Blinking.calls += 1
            return landmarks, scores * (0.2 if Blinking.calls == 6 else 1.0)  # the tracking call of frame 5

    detector = DiscDetector()
    tracker = Tracker(Predictor(Blinking(), detector=detector, flip_test=False), max_faces=1, smoothing=False)
    out = [tracker.update(scene([(60 + 3 * i, 80.0)]), i / 30) for i in range(10)]
    assert [f[0]["id"] for f in out] == [0] * 10
    assert [f[0]["detected"] for f in out] == [True, False, False, False, False, True, False, False, False, False]
    assert detector.calls == 2


def test_tracker_periodic_detection_picks_up_a_second_face():
    tracker, detector = disc_tracker(max_faces=2, detect_interval=5, smoothing=False)
    counts = [len(tracker.update(scene([(60.0, 80.0)] + ([(180.0, 80.0)] if i >= 3 else [])), i / 30)) for i in range(12)]
    assert counts[:5] == [1, 1, 1, 1, 1] and counts[5:] == [2] * 7  # found at the detector run of frame 5
    assert detector.calls == 2


def test_tracker_smoothing_is_one_euro_of_the_raw_landmarks():
    rng = np.random.default_rng(1)
    tracker, _ = disc_tracker(max_faces=1, min_cutoff=0.7, beta=2.0, d_cutoff=1.5)
    raw, smooth = [], []
    for i in range(20):
        frame = scene([(120 + 2 * i + rng.normal(0, 1), 80 + rng.normal(0, 1))])
        (face,) = tracker.update(frame, i / 25)
        raw.append(face["raw_landmarks"])
        smooth.append(face["landmarks"])
    expected = smooth_landmarks(np.array(raw), np.arange(20) / 25, 0.7, 2.0, 1.5)
    np.testing.assert_allclose(np.array(smooth), expected, atol=1e-4)
    assert not np.allclose(smooth, raw)


def test_test_videos_have_exact_ground_truth():
    # A face made of a white square with a known landmark at each corner.
    face = np.zeros((100, 100, 3), np.uint8)
    face[30:70, 30:70] = 255
    lm = np.array([[30, 30], [69, 30], [69, 69], [30, 69]], np.float32)
    frames, truth = moving_face_video(face, lm, num_frames=40, size=(240, 320), face_side=80, pan=(60, 30), noise_std=0)
    assert frames.shape == (40, 240, 320, 3) and truth.shape == (40, 4, 2)
    for frame, pts in zip(frames[::7], truth[::7], strict=True):
        centre = pts.mean(0)
        inward = [frame[int(round(p[1] + 0.3 * (centre - p)[1])), int(round(p[0] + 0.3 * (centre - p)[0]))] for p in pts]
        assert min(v.min() for v in inward) > 200  # points just inside each true corner are on the square
    assert np.ptp(truth[:, :, 0].mean(1)) > 50  # it pans (+60 px at 1 s)
    still, still_truth = still_face_video(face, lm, num_frames=5, size=(240, 320), noise_std=6.0)
    assert np.allclose(still_truth, still_truth[0]) and 4 < (still[1].astype(float) - still[0]).std() < 12
