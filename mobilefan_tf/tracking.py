"""Video landmarks: a `Tracker` over `Predictor` with One-Euro temporal smoothing.

Detection is slow next to the landmark model (dlib HOG: ~0.4 s per 640x480
frame in benchmarks/bench_tracking.py; the paper student as int8 TFLite:
~25 ms per face), so, as in
MediaPipe's face mesh, the detector runs only on the first frame, when a face
is lost, and every `detect_interval` frames while fewer than `max_faces` are
tracked. Every other frame crops each face from the landmark box of its
previous frame and runs the model once for all faces. A face is lost when its
confidence (the mean heatmap peak value of its points; ~0.45-0.7 on a face,
~0.05-0.3 on a crop off the face for the shipped models) drops below
`min_confidence`.

Smoothing is output-only: crops follow the raw landmarks (no lag in where the
model looks) and the reported landmarks go through a `LandmarkSmoother`: the
One-Euro filter (Casiez et al., CHI 2012; `OneEuroFilter` is the classic
per-coordinate one) with one cutoff per face, driven by the face's speed in
face sizes per second, so its parameters do not depend on the resolution.

Coordinates are (x, y) in frame pixels, pixel-centre frame (the centre of the
top-left pixel is 0, 0), as in `Predictor`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mobilefan_tf.data.transforms import face_box

# Defaults chosen by grid search on generated 300W videos (benchmarks/bench_tracking.py, 30 fps;
# results/tracking.json): on two sets of training faces, still-face jitter x0.26 and x0.48 for
# +3 % and +1 % NME on a face that pans, zooms and rotates.
DEFAULT_MIN_CUTOFF = 0.02  # Hz: cutoff of a still face (lower: less jitter, more lag when it starts moving)
DEFAULT_BETA = 100.0  # Hz per (face size / s): how fast the cutoff rises with speed (higher: less lag)
DEFAULT_D_CUTOFF = 1.0  # Hz: cutoff of the speed estimate
DEFAULT_MIN_SPEED = 0.3  # face sizes / s: speeds below this count as still (landmark noise moves that fast)


def _alpha(cutoff, dt: float):
    """Smoothing factor of a first-order low-pass filter at `cutoff` Hz sampled every `dt` s."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro filter: a low-pass filter whose cutoff rises with speed.

    For each sample x_i at time t_i (dt = t_i - t_{i-1}):
    ``dx = (x_i - xh_{i-1}) / dt``; ``dxh = a(d_cutoff) dx + (1 - a) dxh_{i-1}``;
    ``cutoff = min_cutoff + beta * |dxh| / scale``;
    ``xh_i = a(cutoff) x_i + (1 - a) xh_{i-1}``, with
    ``a(fc) = 1 / (1 + 1 / (2 pi fc dt))``. The first sample passes through.

    Works elementwise on arrays of any fixed shape (e.g. [K, 2] landmarks).

    Args:
        min_cutoff: Cutoff frequency (Hz) at zero speed.
        beta: Cutoff increase per unit of speed (speed in `scale` units per second).
        d_cutoff: Cutoff frequency (Hz) of the speed estimate.
    """

    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA, d_cutoff: float = DEFAULT_D_CUTOFF):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f"OneEuroFilter: want min_cutoff > 0, d_cutoff > 0, beta >= 0 (got {min_cutoff}, {d_cutoff}, {beta})")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Forgets the past: the next sample passes through."""
        self._x = self._dx = self._t = None

    def __call__(self, x, t: float, scale: float = 1.0) -> np.ndarray:
        """Filters one sample.

        Args:
            x: The sample (array of the same shape every call).
            t: Its time in seconds (increasing).
            scale: Units of the speed in the cutoff (e.g. the face size in
                pixels, so that `beta` is per face size per second).

        Returns:
            float64 array like `x`, the filtered sample.
        """
        x = np.asarray(x, np.float64)
        if self._x is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        dt = float(t) - self._t
        if dt <= 0:  # repeated timestamp: nothing new to integrate
            return self._x.copy()
        a_d = _alpha(self.d_cutoff, dt)
        self._dx = a_d * (x - self._x) / dt + (1 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx) / float(scale)
        a = _alpha(cutoff, dt)
        self._x = a * x + (1 - a) * self._x
        self._t = float(t)
        return self._x.copy()


class LandmarkSmoother:
    """One-Euro filter of a face's landmarks with one cutoff for the whole face.

    The classic filter (`OneEuroFilter`) gives every coordinate its own
    cutoff from its own speed; on a still face each point's noisy speed
    keeps opening its cutoff, and jitter goes through. Here the speed is the
    face's: the speed of the landmarks' centroid (pan) plus the RMS speed of
    the points about it (rotation, zoom, expression), both from the
    d_cutoff-filtered velocities, in face sizes per second; speeds below
    `min_speed` count as zero (the noise floor). Then
    ``cutoff = min_cutoff + beta * max(0, speed - min_speed)`` and every
    point is low-passed at that cutoff, as in `OneEuroFilter`.

    Args:
        min_cutoff: Cutoff (Hz) of a still face.
        beta: Cutoff increase (Hz) per face size per second of speed.
        d_cutoff: Cutoff (Hz) of the velocity estimate.
        min_speed: Dead zone of the speed (face sizes per second).
    """

    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA,
                 d_cutoff: float = DEFAULT_D_CUTOFF, min_speed: float = DEFAULT_MIN_SPEED):
        OneEuroFilter(min_cutoff, beta, d_cutoff)  # validates
        if min_speed < 0:
            raise ValueError(f"LandmarkSmoother: want min_speed >= 0 (got {min_speed})")
        self.min_cutoff, self.beta, self.d_cutoff, self.min_speed = float(min_cutoff), float(beta), float(d_cutoff), float(min_speed)
        self.reset()

    def reset(self) -> None:
        """Forgets the past: the next sample passes through."""
        self._x = self._dx = self._t = None
        self.cutoff = None  # the latest cutoff (Hz), for inspection

    def __call__(self, landmarks, t: float) -> np.ndarray:
        """Smooths one frame's [K, 2] landmarks (pixels) at time `t` (s); returns float64 [K, 2]."""
        x = np.asarray(landmarks, np.float64)
        if self._x is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        dt = float(t) - self._t
        if dt <= 0:
            return self._x.copy()
        a_d = _alpha(self.d_cutoff, dt)
        self._dx = a_d * (x - self._x) / dt + (1 - a_d) * self._dx
        centre = self._dx.mean(axis=0)
        spread = np.sqrt(((self._dx - centre) ** 2).sum(-1).mean())
        speed = (float(np.linalg.norm(centre)) + float(spread)) / face_side(x)
        self.cutoff = self.min_cutoff + self.beta * max(0.0, speed - self.min_speed)
        a = _alpha(self.cutoff, dt)
        self._x = a * x + (1 - a) * self._x
        self._t = float(t)
        return self._x.copy()


def smooth_landmarks(landmarks, times, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA,
                     d_cutoff: float = DEFAULT_D_CUTOFF, min_speed: float = DEFAULT_MIN_SPEED) -> np.ndarray:
    """One face's landmark track smoothed offline exactly as `Tracker` does online.

    Args:
        landmarks: [T, K, 2] raw landmarks, frame pixels.
        times: [T] seconds.
        min_cutoff, beta, d_cutoff, min_speed: `LandmarkSmoother` parameters.

    Returns:
        float32 [T, K, 2].
    """
    smoother = LandmarkSmoother(min_cutoff, beta, d_cutoff, min_speed)
    return np.asarray([smoother(lm, t) for lm, t in zip(landmarks, times, strict=True)], np.float32)


def face_side(landmarks) -> float:
    """Longer side of the landmarks' bounding box in pixels (at least 1)."""
    box = face_box(landmarks)
    return max(float(np.max(box[2:] - box[:2])), 1.0)


def box_iou(a, b) -> np.ndarray:
    """IoU of boxes a [N, 4] and b [M, 4] (x0, y0, x1, y1) -> [N, M]."""
    a = np.asarray(a, np.float64).reshape(-1, 1, 4)
    b = np.asarray(b, np.float64).reshape(1, -1, 4)
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


@dataclass
class _Track:
    id: int
    landmarks: np.ndarray  # [K, 2] raw landmarks of the latest frame (frame pixels)
    filter: LandmarkSmoother
    age: int = 0  # frames tracked


class Tracker:
    """Landmarks of the faces in a video, frame after frame, with stable ids.

    Args:
        predictor: A `Predictor` (its model, detector and crop scale are used;
            the detector is any `FaceDetector`).
        max_faces: Track at most this many faces (highest detector rank first).
        min_confidence: A face whose mean landmark score falls below this is
            lost (and looked for again by the detector on the same frame).
        detect_interval: While fewer than `max_faces` faces are tracked, run
            the detector every this many frames to pick up new faces.
        smoothing: Apply the One-Euro filter to the reported landmarks.
        min_cutoff, beta, d_cutoff, min_speed: `LandmarkSmoother` parameters
            (the One-Euro filter with one speed per face; beta per face size
            per second).
        match_iou: A detection overlapping a tracked face's box by more than
            this is that face, not a new one; two tracks overlapping more are
            merged (the older id stays).
    """

    def __init__(
        self,
        predictor,
        max_faces: int = 4,
        min_confidence: float = 0.35,
        detect_interval: int = 30,
        smoothing: bool = True,
        min_cutoff: float = DEFAULT_MIN_CUTOFF,
        beta: float = DEFAULT_BETA,
        d_cutoff: float = DEFAULT_D_CUTOFF,
        min_speed: float = DEFAULT_MIN_SPEED,
        match_iou: float = 0.3,
    ):
        if max_faces < 1 or detect_interval < 1:
            raise ValueError(f"Tracker: want max_faces >= 1 and detect_interval >= 1 (got {max_faces}, {detect_interval})")
        LandmarkSmoother(min_cutoff, beta, d_cutoff, min_speed)  # validates the parameters now
        self.predictor = predictor
        self.max_faces, self.min_confidence = int(max_faces), float(min_confidence)
        self.detect_interval, self.smoothing, self.match_iou = int(detect_interval), bool(smoothing), float(match_iou)
        self.filter_params = (float(min_cutoff), float(beta), float(d_cutoff), float(min_speed))
        self.reset()

    def reset(self) -> None:
        """Drops every track (a new video); ids start again at 0."""
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._frame = 0
        self._last_detect = None
        self.detections = 0  # detector runs so far (for benchmarks)

    def _detect(self, frame: np.ndarray) -> np.ndarray:
        detector = self.predictor.detector
        self.detections += 1
        self._last_detect = self._frame
        return detector.to_landmark_box(detector.detect(frame))

    def update(self, frame: np.ndarray, timestamp: float | None = None) -> list[dict]:
        """Landmarks of every tracked face in the next frame.

        Args:
            frame: uint8 RGB [H, W, 3] (or anything `Predictor.predict` takes).
            timestamp: Seconds; defaults to frame index / 30.

        Returns:
            One dict per face, ordered by id: ``id`` (int, stable while the
            face is tracked), ``box`` [4] (the crop's face box), ``landmarks``
            [K, 2] float32 (smoothed when `smoothing`), ``raw_landmarks``
            [K, 2] (the model's), ``scores`` [K], ``confidence`` (mean score)
            and ``detected`` (True when the box came from the detector).
        """
        t = self._frame / 30.0 if timestamp is None else float(timestamp)
        boxes = np.array([face_box(tr.landmarks) for tr in self._tracks], np.float64).reshape(-1, 4)
        kept, lost = [], []
        for tr, face in zip(self._tracks, self._run(frame, boxes), strict=True):
            (kept if face["confidence"] >= self.min_confidence else lost).append((tr, face, False))
        due = self._last_detect is None or self._frame - self._last_detect >= self.detect_interval
        if not kept or lost or (len(kept) < self.max_faces and due):
            kept += self._new_faces(frame, [f for _, f, _ in kept], [tr for tr, _, _ in lost])
        self._tracks, results = [], []
        for tr, face, detected in self._merge(kept):
            tr.landmarks = np.asarray(face["landmarks"], np.float32)
            smooth = tr.filter(tr.landmarks, t) if self.smoothing else tr.landmarks
            tr.age += 1
            self._tracks.append(tr)
            results.append(
                {
                    "id": tr.id,
                    "box": np.asarray(face["box"], np.float32),
                    "landmarks": np.asarray(smooth, np.float32),
                    "raw_landmarks": tr.landmarks,
                    "scores": np.asarray(face["scores"], np.float32),
                    "confidence": face["confidence"],
                    "detected": detected,
                }
            )
        self._frame += 1
        return sorted(results, key=lambda r: r["id"])

    def _run(self, frame: np.ndarray, boxes: np.ndarray) -> list[dict]:
        """`Predictor.predict` on given landmark boxes (one batched model call), plus each face's confidence."""
        faces = self.predictor.predict(frame, boxes=boxes) if len(boxes) else []
        for face in faces:
            face["confidence"] = float(np.mean(face["scores"]))
        return faces

    def _new_faces(self, frame: np.ndarray, tracked: list[dict], lost: list[_Track]) -> list[tuple]:
        """Detects faces not overlapping `tracked` and tracks them (up to `max_faces` in all).

        A detection where a just-lost track was keeps that track's id and filter:
        a face that blinked below `min_confidence` for one frame stays the same face.
        """
        boxes = self._detect(frame)
        if len(boxes) and tracked:
            old = np.array([face_box(f["landmarks"]) for f in tracked])
            boxes = boxes[box_iou(boxes, old).max(axis=1) <= self.match_iou]
        boxes = boxes[: max(0, self.max_faces - len(tracked))]
        out = []
        for face in self._run(frame, boxes):
            if face["confidence"] < self.min_confidence:  # a detector false positive, or an unreadable face
                continue
            track = None
            if lost:
                iou = box_iou(face_box(face["landmarks"]), np.array([face_box(tr.landmarks) for tr in lost]))[0]
                if iou.max() > self.match_iou:
                    track = lost.pop(int(np.argmax(iou)))
            if track is None:
                track = _Track(self._next_id, face["landmarks"], LandmarkSmoother(*self.filter_params))
                self._next_id += 1
            out.append((track, face, True))
        return out

    def _merge(self, kept: list[tuple]) -> list[tuple]:
        """Drops the younger of two tracks that have converged on one face."""
        kept = sorted(kept, key=lambda k: k[0].id)
        out = []
        for item in kept:
            box = face_box(item[1]["landmarks"])
            if all(box_iou(box, face_box(o[1]["landmarks"]))[0, 0] <= 0.5 for o in out):
                out.append(item)
        return out

    def track(self, frames, fps: float = 30.0):
        """Yields `update` results for an iterable of frames (timestamps index / fps)."""
        for i, frame in enumerate(frames):
            yield self.update(frame, i / fps)
