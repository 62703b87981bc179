"""BlazeFace: MediaPipe's TFLite face detectors, run with ai-edge-litert.

The two model files in `assets/face_detection/` come from the `mediapipe`
wheel (see the NOTICE there). This module re-implements the part of the
MediaPipe graph around them in NumPy:

1. letterbox: the photo is scaled to fit the model's square input keeping
   its aspect ratio and padded (black) to a square;
2. SSD anchors (MediaPipe's `SsdAnchorsCalculator`): one anchor centre per
   feature-map cell (and per anchor of the cell), in [0, 1] input units;
3. box decoding (`TensorsToDetectionsCalculator`): each anchor regresses a
   box centre offset and size (pixels of the model input, here divided by
   the input size) and 6 key points (right eye, left eye, nose tip, mouth,
   right ear, left ear); scores are sigmoid(clip(logit, +-100));
4. weighted non-maximum suppression (`NonMaxSuppressionCalculator`,
   algorithm WEIGHTED): the best box absorbs every box overlapping it with
   IoU > 0.3 and becomes their score-weighted mean, keeping its own score;
5. letterbox removal: boxes and key points back to photo pixels.

Frames: normalised model-input coordinates are (x, y) in [0, 1] with 0 and 1
the outer edges of the square input; photo pixels use the library's pixel-
centre frame (the centre of the top-left pixel is (0, 0), its outer corner
(-0.5, -0.5)).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np

from mobilefan_tf.detector import FaceDetector

ASSET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "face_detection")
CALIBRATION_FILE = os.path.join(ASSET_DIR, "calibration.json")


@dataclasses.dataclass(frozen=True)
class BlazeFaceConfig:
    """One BlazeFace variant: its file and MediaPipe's graph options for it.

    Attributes:
        file: Model file name in `ASSET_DIR`.
        input_size: Side of the square input in pixels.
        strides: Feature-map stride of each SSD layer.
        min_scale, max_scale: SSD anchor scales (unused with fixed-size anchors,
            kept for fidelity to the calculator).
        interpolated_scale_aspect_ratio: > 0 adds one more anchor per scale.
        score_threshold: Minimum detection score (MediaPipe's default).
    """

    file: str
    input_size: int
    strides: tuple[int, ...]
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    interpolated_scale_aspect_ratio: float = 1.0
    score_threshold: float = 0.5


CONFIGS = {
    # face_detection_short_range.pbtxt: faces within ~2 m of a phone camera, 896 anchors.
    "short": BlazeFaceConfig("face_detection_short_range.tflite", 128, (8, 16, 16, 16)),
    # face_detection_full_range.pbtxt: faces up to ~5 m, 2304 anchors on one 48x48 layer.
    "full": BlazeFaceConfig(
        "face_detection_full_range_sparse.tflite", 192, (4,), interpolated_scale_aspect_ratio=0.0, score_threshold=0.6
    ),
}


def _layer_scale(min_scale: float, max_scale: float, index: int, count: int) -> float:
    if count == 1:
        return (min_scale + max_scale) / 2
    return min_scale + (max_scale - min_scale) * index / (count - 1)


def ssd_anchors(
    input_size: int,
    strides,
    min_scale: float = 0.1484375,
    max_scale: float = 0.75,
    aspect_ratios=(1.0,),
    interpolated_scale_aspect_ratio: float = 1.0,
    offset: float = 0.5,
    fixed_anchor_size: bool = True,
) -> np.ndarray:
    """SSD anchors as MediaPipe's `SsdAnchorsCalculator` makes them.

    Consecutive layers with the same stride share one feature map; each
    cell of it gets one anchor per (layer, aspect ratio), plus one per layer
    when `interpolated_scale_aspect_ratio` > 0. Anchors are listed row by
    row, cell by cell, anchor by anchor, which is the order of the model's
    outputs.

    Args:
        input_size: Side of the square model input in pixels.
        strides: Stride of each layer, e.g. (8, 16, 16, 16).
        min_scale, max_scale: Anchor sizes of the first and last layer.
        aspect_ratios: Width / height ratios per layer.
        interpolated_scale_aspect_ratio: Aspect ratio of the extra anchor
            between this layer's scale and the next one's; 0 for none.
        offset: Anchor centre inside its cell (0.5: the cell centre).
        fixed_anchor_size: Width and height 1 (BlazeFace regresses absolute sizes).

    Returns:
        float32 [N, 4]: (x_centre, y_centre, width, height) in [0, 1] input units.
    """
    strides = list(strides)
    anchors, layer = [], 0
    while layer < len(strides):
        sizes = []  # (width, height) of each anchor of a cell
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            scale = _layer_scale(min_scale, max_scale, last, len(strides))
            for ratio in aspect_ratios:
                sizes.append((scale * math.sqrt(ratio), scale / math.sqrt(ratio)))
            if interpolated_scale_aspect_ratio > 0:
                following = 1.0 if last == len(strides) - 1 else _layer_scale(min_scale, max_scale, last + 1, len(strides))
                mid, ratio = math.sqrt(scale * following), interpolated_scale_aspect_ratio
                sizes.append((mid * math.sqrt(ratio), mid / math.sqrt(ratio)))
            last += 1
        cells = math.ceil(input_size / strides[layer])
        for y in range(cells):
            for x in range(cells):
                for w, h in sizes:
                    w, h = (1.0, 1.0) if fixed_anchor_size else (w, h)
                    anchors.append(((x + offset) / cells, (y + offset) / cells, w, h))
        layer = last
    return np.asarray(anchors, np.float32)


def decode_boxes(raw: np.ndarray, anchors: np.ndarray, input_size: int, num_keypoints: int = 6):
    """Decodes BlazeFace regressors relative to their anchors.

    Args:
        raw: [N, 4 + 2 * num_keypoints] regressors: box centre offset (dx, dy)
            and size (w, h), then (x, y) offset per key point, all in model-
            input pixels (MediaPipe's ``reverse_output_order``: x before y).
        anchors: [N, 4] from `ssd_anchors`.
        input_size: Input side in pixels (MediaPipe's x/y/w/h_scale).
        num_keypoints: Key points per box.

    Returns:
        boxes: float32 [N, 4] (x0, y0, x1, y1) in [0, 1] input units.
        keypoints: float32 [N, num_keypoints, 2] (x, y) in [0, 1] input units.
    """
    raw = np.atleast_2d(np.asarray(raw, np.float32))
    centre, size = anchors[:, None, :2], anchors[:, None, 2:]
    cxy = raw[:, :2] / input_size * anchors[:, 2:] + anchors[:, :2]
    wh = raw[:, 2:4] / input_size * anchors[:, 2:]
    boxes = np.concatenate([cxy - wh / 2, cxy + wh / 2], axis=-1)
    kp = raw[:, 4 : 4 + 2 * num_keypoints].reshape(-1, num_keypoints, 2)
    keypoints = kp / input_size * size + centre
    return boxes.astype(np.float32), keypoints.astype(np.float32)


def decode_scores(logits: np.ndarray, clip: float = 100.0) -> np.ndarray:
    """Detection scores [N] in (0, 1): sigmoid of the clipped logits [N] or [N, 1]."""
    x = np.clip(np.asarray(logits, np.float64).reshape(-1), -clip, clip)
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one (x0, y0, x1, y1) box [4] with each of boxes [N, 4] -> [N]."""
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    area = np.prod(np.clip(box[2:] - box[:2], 0, None))
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=-1)
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(boxes, scores, keypoints=None, iou_threshold: float = 0.3, weighted: bool = True, max_out: int | None = None):
    """Non-maximum suppression, MediaPipe's WEIGHTED algorithm by default.

    Repeatedly takes the best remaining box; every remaining box whose IoU
    with it is > `iou_threshold` (the best box itself included) is removed.
    With `weighted`, the output box (and key points) is the score-weighted
    mean of the removed group; its score is the best box's. Without, the
    best box is kept as is (plain NMS).

    Args:
        boxes: [N, 4] (x0, y0, x1, y1).
        scores: [N].
        keypoints: Optional [N, P, 2], averaged like the boxes.
        iou_threshold: Overlap above which boxes are merged / suppressed.
        weighted: Weighted merge (True) or plain suppression.
        max_out: Keep at most this many results.

    Returns:
        (boxes [M, 4], scores [M], keypoints [M, P, 2] or None), best first.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    kps = None if keypoints is None else np.asarray(keypoints, np.float64)
    remaining = np.argsort(-scores, kind="stable")
    out_boxes, out_scores, out_kps = [], [], []
    while len(remaining) and (max_out is None or len(out_boxes) < max_out):
        best = remaining[0]
        overlap = box_iou(boxes[best], boxes[remaining]) > iou_threshold
        overlap[0] = True  # a degenerate (zero-area) best box still absorbs itself
        group, remaining = remaining[overlap], remaining[~overlap]
        if weighted:
            w = scores[group] / scores[group].sum() if scores[group].sum() > 0 else np.full(len(group), 1 / len(group))
            out_boxes.append(w @ boxes[group])
            if kps is not None:
                out_kps.append(np.tensordot(w, kps[group], axes=1))
        else:
            out_boxes.append(boxes[best])
            if kps is not None:
                out_kps.append(kps[best])
        out_scores.append(scores[best])
    points = None
    if kps is not None:
        points = np.asarray(out_kps, np.float32).reshape(-1, kps.shape[1], 2)
    return np.asarray(out_boxes, np.float32).reshape(-1, 4), np.asarray(out_scores, np.float32), points


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Letterboxes a photo into a square model input.

    The photo is resized with area averaging (no aliasing on large photos)
    into a ``round(w * s) x round(h * s)`` block centred on a black square.

    Args:
        image: uint8 [H, W, 3].
        size: Output side S.

    Returns:
        square: uint8 [S, S, 3].
        matrix: float64 [2, 3] photo pixel centres -> square pixel centres
            (exact for the block actually written, whose size is rounded).
    """
    import cv2

    h, w = image.shape[:2]
    scale = size / max(h, w)
    bw, bh = min(size, max(1, round(w * scale))), min(size, max(1, round(h * scale)))
    x0, y0 = (size - bw) // 2, (size - bh) // 2
    square = np.zeros((size, size, 3), np.uint8)
    interp = cv2.INTER_AREA if bw < w else cv2.INTER_LINEAR
    square[y0 : y0 + bh, x0 : x0 + bw] = cv2.resize(np.ascontiguousarray(image), (bw, bh), interpolation=interp)
    sx, sy = bw / w, bh / h
    matrix = np.array([[sx, 0, 0.5 * sx + x0 - 0.5], [0, sy, 0.5 * sy + y0 - 0.5]], np.float64)
    return square, matrix


def unletterbox(points: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Normalised input coordinates [..., 2] in [0, 1] -> photo pixel centres [..., 2].

    Args:
        points: (x, y) with 0 and 1 the outer edges of the square input.
        matrix: `letterbox`'s photo -> square affine (axis-aligned).
        size: Square side S.
    """
    pixels = np.asarray(points, np.float64) * size - 0.5  # to square pixel centres
    return ((pixels - matrix[:, 2]) / np.diag(matrix[:, :2])).astype(np.float32)


def _load_calibration(name: str) -> dict:
    if not os.path.isfile(CALIBRATION_FILE):
        return {}
    with open(CALIBRATION_FILE) as f:
        return json.load(f).get(name, {})


class BlazeFaceDetector(FaceDetector):
    """MediaPipe's BlazeFace TFLite face detector (short or full range).

    Args:
        model: ``"full"`` (default: faces down to ~1/20 of the photo side),
            ``"short"`` (faster, faces larger than ~1/6 of the photo side),
            or a path to a BlazeFace-compatible ``.tflite``, whose variant is
            told by its input size (128 short, 192 full).
        score_threshold: Minimum detection score; None: MediaPipe's (0.5 short, 0.6 full).
        iou_threshold: Weighted-NMS merge overlap.
        max_faces: Keep at most this many faces, best first.
        num_threads: TFLite CPU threads.

    Attributes:
        last_scores: [N] scores of the latest `detect` call (also `detect_scored`).
        last_keypoints: [N, 6, 2] key points (photo pixels) of the latest call.
    """

    def __init__(
        self,
        model: str = "full",
        score_threshold: float | None = None,
        iou_threshold: float = 0.3,
        max_faces: int = 32,
        num_threads: int = 1,
    ):
        if model in CONFIGS:
            config, path, name = CONFIGS[model], os.path.join(ASSET_DIR, CONFIGS[model].file), model
        else:
            path, config, name = os.fspath(model), None, None
        self.path = path
        self.interpreter = _interpreter(path, num_threads)
        inp = self.interpreter.get_input_details()[0]
        size = int(inp["shape"][1])
        if config is None:
            name = {128: "short", 192: "full"}.get(size)
            if name is None or list(inp["shape"]) != [1, size, size, 3]:
                raise ValueError(f"{path}: not a BlazeFace model (input shape {list(inp['shape'])})")
            config = CONFIGS[name]
        outputs = sorted(self.interpreter.get_output_details(), key=lambda d: -int(d["shape"][-1]))
        self.anchors = ssd_anchors(
            config.input_size, config.strides, config.min_scale, config.max_scale,
            interpolated_scale_aspect_ratio=config.interpolated_scale_aspect_ratio,
        )
        if [list(d["shape"]) for d in outputs] != [[1, len(self.anchors), 16], [1, len(self.anchors), 1]]:
            raise ValueError(f"{path}: not a BlazeFace model (outputs are not regressors + scores of {len(self.anchors)} anchors)")
        self.name, self.config, self.input_size = name, config, size
        self._input, (self._boxes, self._logits) = inp["index"], (d["index"] for d in outputs)
        self.score_threshold = config.score_threshold if score_threshold is None else float(score_threshold)
        self.iou_threshold = iou_threshold
        self.max_faces = max_faces
        calibration = _load_calibration(name)
        self.box_scale = float(calibration.get("box_scale", 1.0))
        self.box_shift = tuple(calibration.get("box_shift", (0.0, 0.0)))
        self.last_scores = np.zeros(0, np.float32)
        self.last_keypoints = np.zeros((0, 6, 2), np.float32)

    def run_square(self, square: np.ndarray, matrix: np.ndarray, threshold: float | None = None):
        """Runs the model on an already letterboxed input.

        Args:
            square: uint8 [S, S, 3] with S = `input_size`.
            matrix: [2, 3] axis-aligned affine, photo pixel centres -> `square` pixel centres.
            threshold: Score threshold (default `score_threshold`).

        Returns:
            boxes [N, 4] (x0, y0, x1, y1, photo pixels), scores [N], key points [N, 6, 2]
            (photo pixels), best first, after weighted NMS.
        """
        return self.decode(self.invoke(square), matrix, threshold)

    def invoke(self, square: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's raw outputs for a letterboxed input: regressors [A, 16] and logits [A].

        `get_tensor` returns copies, so they outlive the next `invoke`."""
        self.interpreter.set_tensor(self._input, (square[None].astype(np.float32) - 127.5) / 127.5)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._boxes)[0], self.interpreter.get_tensor(self._logits)[0, :, 0]

    def decode(self, raw: tuple[np.ndarray, np.ndarray], matrix: np.ndarray, threshold: float | None = None):
        """`run_square`'s result from `invoke`'s outputs (so one pass can be decoded at two thresholds)."""
        size = self.input_size
        regressors, logits = raw
        keep = logits > _logit(self.score_threshold if threshold is None else threshold)  # monotonic: filter first
        scores = decode_scores(logits[keep])
        boxes, keypoints = decode_boxes(regressors[keep], self.anchors[keep], size)
        boxes, scores, keypoints = weighted_nms(boxes, scores, keypoints, self.iou_threshold, max_out=self.max_faces)
        corners = unletterbox(boxes.reshape(-1, 2, 2), matrix, size).reshape(-1, 4)
        return corners.astype(np.float32), scores, unletterbox(keypoints, matrix, size)

    def detect_scored(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Face boxes [N, 4] (x0, y0, x1, y1, photo pixels) and scores [N], best first."""
        square, matrix = letterbox(_check_photo(image), self.input_size)
        boxes, scores, self.last_keypoints = self.run_square(square, matrix)
        self.last_scores = scores
        return boxes, scores

    def detect(self, image: np.ndarray) -> np.ndarray:
        return self.detect_scored(image)[0]


class MultiRangeBlazeFace(FaceDetector):
    """The default detector: short- and full-range BlazeFace together, tiles as a fallback.

    The short-range model finds close, large, rotated and dark faces (100 %
    of the 300W crops); the full-range one finds faces down to ~1/15 of the
    photo side but misses a tenth of close-ups and costs 3x as much. The
    short-range model runs first. When it finds a face whose landmark box is
    at least `full_below` of the photo's longer side (a portrait or selfie:
    the case where the full-range model adds nothing but time), that is the
    answer. Otherwise the full-range model runs too, each model's boxes are
    mapped to landmark boxes by its own calibration, and the two are merged by
    weighted NMS. (The price: a photo with one large face and much smaller
    ones behind it may miss the small ones; `full_below=0` runs both models on
    every photo.) The full-range model is skipped too when the short-range one
    alone found `max_faces` faces: with ``max_faces=1`` (one face per photo, as
    MediaPipe's face mesh runs by default) any face it finds is the answer, at
    the short-range model's speed. Each model letterboxes the photo itself,
    exactly as it does alone (and as its box calibration was fitted). When
    they find no face, or two or more (below `max_faces`) all smaller than
    `tile_below` of the photo's longer side (a crowd), and the photo is over
    twice the full-range input, the full-range model also runs on 3 x 3
    overlapping tiles (each 45 % of the photo's width and height, so faces are
    2.2x larger to it; 2 x 2 tiles of 60 % missed 16 of 202 faces with a 40 px
    landmark box in 640 x 480 frames, 3 x 3 of 45 % miss 12, with no more
    false detections).

    When no face reaches the thresholds, `detect_verified` looks again at
    what the same model passes scored between `short_candidate` and
    `short_threshold` (short range) or `full_candidate` and `full_threshold`
    (full range), and keeps the boxes its verifier scores at least
    `verify_threshold` (`Predictor` passes its landmark model's mean heatmap
    peak): partly covered faces score low with the detector but are still
    faces to the landmark model, while the detector's false alarms
    (textures, face-like blobs) are not. Photos with a confirmed face are
    answered exactly as without a verifier, at the same cost.

    `detect` returns landmark-box estimates already, so `box_scale` is 1 and
    `box_shift` 0 (a `calibrate` call fits what is left).

    Args:
        short_threshold: Score threshold of the short-range model (0.7: its
            best false detection on 450 face-free frames scored 0.67).
        full_threshold: Score threshold of the full-range model (MediaPipe's 0.6).
        short_candidate, full_candidate: Lower score thresholds of the
            boxes `detect_verified` asks its verifier about.
        verify_threshold: Minimum verifier confidence of such a face (0.35:
            the landmark models' mean heatmap peak, as `Tracker`'s
            `min_confidence`; chosen on faces apart from the benchmark's,
            see the README's detection section).
        tile_threshold: Threshold of the tile pass (stricter: nine more looks;
            its best false detection on 200 face-free frames scored 0.72).
        full_below: Skip the full-range model when the short-range one finds a
            face whose landmark box is at least this fraction of the photo's
            longer side (0: never skip it).
        tiles: Allow the tile pass.
        tile_below: Run it when several faces are found and the largest is
            smaller than this fraction of the photo's longer side (or none is found).
        tile_grid: Tiles per side.
        tile_fraction: Each tile's width and height over the photo's.
        iou_threshold: Weighted-NMS merge overlap.
        max_faces: At most this many faces, best first. When the short-range
            model finds this many, the full-range model does not run.
        num_threads: TFLite CPU threads.
    """

    def __init__(
        self,
        short_threshold: float = 0.7,
        full_threshold: float = 0.6,
        short_candidate: float = 0.5,
        full_candidate: float = 0.4,
        verify_threshold: float = 0.35,
        tile_threshold: float = 0.75,
        full_below: float = 0.2,
        tiles: bool = True,
        tile_below: float = 1 / 6,
        tile_grid: int = 3,
        tile_fraction: float = 0.45,
        iou_threshold: float = 0.3,
        max_faces: int = 32,
        num_threads: int = 1,
    ):
        self.short = BlazeFaceDetector("short", short_threshold, iou_threshold, max_faces, num_threads)
        self.full = BlazeFaceDetector("full", full_threshold, iou_threshold, max_faces, num_threads)
        if tile_grid < 2 or not 1 / tile_grid <= tile_fraction < 1:
            raise ValueError(f"tiles: want tile_grid >= 2 and 1 / tile_grid <= tile_fraction < 1 (got {tile_grid}, {tile_fraction})")
        if not (short_candidate <= short_threshold and full_candidate <= full_threshold):
            raise ValueError(
                f"candidate thresholds must not exceed the detection thresholds (got short {short_candidate} > "
                f"{short_threshold} or full {full_candidate} > {full_threshold})"
            )
        self.candidates = {"short": float(short_candidate), "full": float(full_candidate)}
        self.verify_threshold = float(verify_threshold)
        self.tile_threshold = tile_threshold
        self.full_below = float(full_below)
        self.tile_grid, self.tile_fraction = int(tile_grid), float(tile_fraction)
        self.tiles = tiles
        self.tile_below = tile_below
        self.iou_threshold = iou_threshold
        if max_faces < 1:
            raise ValueError(f"max_faces: want >= 1 (got {max_faces})")
        self.max_faces = int(max_faces)
        self.last_scores = np.zeros(0, np.float32)

    def detect_scored(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Landmark-box estimates [N, 4] (x0, y0, x1, y1, photo pixels) and scores [N], best first."""
        return self.detect_verified(image, None)

    def detect_verified(self, image: np.ndarray, verifier) -> tuple[np.ndarray, np.ndarray]:
        """As `detect_scored`; when that finds no face, the low-scoring boxes `verifier` confirms.

        Args:
            image: uint8 RGB [H, W, 3].
            verifier: None, or a callable ``(image, boxes [M, 4]) -> [M]``
                confidences of landmark boxes (photo pixels). Called once,
                only when no face reached the detection thresholds and some
                boxes scored between the candidate and detection thresholds;
                those reaching `verify_threshold` are kept, best first, none
                overlapping a better one (a crop of part of a face passes
                the verifier too).

        Returns:
            boxes [N, 4] and the detector's scores [N], best first.
        """
        image = _check_photo(image)
        long_side = max(image.shape[:2])
        passes = []  # (detector, raw outputs, letterbox matrix): decoded again for candidates

        def landmark_boxes(detector):  # each model letterboxes the photo itself, as it does alone
            square, matrix = letterbox(image, detector.input_size)
            passes.append((detector, detector.invoke(square), matrix))
            boxes, scores, _ = detector.decode(*passes[-1][1:])
            return detector.to_landmark_box(boxes), scores

        found = [landmark_boxes(self.short)]
        short_sides = found[0][0][:, 2] - found[0][0][:, 0]
        # A large face is the short-range model's own case: the full-range one would add only time.
        large = self.full_below > 0 and short_sides.size and short_sides.max() >= self.full_below * long_side
        # With `max_faces` found already (max_faces=1: the photo's main face), more faces would not be kept.
        if not (large or short_sides.size >= self.max_faces):
            found.append(landmark_boxes(self.full))
        boxes, scores = self._merge(found)
        sides = boxes[:, 2] - boxes[:, 0]
        # No face, or a group of small faces (a crowd: more may be too small for the full photo):
        # look again at 3x3 tiles, where faces are 2.2x larger to the model. One small face
        # alone (a portrait at a distance) does not pay for nine more model runs.
        group = 2 <= len(sides) < self.max_faces and sides.max() < self.tile_below * long_side
        if self.tiles and long_side >= 2 * self.full.input_size and (not len(sides) or group):
            boxes, scores = self._merge([(boxes, scores), self._tile_pass(image)])
        if not len(boxes) and verifier is not None:
            boxes, scores = self._verified_candidates(image, passes, verifier)
        self.last_scores = scores
        return boxes, scores

    def _verified_candidates(self, image, passes, verifier) -> tuple[np.ndarray, np.ndarray]:
        """The passes' boxes between the candidate and detection thresholds that `verifier` confirms."""
        found = []
        for detector, raw, matrix in passes:
            boxes, scores, _ = detector.decode(raw, matrix, self.candidates[detector.name])
            found.append((detector.to_landmark_box(boxes), scores))
        boxes, scores = self._merge(found)
        if not len(boxes):
            return boxes, scores
        ok = np.asarray(verifier(image, boxes), np.float64).reshape(-1) >= self.verify_threshold
        kept = []
        for i in np.flatnonzero(ok):  # best first
            if not kept or box_iou(boxes[i], boxes[kept]).max() <= 0:
                kept.append(i)
        return boxes[kept].reshape(-1, 4), scores[kept]

    def _merge(self, found) -> tuple[np.ndarray, np.ndarray]:
        boxes = np.concatenate([b for b, _ in found])
        scores = np.concatenate([s for _, s in found])
        boxes, scores, _ = weighted_nms(boxes, scores, None, self.iou_threshold, max_out=self.max_faces)
        return boxes, scores

    def _tile_pass(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Full-range model on `tile_grid` x `tile_grid` overlapping tiles, each `tile_fraction` of the photo's sides."""
        h, w = image.shape[:2]
        th, tw = round(self.tile_fraction * h), round(self.tile_fraction * w)
        boxes, scores = [], []
        for y0 in np.linspace(0, h - th, self.tile_grid).round().astype(int):
            for x0 in np.linspace(0, w - tw, self.tile_grid).round().astype(int):
                square, m = letterbox(image[y0 : y0 + th, x0 : x0 + tw], self.full.input_size)
                m = m.copy()
                m[:, 2] -= np.diag(m[:, :2]) * (x0, y0)  # tile pixels -> photo pixels
                b, s, _ = self.full.run_square(square, m, self.tile_threshold)
                boxes.append(self.full.to_landmark_box(b))
                scores.append(s)
        return np.concatenate(boxes), np.concatenate(scores)

    def detect(self, image: np.ndarray) -> np.ndarray:
        return self.detect_scored(image)[0]


def _check_photo(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"detector input must be uint8 RGB [H, W, 3], got {image.dtype} {list(image.shape)}")
    return image


def _logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))


def _interpreter(path: str, num_threads: int):
    from ai_edge_litert.interpreter import Interpreter

    from mobilefan_tf.predictor import quiet_stderr

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: face detector model not found")
    try:
        with quiet_stderr():
            interpreter = Interpreter(model_path=path, num_threads=num_threads)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        raise ValueError(f"{path}: cannot read face detector model ({str(err).splitlines()[0]})") from None
    return interpreter
