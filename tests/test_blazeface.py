"""BlazeFace detector: anchors, decoding and NMS by hand, letterboxing, real faces, bad input, CLI switch."""

import json
import os

import numpy as np
import pytest
from PIL import Image
from skimage import data

from mobilefan_tf import blazeface, cli
from mobilefan_tf.blazeface import (
    BlazeFaceDetector,
    MultiRangeBlazeFace,
    decode_boxes,
    decode_scores,
    letterbox,
    ssd_anchors,
    unletterbox,
    weighted_nms,
)
from mobilefan_tf.detector import make_detector
from mobilefan_tf.predictor import Predictor

SHARED_300W = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "300w", "300W-train")
LITE_TFLITE = os.path.join(os.path.dirname(blazeface.__file__), "assets", "mobilefan_lite_300w_int8.tflite")
HAS_DLIB = __import__("importlib").util.find_spec("dlib") is not None


@pytest.fixture(scope="module")
def detector():
    return MultiRangeBlazeFace()


def test_anchors_by_hand():
    # 16 px input, stride 8: a 2 x 2 map, two fixed-size anchors per cell, row by row.
    a = ssd_anchors(16, (8,))
    expected = [[x, y, 1, 1] for y in (0.25, 0.75) for x in (0.25, 0.75) for _ in range(2)]
    np.testing.assert_allclose(a, expected)
    # Two layers sharing stride 8 stack their anchors on one map: 2 + 2 per cell.
    assert len(ssd_anchors(16, (8, 8))) == 16
    # Free-size anchors: layer scales 0.2 and 0.6 (min / max); the interpolated anchor of the
    # first layer is sqrt(0.2 * 0.6), of the last sqrt(0.6 * 1).
    free = ssd_anchors(8, (8, 16), min_scale=0.2, max_scale=0.6, fixed_anchor_size=False)
    np.testing.assert_allclose(free[:, 2], [0.2, np.sqrt(0.12), 0.6, np.sqrt(0.6)], rtol=1e-6)
    np.testing.assert_allclose(free[:, :2], 0.5)
    # MediaPipe's two graphs: 16x16x2 + 8x8x6 = 896 and 48x48x1 = 2304 anchors.
    short, full = blazeface.CONFIGS["short"], blazeface.CONFIGS["full"]
    assert len(ssd_anchors(short.input_size, short.strides)) == 896
    assert len(ssd_anchors(full.input_size, full.strides, interpolated_scale_aspect_ratio=0.0)) == 2304


def test_decode_box_and_keypoints_by_hand():
    anchors = np.array([[0.5, 0.5, 1.0, 1.0], [0.25, 0.75, 1.0, 1.0]], np.float32)
    raw = np.zeros((2, 16), np.float32)
    raw[0, :4] = [12.8, -6.4, 32.0, 64.0]  # dx, dy, w, h in 128-px input pixels
    raw[0, 4:6] = [12.8, 12.8]  # first key point
    raw[1, :4] = [0.0, 0.0, 12.8, 12.8]
    boxes, keypoints = decode_boxes(raw, anchors, 128)
    # centre (0.5 + 0.1, 0.5 - 0.05), size (0.25, 0.5)
    np.testing.assert_allclose(boxes[0], [0.475, 0.2, 0.725, 0.7], atol=1e-6)
    np.testing.assert_allclose(boxes[1], [0.2, 0.7, 0.3, 0.8], atol=1e-6)
    np.testing.assert_allclose(keypoints[0, 0], [0.6, 0.6], atol=1e-6)
    np.testing.assert_allclose(keypoints[1], [[0.25, 0.75]] * 6, atol=1e-6)
    np.testing.assert_allclose(decode_scores([[0.0], [200.0], [-200.0], [np.log(3.0)]]), [0.5, 1.0, 0.0, 0.75], atol=1e-7)


def test_weighted_and_plain_nms_by_hand():
    boxes = np.array(
        [
            [0, 0, 10, 10],  # A 0.9
            [1, 0, 11, 10],  # B 0.6: IoU(A) = 90 / 110 -> merged into A
            [20, 20, 30, 30],  # C 0.8: apart
            [6, 0, 16, 10],  # D 0.5: IoU(A) = 40 / 160 = 0.25 -> its own face
        ],
        np.float32,
    )
    scores = np.array([0.9, 0.6, 0.8, 0.5])
    kps = boxes[:, None, :2].copy()
    out, sc, kp = weighted_nms(boxes, scores, kps, iou_threshold=0.3)
    np.testing.assert_allclose(out, [[0.4, 0, 10.4, 10], [20, 20, 30, 30], [6, 0, 16, 10]], atol=1e-5)
    np.testing.assert_allclose(sc, [0.9, 0.8, 0.5])  # the group keeps its best score
    np.testing.assert_allclose(kp[:, 0], [[0.4, 0], [20, 20], [6, 0]], atol=1e-5)
    plain, sc, _ = weighted_nms(boxes, scores, weighted=False)
    np.testing.assert_allclose(plain, boxes[[0, 2, 3]])
    # D against B: IoU 50 / 150 = 0.33 > 0.3, so with B best, D joins it; A (IoU 0.82) too.
    out, sc, _ = weighted_nms(boxes[[1, 3, 0]], [0.9, 0.5, 0.1], iou_threshold=0.3, max_out=1)
    np.testing.assert_allclose(out[0], (0.9 * boxes[1] + 0.5 * boxes[3] + 0.1 * boxes[0]) / 1.5, atol=1e-5)
    assert weighted_nms(np.zeros((0, 4)), np.zeros(0))[0].shape == (0, 4)


def test_letterbox_maps_back_to_photo_pixels():
    photo = np.zeros((100, 200, 3), np.uint8)  # h 100, w 200 -> a 128 x 64 block, bands of 32 px
    photo[40:60, 150:170] = 255
    square, matrix = letterbox(photo, 128)
    assert square.shape == (128, 128, 3)
    assert square[:32].max() == 0 and square[96:].max() == 0
    np.testing.assert_allclose(matrix, [[0.64, 0, -0.18], [0, 0.64, 31.82]], atol=1e-9)
    # The square's outer edges (0, 0.25) and (1, 0.75) are the photo's (-0.5, -0.5), (199.5, 99.5).
    np.testing.assert_allclose(unletterbox([[0, 0.25], [1, 0.75]], matrix, 128), [[-0.5, -0.5], [199.5, 99.5]], atol=1e-5)
    ys, xs = np.nonzero(square[..., 0] > 128)
    centre = unletterbox([[(xs.mean() + 0.5) / 128, (ys.mean() + 0.5) / 128]], matrix, 128)[0]
    np.testing.assert_allclose(centre, [159.5, 49.5], atol=1.0)  # the white block's centre


def test_face_in_a_wide_photo_is_found_where_it_is():
    detector = MultiRangeBlazeFace(tiles=False)  # tiles of a wide and a square photo differ
    face = data.astronaut()
    wide = np.full((512, 1024, 3), 90, np.uint8)
    wide[:, 300:812] = face
    boxes, scores = detector.detect_scored(wide)
    assert len(boxes) == 1 and 0.7 < scores[0] <= 1
    # Padding the photo by hand to the square the letterbox makes gives the same model input:
    # the box must be the same, 256 px lower.
    padded = np.pad(wide, ((256, 256), (0, 0), (0, 0)))
    np.testing.assert_allclose(detector.detect(padded)[0], boxes[0] + [0, 256, 0, 256], atol=0.5)
    base = detector.detect(face)[0]  # and it is the astronaut's face, shifted by 300 px
    np.testing.assert_allclose((boxes[0, :2] + boxes[0, 2:]) / 2, (base[:2] + base[2:]) / 2 + [300, 0], atol=10)


def test_tiles_find_a_face_too_small_for_the_whole_photo():
    import cv2

    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[300:340, 420:460] = cv2.resize(data.astronaut()[20:220, 120:320], (40, 40), interpolation=cv2.INTER_AREA)
    assert len(MultiRangeBlazeFace(tiles=False).detect(canvas)) == 0  # ~12 px to the full-range model
    boxes = MultiRangeBlazeFace().detect(canvas)
    assert len(boxes) == 1
    centre = (boxes[0, :2] + boxes[0, 2:]) / 2
    assert 420 < centre[0] < 460 and 300 < centre[1] < 340  # in the pasted face
    with pytest.raises(ValueError, match="tile_fraction"):
        MultiRangeBlazeFace(tile_grid=3, tile_fraction=0.3)  # three tiles of 30 % leave gaps


def _count_full_range_runs(detector):
    calls = []
    run = detector.full.invoke  # every pass of the model, whole photo or tile
    detector.full.invoke = lambda *a, **k: calls.append(1) or run(*a, **k)
    return calls


def test_full_range_runs_only_below_a_large_face():
    import cv2

    head = data.astronaut()[0:300, 100:400]
    close = cv2.resize(head, (512, 512), interpolation=cv2.INTER_LINEAR)  # landmark box ~0.3 of the photo
    cascade, both = MultiRangeBlazeFace(), MultiRangeBlazeFace(full_below=0)
    calls, calls_both = _count_full_range_runs(cascade), _count_full_range_runs(both)
    boxes, scores = cascade.detect_scored(close)
    reference, _ = both.detect_scored(close)
    assert (len(calls), len(calls_both)) == (0, 1)
    assert len(boxes) == 1 and scores[0] > 0.7
    side = boxes[0, 2] - boxes[0, 0]
    assert side >= 0.2 * 512
    np.testing.assert_allclose(boxes[0], reference[0], atol=0.05 * side)  # the same face, merged or not
    # The same face at ~0.08 of a wide frame is below the bar: the full-range model looks too.
    canvas = np.full((540, 960, 3), 90, np.uint8)
    canvas[200:440, 300:540] = cv2.resize(head, (240, 240), interpolation=cv2.INTER_AREA)
    boxes = cascade.detect(canvas)
    assert len(calls) == 1 and len(boxes) == 1
    assert (boxes[0, 2] - boxes[0, 0]) < 0.2 * 960
    # The CLI names: the cascade by default, both ranges always on request.
    assert (make_detector("blazeface").full_below, make_detector("blazeface_both").full_below) == (0.2, 0)


def _two_faces() -> np.ndarray:
    """A 960x480 frame: the astronaut's face at 360 px (landmark box ~0.14 of the width) and at 240 px."""
    import cv2

    face = data.astronaut()[20:260, 140:380]
    canvas = np.full((480, 960, 3), 90, np.uint8)
    canvas[60:420, 60:420] = cv2.resize(face, (360, 360), interpolation=cv2.INTER_AREA)
    canvas[120:360, 620:860] = cv2.resize(face, (240, 240), interpolation=cv2.INTER_AREA)
    return canvas


def test_max_faces_one_skips_the_full_range_model():
    canvas = _two_faces()
    runs = {}
    found = {}
    for max_faces in (32, 2, 1):
        detector = MultiRangeBlazeFace(max_faces=max_faces)
        calls = _count_full_range_runs(detector)
        found[max_faces] = detector.detect(canvas)
        runs[max_faces] = len(calls)
    # All faces: the short-range model finds only the larger face (below 0.2 of the frame), so the
    # full-range model runs, finds both, and two small faces send it over 3x3 tiles (1 + 9 runs).
    # Two at most: found by the full-range model, no tiles. One: the short-range face is the answer.
    assert runs == {32: 10, 2: 1, 1: 0}
    assert len(found[32]) == len(found[2]) == 2 and len(found[1]) == 1
    centre = (found[1][0, :2] + found[1][0, 2:]) / 2
    assert 60 < centre[0] < 420 and 60 < centre[1] < 420  # the larger face
    # With no face from the short-range model, one face at most still looks with the full range and tiles.
    import cv2

    small = np.full((480, 640, 3), 90, np.uint8)
    small[300:340, 420:460] = cv2.resize(data.astronaut()[20:220, 120:320], (40, 40), interpolation=cv2.INTER_AREA)
    assert len(MultiRangeBlazeFace(max_faces=1).detect(small)) == 1
    for bad in (lambda: MultiRangeBlazeFace(max_faces=0), lambda: make_detector("blazeface", max_faces=0)):
        with pytest.raises(ValueError, match="max_faces"):
            bad()


def test_predictor_max_faces():
    canvas = _two_faces()
    assert len(Predictor(LITE_TFLITE, detector="blazeface", flip_test=False).predict(canvas)) == 2
    one = Predictor(LITE_TFLITE, detector="blazeface", flip_test=False, max_faces=1)
    assert one.detector.max_faces == 1  # a detector made by the Predictor is told
    faces = one.predict(canvas)
    assert len(faces) == 1 and faces[0]["landmarks"][:, 0].max() < 420
    # A detector passed in is left as it is; its faces are cut to the best one.
    given = MultiRangeBlazeFace()
    faces = Predictor(LITE_TFLITE, detector=given, flip_test=False, max_faces=1).predict(canvas)
    assert given.max_faces == 32 and len(faces) == 1
    assert faces[0]["detector_score"] == pytest.approx(float(given.detect_scored(canvas)[1][0]))
    # Boxes given by the caller are all kept.
    boxes = [[100, 150, 380, 400], [650, 180, 830, 340]]
    assert len(Predictor(LITE_TFLITE, flip_test=False, max_faces=1).predict(canvas, boxes=boxes)) == 2
    with pytest.raises(ValueError, match="max_faces"):
        Predictor(LITE_TFLITE, max_faces=0)


def test_cli_max_faces(tmp_path, capsys):
    photo = tmp_path / "two.png"
    Image.fromarray(_two_faces()).save(photo)
    for flag, count in ((None, 2), ("1", 1)):
        extra = ["--max_faces", flag] if flag else []
        code = cli.main(["predict", str(photo), "--model", LITE_TFLITE, "--no_flip", "--json", "-", *extra])
        assert code == 0 and len(json.loads(capsys.readouterr().out)["faces"]) == count
    # A folder (batched bulk path) keeps the same number of faces.
    code = cli.main(["predict", str(tmp_path), "--model", LITE_TFLITE, "--no_flip", "--jsonl", "-", "--max_faces", "1"])
    assert code == 0 and len(json.loads(capsys.readouterr().out.splitlines()[0])["faces"]) == 1
    code = cli.main(["predict", str(photo), "--model", LITE_TFLITE, "--max_faces", "0"])
    err = capsys.readouterr().err
    assert code == 1 and "--max_faces" in err and len(err.strip().splitlines()) == 1


def test_bulk_path_detects_like_predictor(tmp_path, monkeypatch, capsys):
    from mobilefan_tf import predictor as predictor_module
    from mobilefan_tf.bulk import predict_files

    canvas = _two_faces()
    Image.fromarray(canvas).save(tmp_path / "two.png")
    predictor = Predictor(LITE_TFLITE, detector="blazeface", flip_test=False)
    boxes, scores = predictor.detect(canvas)
    [(_, _, faces)] = predict_files(predictor, [str(tmp_path / "two.png")])
    expected = predictor.predict(canvas)
    assert len(faces) == len(expected) == len(boxes) == 2
    for face, want, box, score in zip(faces, expected, boxes, scores, strict=True):
        np.testing.assert_allclose(face["box"], want["box"], atol=1e-4)
        np.testing.assert_allclose(face["box"], box, atol=1e-4)
        np.testing.assert_allclose(face["landmarks"], want["landmarks"], atol=1e-3)
        assert face["detector_score"] == pytest.approx(want["detector_score"]) == pytest.approx(score)
        assert 0.5 < face["detector_score"] <= 1
    # A photo longer than MAX_SIDE is searched on a downscaled copy; its boxes come back in photo pixels.
    monkeypatch.setattr(predictor_module, "MAX_SIDE", 480)
    small_boxes, small_scores = predictor.detect(canvas)
    assert len(small_boxes) >= 1 and 0.5 < small_scores[0] <= 1
    best = np.argmin(np.abs(boxes[:, None] - small_boxes[None]).max(axis=2), axis=0)
    np.testing.assert_allclose(small_boxes, boxes[best], atol=0.06 * 360)  # within 6 % of the large face's size
    # The CLI's JSON lines carry the detector's score.
    monkeypatch.undo()
    code = cli.main(["predict", str(tmp_path), "--model", LITE_TFLITE, "--no_flip", "--jsonl", "-"])
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert code == 0 and [f["detector_score"] for f in record["faces"]] == pytest.approx(scores, abs=1e-4)


@pytest.mark.skipif(not os.path.isdir(SHARED_300W), reason="shared 300W faces not present")
def test_detects_real_300w_crops(detector):
    from mobilefan_tf.data import read_300w
    from mobilefan_tf.predictor import read_image

    for sample in read_300w(SHARED_300W)[::200]:  # 11 faces of the three subsets
        boxes = detector.detect(read_image(sample.image_path))
        assert len(boxes) >= 1, sample.name
        lo, hi = sample.landmarks.min(0), sample.landmarks.max(0)
        inter = np.prod(np.clip(np.minimum(boxes[0, 2:], hi) - np.maximum(boxes[0, :2], lo), 0, None))
        union = np.prod(boxes[0, 2:] - boxes[0, :2]) + np.prod(hi - lo) - inter
        assert inter / union > 0.6, sample.name


def test_no_face_gives_no_result(detector):
    rng = np.random.default_rng(0)
    for image in (np.zeros((480, 640, 3), np.uint8), np.full((300, 300, 3), 200, np.uint8),
                  rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)):  # fmt: skip
        assert len(detector.detect(image)) == 0
    predictor = Predictor(LITE_TFLITE, detector=detector, flip_test=False)
    assert predictor.predict(rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)) == []
    faces = predictor.predict(data.astronaut())
    assert len(faces) == 1 and 0.7 < faces[0]["detector_score"] <= 1
    lm = faces[0]["landmarks"]
    assert 170 < lm[:, 0].mean() < 280 and 90 < lm[:, 1].mean() < 190  # on the astronaut's face


def test_bad_model_files_name_the_file(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer")
    with pytest.raises(ValueError, match="junk.tflite: cannot read face detector model"):
        BlazeFaceDetector(str(junk))
    with pytest.raises(FileNotFoundError, match="missing.tflite"):
        BlazeFaceDetector(str(tmp_path / "missing.tflite"))
    with pytest.raises(ValueError, match="mobilefan_lite_300w_int8.tflite: not a BlazeFace model"):
        BlazeFaceDetector(LITE_TFLITE)  # a landmark model, not a detector
    with pytest.raises(ValueError, match="unknown face detector 'yolo'"):
        make_detector("yolo")
    with pytest.raises(ValueError, match="uint8 RGB"):
        BlazeFaceDetector("short").detect(np.zeros((10, 10), np.float32))


def _cli_faces(tmp_path, capsys, *extra):
    photo = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    code = cli.main(["predict", str(photo), "--model", LITE_TFLITE, "--no_flip", "--json", "-", *extra])
    captured = capsys.readouterr()
    return code, captured, json.loads(captured.out)["faces"] if code == 0 else None


@pytest.mark.skipif(not HAS_DLIB, reason="needs dlib")
def test_cli_detector_switch(tmp_path, capsys):
    photo = data.astronaut()
    for name in ("blazeface", "dlib"):
        code, _, faces = _cli_faces(tmp_path, capsys, "--detector", name)
        assert code == 0 and len(faces) == 1
        det = make_detector(name)
        expected = det.to_landmark_box(det.detect(photo))[0]
        np.testing.assert_allclose(faces[0]["box"], expected, atol=0.01)  # the box of that detector
    code, _, default = _cli_faces(tmp_path, capsys)
    assert default[0]["box"] == _cli_faces(tmp_path, capsys, "--detector", "blazeface")[2][0]["box"]
    assert 0.7 < default[0]["detector_score"] <= 1
    code, captured, _ = _cli_faces(tmp_path, capsys, "--detector", str(tmp_path / "nope.tflite"))
    assert code == 1 and "nope.tflite" in captured.err and len(captured.err.strip().splitlines()) == 1


def _face_in_noise() -> np.ndarray:
    """A 640x480 frame of uniform noise with the astronaut's face (landmark box ~100 px) in it."""
    import cv2

    canvas = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    canvas[100:340, 200:440] = cv2.resize(data.astronaut()[20:260, 140:380], (240, 240), interpolation=cv2.INTER_AREA)
    return canvas


def test_verifier_confirms_only_unsure_faces():
    canvas = _face_in_noise()
    # Thresholds above the face's score (~0.9) leave it a candidate of both models.
    unsure = MultiRangeBlazeFace(short_threshold=0.99, short_candidate=0.2, full_threshold=0.99, full_candidate=0.2, tiles=False)
    calls = []

    def verifier(value):
        return lambda image, boxes: calls.append(boxes.copy()) or np.full(len(boxes), value)

    assert len(unsure.detect(canvas)) == 0  # no verifier: no face
    boxes, scores = unsure.detect_verified(canvas, verifier(0.9))
    assert len(calls) == 1 and len(calls[0]) == 1  # one call; the two passes' face boxes merged
    assert len(boxes) == 1 and 0.2 <= scores[0] < 0.99
    centre = (boxes[0, :2] + boxes[0, 2:]) / 2
    assert 260 < centre[0] < 380 and 160 < centre[1] < 300  # the face, in photo pixels
    # Down to 0.05, boxes on parts of the face come too; a verifier that confirms anything touching
    # the face (as a landmark model would) still gives one face: a box overlapping a better one is part of it.
    calls.clear()
    low = MultiRangeBlazeFace(short_threshold=0.99, short_candidate=0.05, full_threshold=0.99, full_candidate=0.05, tiles=False)
    face = np.array([235.0, 160, 330, 257])  # the landmark box found above
    on_face = lambda image, boxes: calls.append(boxes) or (blazeface.box_iou(face, boxes) > 0) * 0.9  # noqa: E731
    boxes, _ = low.detect_verified(canvas, on_face)
    assert (blazeface.box_iou(face, calls[0]) > 0).sum() >= 2 and len(boxes) == 1
    calls.clear()
    assert len(unsure.detect_verified(canvas, verifier(0.34))[0]) == 0  # below verify_threshold (0.35)
    assert len(calls) == 1
    # A photo with a confirmed face is answered as without a verifier, which is never asked.
    calls.clear()
    sure = MultiRangeBlazeFace(tiles=False)
    reference = sure.detect_scored(canvas)
    for value in (0.0, 1.0):
        got = sure.detect_verified(canvas, verifier(value))
        np.testing.assert_array_equal(got[0], reference[0])
        np.testing.assert_array_equal(got[1], reference[1])
    assert len(reference[0]) == 1 and not calls
    with pytest.raises(ValueError, match="candidate"):
        MultiRangeBlazeFace(short_candidate=0.8)


def test_predictor_verifies_with_its_landmark_model():
    canvas = _face_in_noise()
    # Candidates down to 0.2: dozens of boxes on the noise; the landmark model keeps the face only.
    unsure = MultiRangeBlazeFace(short_threshold=0.99, short_candidate=0.2, full_threshold=0.99, full_candidate=0.2, tiles=False)
    faces = Predictor(LITE_TFLITE, detector=unsure, flip_test=False).predict(canvas)
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0]["box"]
    assert 200 < x0 < x1 < 440 and 100 < y0 < y1 < 340  # on the pasted face
    eyes = faces[0]["landmarks"][[36, 45]]
    assert (x0 < eyes[:, 0]).all() and (eyes[:, 0] < x1).all() and (y0 < eyes[:, 1]).all() and (eyes[:, 1] < (y0 + y1) / 2).all()
    assert len(Predictor(LITE_TFLITE, detector=unsure, flip_test=False, verify=False).predict(canvas)) == 0
    # The verifier's confidence is one pass of the model: the mean of predict's heatmap peaks.
    p = Predictor(LITE_TFLITE, flip_test=False)
    face = p.predict(canvas, boxes=[faces[0]["box"]])[0]
    assert p._confidence(canvas, faces[0]["box"][None])[0] == pytest.approx(float(face["scores"].mean()), abs=1e-6)
    assert p._confidence(canvas, np.array([[20.0, 20, 120, 120]]))[0] < 0.35  # noise only


def _covered_face() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's face (landmark box ~150 px) in a 640x480 frame: as is, and with a grey block
    over its right part (the right eye and most of the nose and mouth)."""
    import cv2

    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[60:420, 140:500] = cv2.resize(data.astronaut()[20:260, 140:380], (360, 360), interpolation=cv2.INTER_AREA)
    covered = canvas.copy()
    cv2.rectangle(covered, (230, 100), (420, 240), (128, 128, 128), -1)
    return canvas, covered


def test_covered_face_found_by_verification(tmp_path, capsys):
    whole, canvas = _covered_face()
    assert len(MultiRangeBlazeFace().detect(canvas)) == 0  # below both models' thresholds
    predictor = Predictor(LITE_TFLITE, flip_test=False)
    faces, reference = predictor.predict(canvas), predictor.predict(whole)
    assert len(faces) == 1 and 0.5 <= faces[0]["detector_score"] < 0.7
    assert blazeface.box_iou(faces[0]["box"], reference[0]["box"][None])[0] > 0.6
    mouth, mouth_whole = faces[0]["landmarks"][48:68].mean(0), reference[0]["landmarks"][48:68].mean(0)
    assert np.linalg.norm(mouth - mouth_whole) < 10  # px; the face's box is ~150 px
    photo = tmp_path / "covered.png"
    Image.fromarray(canvas).save(photo)
    for extra, count in (([], 1), (["--no_verify"], 0)):
        code = cli.main(["predict", str(photo), "--model", LITE_TFLITE, "--no_flip", "--json", "-", *extra])
        assert code == 0 and len(json.loads(capsys.readouterr().out)["faces"]) == count
