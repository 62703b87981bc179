"""Face detectors for `Predictor`: boxes in, crops out.

A detector returns [N, 4] boxes (x0, y0, x1, y1) in the photo's pixels. Its
boxes are not the landmark bounding boxes the model was trained on (a HOG or
Haar box is tighter and sits higher), so each detector also has
`to_landmark_box`, a calibrated similarity (size factor and centre shift,
fitted on 300W faces with `calibrate`) that turns its boxes into estimates of
the landmark box.

The default detector is MediaPipe's BlazeFace (TFLite, short range first, full
range for smaller faces: `blazeface.MultiRangeBlazeFace`; the model files ship
in `assets/face_detection`).
dlib's HOG frontal-face detector (``pip install dlib-bin``) and OpenCV's Haar
cascade (OpenCV 4 wheels only) remain available: `make_detector("dlib")`.
"""

from __future__ import annotations

import os

import numpy as np


class FaceDetector:
    """Interface: `detect(image) -> [N, 4]` boxes, plus the box calibration.

    Attributes:
        box_scale: Landmark-box side / detector-box side.
        box_shift: (dx, dy) of the landmark-box centre from the detector-box
            centre, as fractions of the detector-box side.
    """

    box_scale: float = 1.0
    box_shift: tuple[float, float] = (0.0, 0.0)

    def detect(self, image: np.ndarray) -> np.ndarray:
        """Face boxes of a uint8 RGB [H, W, 3] photo: float32 [N, 4] (x0, y0, x1, y1), best first."""
        raise NotImplementedError

    def detect_scored(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes [N, 4] as `detect` and one confidence per box [N] (NaN where the detector has none)."""
        boxes = self.detect(image)
        return boxes, np.full(len(boxes), np.nan, np.float32)

    def detect_verified(self, image: np.ndarray, verifier) -> tuple[np.ndarray, np.ndarray]:
        """As `detect_scored`; a detector with a second, lower score tier keeps those faces
        only where ``verifier(image, landmark_boxes [M, 4]) -> [M]`` confirms them
        (`MultiRangeBlazeFace`). This one has no such tier and ignores `verifier`."""
        del verifier
        return self.detect_scored(image)

    def to_landmark_box(self, boxes) -> np.ndarray:
        """Maps detector boxes [N, 4] to estimated landmark boxes [N, 4] (square)."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        cx = (boxes[:, 0] + boxes[:, 2]) / 2 + self.box_shift[0] * side
        cy = (boxes[:, 1] + boxes[:, 3]) / 2 + self.box_shift[1] * side
        half = side * self.box_scale / 2
        return np.stack([cx - half, cy - half, cx + half, cy + half], axis=-1)

    def calibrate(self, images, landmarks) -> dict:
        """Fits `box_scale` and `box_shift` to faces with known landmarks.

        Args:
            images: Sequence of uint8 RGB photos, one face each.
            landmarks: Sequence of [K, 2] landmarks in the same photos.

        Returns:
            ``{"box_scale", "box_shift", "matched", "total"}`` (means over
            faces whose best detection overlaps the landmark box: detector
            box sizes come in pyramid steps, so medians jump between steps).
            Also sets the attributes.
        """
        ratios, shifts = [], []
        for image, lm in zip(images, landmarks, strict=True):
            boxes = self.detect(image)
            if not len(boxes):
                continue
            lm = np.asarray(lm, np.float32)
            lo, hi = lm.min(0), lm.max(0)
            x0, y0, x1, y1 = boxes[0]
            side = max(x1 - x0, y1 - y0)
            centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
            if np.abs((lo + hi) / 2 - centre).max() > side:  # detected something else
                continue
            ratios.append(float((hi - lo).max() / side))
            shifts.append(((lo + hi) / 2 - centre) / side)
        if not ratios:
            raise ValueError("calibration found no faces")
        self.box_scale = float(np.mean(ratios))
        self.box_shift = tuple(float(v) for v in np.mean(np.array(shifts), axis=0))
        return {"box_scale": self.box_scale, "box_shift": self.box_shift, "matched": len(ratios), "total": len(images)}


class DlibFaceDetector(FaceDetector):
    """dlib's HOG + linear SVM frontal-face detector (built into dlib).

    Args:
        upsample: Times the photo is upsampled (finds faces down to ~40 px at 1).
        threshold: Detection score threshold (dlib's `adjust_threshold`; 0.2
            drops weak hits such as the badge on skimage's astronaut).
        max_faces: Keep at most this many boxes, highest score first.
    """

    # Fitted with `calibrate` on 403 300W training faces (382 detected):
    # landmark-box / HOG-box side 0.99, centre 0.075 of a side lower.
    box_scale = 0.99
    box_shift = (0.01, 0.075)

    def __init__(self, upsample: int = 1, threshold: float = 0.2, max_faces: int = 32):
        try:
            import dlib
        except ImportError:
            raise ImportError("dlib is not installed: pip install dlib-bin (or pass face boxes)") from None
        self._detector = dlib.get_frontal_face_detector()
        self.upsample = upsample
        self.threshold = threshold
        self.max_faces = max_faces

    def detect_scored(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes [N, 4] and dlib's SVM scores [N] (unbounded; > `threshold`), best first."""
        image = np.ascontiguousarray(image, dtype=np.uint8)
        # Upsampling large photos only costs time: small faces there are already big enough.
        upsample = self.upsample if max(image.shape[:2]) <= 1024 else 0
        rects, scores, _ = self._detector.run(image, upsample, self.threshold)
        order = np.argsort(scores)[::-1][: self.max_faces]
        boxes = [[rects[i].left(), rects[i].top(), rects[i].right() + 1, rects[i].bottom() + 1] for i in order]
        return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray([scores[i] for i in order], np.float32)

    def detect(self, image: np.ndarray) -> np.ndarray:
        return self.detect_scored(image)[0]


def haar_cascade_path() -> str | None:
    """The frontal-face Haar cascade of the installed OpenCV, or None (OpenCV 5 ships none)."""
    import cv2

    folder = getattr(getattr(cv2, "data", None), "haarcascades", "") or ""
    path = os.path.join(folder, "haarcascade_frontalface_default.xml")
    return path if hasattr(cv2, "CascadeClassifier") and os.path.isfile(path) else None


class HaarFaceDetector(FaceDetector):
    """OpenCV's Viola-Jones frontal-face cascade (OpenCV 4.x wheels ship it).

    Args:
        cascade_path: An XML cascade; defaults to OpenCV's bundled one.
        min_neighbors: Overlapping detections needed to keep a face.
        min_size: Smallest face side in pixels.
        max_faces: Keep at most this many boxes, largest first.
    """

    box_scale = 1.1
    box_shift = (0.0, 0.1)

    def __init__(self, cascade_path: str | None = None, min_neighbors: int = 5, min_size: int = 32, max_faces: int = 32):
        import cv2

        cascade_path = cascade_path or haar_cascade_path()
        if not cascade_path or not hasattr(cv2, "CascadeClassifier"):
            raise ImportError(f"OpenCV {cv2.__version__} has no Haar cascades: use DlibFaceDetector")
        self._cascade = cv2.CascadeClassifier(cascade_path)
        if self._cascade.empty():
            raise ValueError(f"cannot read Haar cascade {cascade_path}")
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.max_faces = max_faces

    def detect(self, image: np.ndarray) -> np.ndarray:
        import cv2

        gray = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
        found = self._cascade.detectMultiScale(gray, 1.1, self.min_neighbors, minSize=(self.min_size, self.min_size))
        boxes = np.asarray(found, np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        order = np.argsort(-(boxes[:, 2] - boxes[:, 0]))  # largest first
        return boxes[order[: self.max_faces]]


DETECTORS = ("blazeface", "blazeface_both", "blazeface_short", "blazeface_full", "dlib", "haar")


def make_detector(name: str = "blazeface", num_threads: int = 1, max_faces: int | None = None) -> FaceDetector:
    """A detector by name (the CLI's ``--detector``).

    Args:
        name: ``blazeface`` (default: `MultiRangeBlazeFace`, short range first,
            full range unless it found a large face), ``blazeface_both`` (both
            ranges on every photo: group photos with faces of very different
            sizes), ``blazeface_short``, ``blazeface_full``, ``dlib`` (HOG) or ``haar``
            (OpenCV 4 cascade), or a path to a BlazeFace ``.tflite``.
        num_threads: TFLite threads of the BlazeFace models.
        max_faces: Faces kept at most, best first (None: 32). ``blazeface`` with 1
            runs its full-range model only when the short-range one finds no face.

    Raises:
        ImportError / ValueError / FileNotFoundError: one line naming what is missing.
    """
    from mobilefan_tf import blazeface

    max_faces = 32 if max_faces is None else int(max_faces)
    if max_faces < 1:
        raise ValueError(f"max_faces: want >= 1 (got {max_faces})")
    if name == "blazeface":
        return blazeface.MultiRangeBlazeFace(max_faces=max_faces, num_threads=num_threads)
    if name == "blazeface_both":
        return blazeface.MultiRangeBlazeFace(full_below=0, max_faces=max_faces, num_threads=num_threads)
    if name in ("blazeface_short", "blazeface_full"):
        return blazeface.BlazeFaceDetector(name.removeprefix("blazeface_"), max_faces=max_faces, num_threads=num_threads)
    if name == "dlib":
        return DlibFaceDetector(max_faces=max_faces)
    if name == "haar":
        return HaarFaceDetector(max_faces=max_faces)
    if name.endswith(".tflite"):
        return blazeface.BlazeFaceDetector(name, max_faces=max_faces, num_threads=num_threads)
    raise ValueError(f"unknown face detector {name!r} (want one of {', '.join(DETECTORS)} or a BlazeFace .tflite)")


def default_detector(max_faces: int | None = None) -> FaceDetector:
    """BlazeFace (`MultiRangeBlazeFace`) when ai-edge-litert is installed, else dlib HOG, else Haar.

    Args:
        max_faces: Faces kept at most, best first (see `make_detector`).

    Raises:
        ImportError: one line, when none is available.
    """
    for name in ("blazeface", "dlib"):
        try:
            return make_detector(name, max_faces=max_faces)
        except ImportError:
            pass
    if haar_cascade_path():
        return make_detector("haar", max_faces=max_faces)
    raise ImportError("no face detector available: pip install ai-edge-litert (or dlib-bin), or pass face boxes (--boxes)")
