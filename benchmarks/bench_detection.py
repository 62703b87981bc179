"""Face detection quality: BlazeFace (short / full range) vs dlib HOG on 300W faces.

Recall and false detections on the 2,012 real 300W training crops and on
harder versions of them made here (seeded, so every detector sees the same
pixels):

- ``original``: the 320x320 crop as stored;
- ``small``/``medium``/``large``: the face pasted (soft elliptical mask) into a
  640x480 textured background with a landmark-box side of 40 / 80 / 160 px;
- ``rotated``: the crop rotated by +-30 degrees about the face centre;
- ``dark``: brightness x0.2 with sensor noise (sigma 3 grey levels);
- ``occluded``: a grey block over a random third of the face (left, right,
  top or bottom);
- ``crowd``: four different faces (landmark-box side 50-150 px) on one
  960x540 canvas.

A ground-truth face is found when a detection, mapped to a landmark box by the
detector's calibration (`to_landmark_box`), has IoU >= 0.4 with the square
landmark box; every other detection counts as a false one (the ``original``
crops sometimes hold a second, unannotated face, so a few "false"
detections there are real faces). Noise and blank frames count false
detections only.

Usage:
    python benchmarks/bench_detection.py --calibrate     # fit + store box calibrations first
    python benchmarks/bench_detection.py                 # variants of every 10th face (~20 min on 2 busy cores)
    python benchmarks/bench_detection.py --every 1 --json results/detection.json
    python benchmarks/bench_detection.py --detectors blazeface@0 blazeface@0.15 blazeface \\
        --json results/detection_full_below.json         # when to skip the full-range model
    python benchmarks/bench_detection.py --detectors blazeface blazeface#1 \\
        --json results/detection_max_faces.json          # one face per photo (Predictor(max_faces=1))
    python benchmarks/bench_detection.py --detectors blazeface predictor_noverify predictor \\
        --json results/detection_verify.json             # Predictor.detect, with / without the landmark verifier
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mobilefan_tf.blazeface import CALIBRATION_FILE, BlazeFaceDetector, MultiRangeBlazeFace  # noqa: E402
from mobilefan_tf.data import read_300w  # noqa: E402
from mobilefan_tf.detector import DlibFaceDetector, FaceDetector  # noqa: E402
from mobilefan_tf.predictor import Predictor, read_image  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "300w", "300W-train")
VARIANTS = ("original", "small", "medium", "large", "rotated", "dark", "occluded", "crowd")


def square_box(landmarks: np.ndarray) -> np.ndarray:
    """Square box (x0, y0, x1, y1) with the side of the landmark box's longer side, same centre."""
    lo, hi = landmarks.min(0), landmarks.max(0)
    c, half = (lo + hi) / 2, (hi - lo).max() / 2
    return np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half], np.float32)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [len(a), len(b)] of (x0, y0, x1, y1) boxes."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), -1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], -1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A face-free textured background: smooth colour noise plus random boxes and discs."""
    low = rng.uniform(30, 220, (max(2, h // 60), max(2, w // 60), 3)).astype(np.float32)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(12):
        colour = rng.uniform(0, 255, 3).tolist()
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(10, w // 4)), y + int(rng.integers(10, h // 4))), colour, -1)
        else:
            cv2.circle(img, (x, y), int(rng.integers(5, h // 8)), colour, -1)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def paste(canvas: np.ndarray, crop: np.ndarray, landmarks: np.ndarray, side: float, centre) -> np.ndarray:
    """Pastes the face of `crop` (soft ellipse around its landmarks) so its landmark box side is `side`.

    Returns the pasted landmarks [K, 2] in canvas pixels.
    """
    lo, hi = landmarks.min(0), landmarks.max(0)
    s = side / (hi - lo).max()
    c = (lo + hi) / 2
    matrix = np.array([[s, 0, centre[0] - s * c[0]], [0, s, centre[1] - s * c[1]]])
    h, w = canvas.shape[:2]
    face = cv2.warpAffine(crop, matrix, (w, h), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    mask = np.zeros((h, w), np.float32)
    axes = (int(0.8 * side), int(0.95 * side))
    cv2.ellipse(mask, (int(centre[0]), int(centre[1] - 0.1 * side)), axes, 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, side / 12))[..., None]
    canvas[:] = (mask * face + (1 - mask) * canvas).astype(np.uint8)
    return landmarks * s + matrix[:, 2]


def make_variant(name: str, crop, landmarks, rng, others=()):
    """(image uint8 [H, W, 3], list of ground-truth landmark arrays [K, 2])."""
    if name == "original":
        return crop, [landmarks]
    if name in ("small", "medium", "large"):
        side = {"small": 40, "medium": 80, "large": 160}[name]
        canvas = background(rng, 480, 640)
        centre = (rng.uniform(side, 640 - side), rng.uniform(side, 480 - side))
        return canvas, [paste(canvas, crop, landmarks, side, centre)]
    if name == "rotated":
        lo, hi = landmarks.min(0), landmarks.max(0)
        c = (lo + hi) / 2
        m = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), float(rng.choice([-30, 30])), 1.0)
        out = cv2.warpAffine(crop, m, crop.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return out, [landmarks @ m[:, :2].T + m[:, 2]]
    if name == "dark":
        out = crop.astype(np.float32) * 0.2 + rng.normal(0, 3, crop.shape)
        return np.clip(out, 0, 255).astype(np.uint8), [landmarks]
    if name == "occluded":
        out = crop.copy()
        x0, y0 = landmarks.min(0)
        x1, y1 = landmarks.max(0)
        w, h = x1 - x0, y1 - y0
        side = rng.choice(["left", "right", "top", "bottom"])
        box = {
            "left": (x0, y0, x0 + w / 3, y1),
            "right": (x1 - w / 3, y0, x1, y1),
            "top": (x0, y0, x1, y0 + h / 3),
            "bottom": (x0, y1 - h / 3, x1, y1),
        }[side]
        cv2.rectangle(out, (int(box[0]), int(box[1])), (int(box[2]), int(box[3])), (128, 128, 128), -1)
        return out, [landmarks]
    if name == "crowd":
        canvas = background(rng, 540, 960)
        truths = []
        for i, (c, lm) in enumerate([(crop, landmarks), *others]):
            side = rng.uniform(50, 150)
            centre = (120 + 240 * i + rng.uniform(-20, 20), rng.uniform(side * 1.1, 540 - side * 1.1))
            truths.append(paste(canvas, c, lm, side, centre))
        return canvas, truths
    raise ValueError(name)


def score_detector(detector, image, truths) -> tuple[int, int]:
    """(found ground-truth faces, false detections) of one image."""
    boxes = detector.detect(image)
    if not len(boxes):
        return 0, 0
    pred = detector.to_landmark_box(boxes)
    if not truths:
        return 0, len(pred)
    iou = iou_matrix(np.stack([square_box(t) for t in truths]), pred)
    found, used_t, used = 0, set(), set()
    for t, j in zip(*np.unravel_index(np.argsort(-iou, axis=None), iou.shape), strict=True):  # greedy 1:1
        if iou[t, j] < 0.4:
            break
        if t not in used_t and j not in used:
            found += 1
            used_t.add(t)
            used.add(j)
    return found, len(pred) - len(used)


DEFAULT_ROWS = ("blazeface", "blazeface_short", "blazeface_full", "dlib")


def detectors(names=DEFAULT_ROWS) -> dict:
    """Rows by name: ``blazeface`` (the default), ``blazeface_short`` / ``_full``, ``dlib``, or
    ``blazeface@X``: the default with ``full_below=X`` (0: both ranges on every photo), or
    ``blazeface#N``: the default with ``max_faces=N`` (the crowd's recall is then at most N / 4)."""
    rows = {}
    for name in names:
        if name == "blazeface":
            rows["blazeface (default)"] = MultiRangeBlazeFace()
        elif name.startswith("blazeface#"):  # one photo's main faces: at most N, the full range only when fewer
            rows[f"blazeface, max_faces={name.split('#')[1]}"] = MultiRangeBlazeFace(max_faces=int(name.split("#")[1]))
        elif name.startswith("blazeface@"):
            rows[f"blazeface, full_below={name.split('@')[1]}"] = MultiRangeBlazeFace(full_below=float(name.split("@")[1]))
        elif name in ("blazeface_short", "blazeface_full"):
            rows[name] = BlazeFaceDetector(name.removeprefix("blazeface_"))
        elif name == "dlib":
            rows["dlib_hog"] = DlibFaceDetector()
        elif name in ("predictor", "predictor_noverify"):  # what Predictor.detect gives: default model as verifier
            verify = name == "predictor"
            rows[f"Predictor.detect (verify={verify})"] = PredictorRow(Predictor(flip_test=False, verify=verify))
        else:
            raise SystemExit(
                f"unknown detector row {name!r} (want {', '.join(DEFAULT_ROWS)}, blazeface@X, blazeface#N, "
                "predictor or predictor_noverify)"
            )
    return rows


class PredictorRow(FaceDetector):
    """`Predictor.detect` as a benchmark row: landmark boxes in photo pixels, the verifier included."""

    def __init__(self, predictor):
        self.predictor = predictor

    def detect(self, image):
        return self.predictor.detect(image)[0]

    def to_landmark_box(self, boxes):
        return np.asarray(boxes, np.float32).reshape(-1, 4)  # already landmark boxes


class LazyImages:
    """The crops as a sequence read on access (2,012 crops would take 0.6 GB in memory)."""

    def __init__(self, samples):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return read_image(self.samples[i].image_path)


def calibrate(samples) -> dict:
    """Fits every BlazeFace variant's box calibration on the crops; writes `CALIBRATION_FILE`."""
    stored = {}
    for name in ("short", "full"):
        detector = BlazeFaceDetector(name)
        detector.box_scale, detector.box_shift = 1.0, (0.0, 0.0)
        result = detector.calibrate(LazyImages(samples), [s.landmarks for s in samples])
        stored[name] = {**result, "data": f"{len(samples)} 300W training crops (shared/data/300w)"}
        print(name, result)
    with open(CALIBRATION_FILE, "w") as f:
        json.dump(stored, f, indent=1)
        f.write("\n")
    return stored


def run(samples, every: int, seed: int = 0, names=DEFAULT_ROWS) -> dict:
    dets = detectors(names)
    stats = {v: {d: {"faces": 0, "found": 0, "false": 0, "images": 0, "seconds": 0.0} for d in dets} for v in VARIANTS}
    stats["noise"] = {d: {"faces": 0, "found": 0, "false": 0, "images": 0, "seconds": 0.0} for d in dets}
    pool = [(s.image_path, s.landmarks) for s in samples]
    for i, sample in enumerate(samples):
        crop = read_image(sample.image_path)
        names = VARIANTS if i % every == 0 else ("original",)
        for name in names:
            rng = np.random.default_rng([seed, i, VARIANTS.index(name)])
            others = []
            if name == "crowd":
                picks = rng.choice(len(pool), 3, replace=False)
                others = [(read_image(pool[k][0]), pool[k][1]) for k in picks]
            image, truths = make_variant(name, crop, sample.landmarks, rng, others)
            for dname, det in dets.items():
                start = time.perf_counter()
                found, false = score_detector(det, image, truths)
                row = stats[name][dname]
                row["seconds"] += time.perf_counter() - start
                row["faces"] += len(truths)
                row["found"] += found
                row["false"] += false
                row["images"] += 1
        if i % every == 0 and i % (every * 8) == 0:  # pure noise and a blank frame: no face anywhere
            rng = np.random.default_rng([seed, i, 99])
            for image in (rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), background(rng, 480, 640)):
                for dname, det in dets.items():
                    row = stats["noise"][dname]
                    start = time.perf_counter()
                    row["false"] += score_detector(det, image, [])[1]
                    row["seconds"] += time.perf_counter() - start
                    row["images"] += 1
        if (i + 1) % 200 == 0:
            print(f"{i + 1}/{len(samples)} faces", file=sys.stderr, flush=True)
    for rows in stats.values():
        for row in rows.values():
            row["recall"] = row["found"] / row["faces"] if row["faces"] else None
            row["missed"] = row["faces"] - row["found"]
            row["ms_per_image"] = 1e3 * row.pop("seconds") / max(1, row["images"])
    return stats


def table(stats: dict) -> str:
    names = list(next(iter(stats.values())))
    head = "| variant | faces | " + " | ".join(f"{n} recall (missed) / false | {n} ms" for n in names) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(names))]
    for variant, rows in stats.items():
        cells = []
        for n in names:
            r = rows[n]
            recall = f"{100 * r['recall']:.1f} % ({r['missed']})" if r["recall"] is not None else "-"
            cells += [f"{recall} / {r['false']}", f"{r['ms_per_image']:.1f}"]
        faces = next(iter(rows.values()))["faces"] or f"{next(iter(rows.values()))['images']} images"
        lines.append(f"| {variant} | {faces} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--every", type=int, default=10, help="make the harder variants of every N-th face")
    parser.add_argument("--limit", type=int, default=0, help="first N faces only (0: all)")
    parser.add_argument("--calibrate", action="store_true", help="fit and store the BlazeFace box calibrations")
    parser.add_argument("--detectors", nargs="+", default=list(DEFAULT_ROWS),
                        help="rows: blazeface, blazeface_short, blazeface_full, dlib, blazeface@X (full_below=X), blazeface#N (max_faces=N), "
                             "predictor / predictor_noverify (Predictor.detect with / without the landmark verifier)")
    parser.add_argument("--json", default="results/detection.json")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    if not os.path.isdir(args.data):
        sys.exit(f"{args.data}: 300W training faces not found (see shared/data/300w/README.md)")
    samples = read_300w(args.data)
    samples = samples[: args.limit] if args.limit else samples
    if args.calibrate:
        calibrate(samples)
        return
    stats = run(samples, args.every, names=args.detectors)
    print(table(stats))
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"faces": len(samples), "every": args.every, "iou_match": 0.4, "variants": stats}, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
