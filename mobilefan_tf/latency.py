"""Latency / size benchmark of a model's deployable variants (`mobilefan benchmark`, benchmarks/bench_latency.py).

Times the Keras model, the SavedModel and the TFLite fp32 / fp16 / int8
files on batch-1 faces, end to end from a photo, and dlib's shape predictor
for comparison; the MAC counts come from `mobilefan_tf.macs`.
"""

from __future__ import annotations

import os

import numpy as np

from mobilefan_tf.macs import count_macs

VARIANTS = ("keras", "saved_model", "tflite", "tflite_fp16", "tflite_int8")


def _time_calls(fn, runs: int) -> dict:
    """First call, then `runs` timed calls after 3 warm-ups: ms statistics."""
    import time

    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times = np.asarray(times) * 1e3
    return {"first_ms": 1e3 * first, "median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90))}


def _dir_size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _variant_runner(model, variant: str, workdir: str, threads: int):
    """(callable on one [1, S, S, 3] face, size of the artifact in bytes)."""
    import tensorflow as tf

    from mobilefan_tf.export import export_saved_model, export_tflite
    from mobilefan_tf.heatmaps import decode_to_input
    from mobilefan_tf.predictor import SavedModelRunner, TFLiteModel

    if variant == "keras":
        path = os.path.join(workdir, f"{model.name}.keras")
        if not os.path.exists(path):
            model.save(path)

        @tf.function(reduce_retracing=True)
        def run(x):
            out = model(x, training=False)
            return decode_to_input(out[-1] if isinstance(out, (list, tuple)) else out, model.input_size)

        return (lambda x: [t.numpy() for t in run(tf.constant(x))]), _dir_size(path)
    if variant == "saved_model":
        path = os.path.join(workdir, f"{model.name}_saved_model")
        if not os.path.exists(path):
            export_saved_model(model, path)
        runner = SavedModelRunner(path)
        return runner.predict_landmarks, _dir_size(path)
    quantize = {"tflite": "none", "tflite_fp16": "fp16", "tflite_int8": "int8"}[variant]
    path = os.path.join(workdir, f"{model.name}_{quantize}.tflite")
    if not os.path.exists(path):
        export_tflite(model, path, quantize=quantize)
    runner = TFLiteModel(path, num_threads=threads)
    return runner.predict_landmarks, _dir_size(path)


def _end_to_end_rows(model, workdir: str, runs: int) -> list[dict]:
    """Detection + crop + TFLite landmarks (without and with the flip test) on skimage's astronaut photo (512 x 512, one face)."""
    from skimage import data

    from mobilefan_tf.detector import default_detector
    from mobilefan_tf.predictor import Predictor, TFLiteModel

    photo = data.astronaut()
    detector = default_detector()
    rows = []
    det = _time_calls(lambda: detector.detect(photo), max(5, runs // 5))
    rows.append({"preset": "-", "variant": f"detector {type(detector).__name__} (512x512)", "threads": 1, **det})
    for quantize in ("none", "int8"):
        path = os.path.join(workdir, f"{model.name}_{quantize}.tflite")
        if not os.path.exists(path):
            continue
        for flip in (False, True):  # one pass, and the Predictor's default flip test (two passes)
            predictor = Predictor(TFLiteModel(path, num_threads=1), detector=detector, flip_test=flip)
            stats = _time_calls(lambda p=predictor: p.predict(photo), max(5, runs // 5))
            variant = f"end-to-end detect+tflite_{quantize}" + ("+flip" if flip else "")
            rows.append({"preset": model.name, "variant": variant, "threads": 1, **stats})
    return rows


def _dlib_rows(predictor_path: str | None, runs: int) -> list[dict]:
    """dlib's 68-point shape predictor on the astronaut's face, when dlib and a .dat file exist."""
    try:
        import dlib
    except ImportError:
        return []
    candidates = [predictor_path, os.environ.get("DLIB_SHAPE_PREDICTOR")]
    try:
        import face_recognition_models

        candidates.append(face_recognition_models.pose_predictor_model_location())
    except ImportError:
        pass
    path = next((c for c in candidates if c and os.path.isfile(c)), None)
    if path is None:
        return []
    from skimage import data

    photo = data.astronaut()
    shape_predictor = dlib.shape_predictor(path)
    rect = dlib.get_frontal_face_detector()(photo, 1)[0]
    stats = _time_calls(lambda: shape_predictor(photo, rect), runs)
    return [
        {
            "preset": "dlib",
            "variant": "shape_predictor_68 (ERT)",
            "threads": 1,
            "size_mb": _dir_size(path) / 1e6,
            **stats,
        }
    ]


def run_benchmark(
    presets=("mobilefan_lite", "mobilefan"),
    variants=VARIANTS,
    threads=(1, 2),
    runs: int = 50,
    model: str | None = None,
    dlib_predictor: str | None = None,
    end_to_end: bool = True,
    workdir: str | None = None,
) -> list[dict]:
    """Per-face latency of every (preset, variant, threads).

    TF variants (keras, saved_model) use TF's own thread pool (threads
    "tf"); TFLite runs with each of `threads`. Untrained weights are fine
    for timing.

    Returns:
        Rows: preset, variant, threads, first_ms (load excluded, first
        invoke), median_ms, p90_ms, size_mb, gmacs (per face),
        gmac_per_s (achieved at the median).
    """
    import tempfile

    import keras

    from mobilefan_tf.models import build_model

    workdir = workdir or tempfile.mkdtemp(prefix="mobilefan_bench_")
    rows = []
    models = [keras.saving.load_model(model, compile=False)] if model else [build_model(p) for p in presets]
    for net in models:
        macs = count_macs(net)
        face = np.random.default_rng(0).uniform(0, 255, (1, net.input_size, net.input_size, 3)).astype(np.float32)
        for variant in variants:
            for t in threads if variant.startswith("tflite") else ["tf"]:
                run, size = _variant_runner(net, variant, workdir, 1 if t == "tf" else t)
                stats = _time_calls(lambda r=run, x=face: r(x), runs)
                gmac_s = macs / 1e9 / (stats["median_ms"] / 1e3)
                rows.append(
                    {
                        "preset": net.name,
                        "variant": variant,
                        "threads": t,
                        **stats,
                        "size_mb": size / 1e6,
                        "gmacs": macs / 1e9,
                        "gmac_per_s": gmac_s,
                    }
                )
        if end_to_end:
            rows += _end_to_end_rows(net, workdir, runs)
    rows += _dlib_rows(dlib_predictor, runs)
    return rows


def format_table(rows: list[dict]) -> str:
    """Rows as a markdown table."""
    head = "| preset | variant | threads | first call ms | median ms | p90 ms | size MB | GMAC | GMAC/s |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:

        def f(key, fmt="{:.2f}", r=r):
            return fmt.format(r[key]) if r.get(key) is not None else "-"

        lines.append(
            f"| {r['preset']} | {r['variant']} | {r['threads']} | {f('first_ms', '{:.1f}')} | {f('median_ms')} | "
            f"{f('p90_ms')} | {f('size_mb')} | {f('gmacs', '{:.3f}')} | {f('gmac_per_s', '{:.1f}')} |"
        )
    return "\n".join(lines)
