"""End-to-end speed, photo -> landmarks, one thread, side by side with MediaPipe's pipeline.

Every row runs in the same process on the same photos (skimage's astronaut
scaled into a 640x480 and a 1920x1080 frame, landmark box ~90 / ~190 px, and
a 640x480 selfie whose face fills the frame's height), with
TFLite, OpenCV and TensorFlow each held to one thread, and reports the median
time per photo over `--runs` calls (after warm-up; the rows' calls
interleaved, so load from elsewhere hits every row alike) and its ratio to the
MediaPipe anchor of that photo size.

The anchor is MediaPipe's face pipeline as its graphs run it on a CPU:
BlazeFace short-range (letterbox to 128, SSD decode, weighted NMS) + the
468-point face mesh (`face_landmark.tflite`, a 192x192 crop rotated by the
eye line, 1.5x the detection box), both through ai-edge-litert from the files
of the `mediapipe` wheel (0.10.14; downloaded with pip into
~/.cache/mobilefan_tf on first use, or pass `--face_mesh`).

Usage:
    python benchmarks/bench_end_to_end.py --json results/end_to_end.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from mobilefan_tf.blazeface import BlazeFaceDetector, MultiRangeBlazeFace, _interpreter  # noqa: E402

CACHE = os.path.join(os.path.expanduser("~"), ".cache", "mobilefan_tf")
MESH_IN_WHEEL = "mediapipe/modules/face_landmark/face_landmark.tflite"
WHEEL = "mediapipe==0.10.14"


def face_mesh_path(given: str | None) -> str:
    """The face mesh model: `given`, the cached copy, or one extracted from the mediapipe wheel (pip download)."""
    if given:
        return given
    path = os.path.join(CACHE, "face_landmark.tflite")
    if os.path.isfile(path):
        return path
    os.makedirs(CACHE, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
             "--platform", "manylinux2014_x86_64", WHEEL, "-d", tmp, "-q"],
            check=True,
        )  # fmt: skip
        (wheel,) = [os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".whl")]
        with zipfile.ZipFile(wheel) as z, open(path, "wb") as out:
            out.write(z.read(MESH_IN_WHEEL))
    return path


class MediaPipePipeline:
    """BlazeFace short range + face mesh, as MediaPipe's CPU graphs chain them."""

    def __init__(self, mesh_path: str):
        self.detector = BlazeFaceDetector("short", num_threads=1)
        self.mesh = _interpreter(mesh_path, 1)
        self._in = self.mesh.get_input_details()[0]["index"]
        outs = sorted(self.mesh.get_output_details(), key=lambda d: -int(np.prod(d["shape"])))
        self._points, self._flag = outs[0]["index"], outs[1]["index"]

    def __call__(self, photo: np.ndarray) -> list[np.ndarray]:
        boxes, _ = self.detector.detect_scored(photo)
        faces = []
        for box, kp in zip(boxes, self.detector.last_keypoints, strict=True):
            # DetectionsToRects: rotation from right eye (0) to left eye (1); RectTransformation: 1.5x, square.
            angle = np.arctan2(kp[1, 1] - kp[0, 1], kp[1, 0] - kp[0, 0])
            centre = (box[:2] + box[2:]) / 2
            side = 1.5 * max(box[2] - box[0], box[3] - box[1])
            m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(np.degrees(angle)), 192 / side)
            m[:, 2] += 96 - centre  # box centre -> crop centre
            crop = cv2.warpAffine(photo, m, (192, 192), flags=cv2.INTER_LINEAR)
            self.mesh.set_tensor(self._in, crop[None].astype(np.float32) / 255.0)
            self.mesh.invoke()
            pts = self.mesh.get_tensor(self._points).reshape(468, 3)[:, :2]
            inv = cv2.invertAffineTransform(m)
            faces.append(pts @ inv[:, :2].T + inv[:, 2])
        return faces


def photos() -> dict[str, np.ndarray]:
    from skimage import data

    face = data.astronaut()
    out = {}
    for w, h in ((640, 480), (1920, 1080)):
        canvas = np.full((h, w, 3), 60, np.uint8)
        scaled = cv2.resize(face, (h, h), interpolation=cv2.INTER_AREA)
        x0 = (w - h) // 2
        canvas[:, x0 : x0 + h] = scaled
        out[f"{w}x{h}"] = canvas
    # A front-camera selfie: the face (rows 20-260, columns 140-380 of the photo) fills the
    # frame's height, its landmark box ~1/3 of the frame's width (the short-range model's case).
    selfie = np.full((480, 640, 3), 60, np.uint8)
    selfie[:, 80:560] = cv2.resize(face[20:260, 140:380], (480, 480), interpolation=cv2.INTER_LINEAR)
    out["640x480_selfie"] = selfie
    return out


def cpu_flags() -> list[str]:
    """The vector extensions that decide int8 speed here (timings differ between machines)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return []
    return [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f in flags]


def interleaved_timings(fns: list, photo, runs: list[int]) -> list[tuple[float, float]]:
    """(median, minimum) ms of each fn over its `runs` calls, after 3 warm-ups each.

    The calls are interleaved (round i times every fn once), so a burst of load
    from elsewhere on the machine slows every row alike instead of one row's
    whole window: the ratios between rows are what this benchmark is for.
    """
    for fn in fns:
        for _ in range(3):
            fn(photo)
    times = [[] for _ in fns]
    for i in range(max(runs)):
        for fn, n, t in zip(fns, runs, times, strict=True):
            if i < n:
                start = time.perf_counter()
                fn(photo)
                t.append(time.perf_counter() - start)
    return [(1e3 * float(np.median(t)), 1e3 * float(np.min(t))) for t in times]


def pipelines(mesh_path: str, keras_rows: bool):
    """(name, callable photo -> faces, what it is) rows, MediaPipe first."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from mobilefan_tf.default_model import ASSETS_DIR
    from mobilefan_tf.detector import DlibFaceDetector, make_detector
    from mobilefan_tf.predictor import Predictor, TFLiteModel, load_landmark_model

    lite = os.path.join(ASSETS_DIR, "mobilefan_lite_300w_int8.tflite")
    paper = os.path.join(ASSETS_DIR, "mobilefan_300w_int8.tflite")
    short, multi = make_detector("blazeface_short"), make_detector("blazeface")
    both = MultiRangeBlazeFace(full_below=0)
    rows = [
        ("mediapipe: blazeface_short + face_mesh", MediaPipePipeline(mesh_path), "anchor (468 points)"),
        ("lite: blazeface_short + lite int8", Predictor(TFLiteModel(lite), short, flip_test=False).predict, "lite pipeline"),
        ("lite: blazeface (default) + lite int8", Predictor(TFLiteModel(lite), multi, flip_test=False).predict, ""),
        ("default: Predictor(flip_test=False)", Predictor(flip_test=False).predict, "blazeface + paper int8"),
        ("default + flip test: Predictor()", Predictor().predict, "blazeface + paper int8, 2 passes"),
        ("default, one face: Predictor(flip_test=False, max_faces=1)", Predictor(flip_test=False, max_faces=1).predict,
         "full range only when the short range finds no face"),
        ("paper int8 + blazeface_short", Predictor(TFLiteModel(paper), short, flip_test=False).predict, ""),
        ("detector only: blazeface_short", short.detect, ""),
        ("detector only: blazeface (default)", multi.detect, "short range, + full range below 0.2 of the frame"),
        ("detector only: blazeface, both ranges always", both.detect, "full_below=0 (the former default)"),
        ("default, both ranges always", Predictor(flip_test=False, detector=both).predict, "paper int8, full_below=0"),
        ("detector only: blazeface_full", make_detector("blazeface_full").detect, ""),
    ]
    if keras_rows:
        keras_model = load_landmark_model(os.path.join(ASSETS_DIR, "mobilefan_300w.keras"))
        rows.append(("paper keras, compiled + blazeface", Predictor(keras_model, multi, flip_test=False).predict, "fp32"))
        try:
            dlib = DlibFaceDetector()
        except ImportError:
            dlib = None
        if dlib is not None:
            rows.append(("detector only: dlib HOG", dlib.detect, "the old default"))

            def before(photo, model=keras_model, det=dlib):  # the old Predictor: dlib + Model.predict per photo
                from mobilefan_tf.data import crop_face

                boxes = det.to_landmark_box(det.detect(photo))
                crops = [crop_face(photo, box=b, output_size=256)[0] for b in boxes]
                return model.predict_landmarks(np.stack(crops).astype(np.float32)) if crops else None

            rows.append(("before: dlib + paper keras Model.predict", before, "the old default path"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--face_mesh", help="MediaPipe face_landmark.tflite (default: from the mediapipe wheel)")
    parser.add_argument("--no_keras", action="store_true", help="skip the Keras / dlib rows")
    parser.add_argument("--json", default="results/end_to_end.json")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rows = pipelines(face_mesh_path(args.face_mesh), not args.no_keras)
    frames = photos()
    results = [{"pipeline": name, "note": note} for name, _, note in rows]
    runs = [args.runs if "before" not in name else max(5, args.runs // 5) for name, _, _ in rows]
    for size, photo in frames.items():
        for row, (name, fn, _), (median, least) in zip(
            results, rows, interleaved_timings([fn for _, fn, _ in rows], photo, runs), strict=True
        ):
            row[f"{size}_ms"], row[f"{size}_min_ms"] = median, least
            out = fn(photo)
            if isinstance(out, list) and not name.startswith("detector"):
                row[f"{size}_faces"] = len(out)
        print(f"{size}: " + ", ".join(f"{r['pipeline']} {r[f'{size}_ms']:.2f}" for r in results), file=sys.stderr)
    anchor = results[0]
    for row in results:
        for size in frames:
            row[f"{size}_vs_mediapipe"] = row[f"{size}_ms"] / anchor[f"{size}_ms"]
            row[f"{size}_min_vs_mediapipe"] = row[f"{size}_min_ms"] / anchor[f"{size}_min_ms"]
    head = "| pipeline | " + " | ".join(f"{s} median ms (min) | x MediaPipe (min)" for s in frames) + " | note |"
    lines = [head, "|" + "---|" * (2 + 2 * len(frames))]
    for row in results:
        cells = " | ".join(
            f"{row[f'{s}_ms']:.2f} ({row[f'{s}_min_ms']:.2f}) | {row[f'{s}_vs_mediapipe']:.2f} ({row[f'{s}_min_vs_mediapipe']:.2f})"
            for s in frames
        )
        lines.append(f"| {row['pipeline']} | {cells} | {row['note']} |")
    print("\n".join(lines))
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        meta = {"runs": args.runs, "threads": 1, "cpu": os.cpu_count(), "cpu_flags": cpu_flags(), "load_avg": os.getloadavg()}
        with open(args.json, "w") as f:
            json.dump({**meta, "rows": results}, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
