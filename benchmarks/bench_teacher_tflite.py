"""A distillation teacher's forward pass (heatmaps, one batch): Keras vs TFLite fp32, side by side.

Output-KD steps on the CPU are mostly the teacher's forward pass, so this
measures what running the teacher through TFLite (XNNPACK) instead of Keras
would save. Both run the same weights on the same random batch, at
``--threads`` threads (oneDNN on unless TF_ENABLE_ONEDNN_OPTS says otherwise);
the report gives the median seconds per batch of each, their ratio, and the
TFLite heatmaps' largest difference from Keras's (relative to their range).

    python benchmarks/bench_teacher_tflite.py --json results/bench_teacher_tflite.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mobilefan_tf.export import _DeconvAsDepthToSpace  # noqa: E402
from mobilefan_tf.models import final_heatmaps  # noqa: E402

TEACHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "results", "ablation_models", "teacher_default_stage4.keras")


def tflite_heatmaps(teacher: keras.Model, batch: int, threads: int):
    """A fixed-batch TFLite fp32 interpreter of the teacher's final heatmaps, as a function of a batch."""
    from ai_edge_litert.interpreter import Interpreter

    size = int(teacher.input_size)

    @tf.function(input_signature=[tf.TensorSpec([batch, size, size, 3], tf.float32, name="images")])
    def serve(images):
        return {"heatmaps": final_heatmaps(teacher(images, training=False))}

    tmp = tempfile.mkdtemp(prefix="teacher_tflite_")
    try:
        archive = keras.export.ExportArchive()
        archive.track(teacher)
        with _DeconvAsDepthToSpace(teacher):
            archive.add_endpoint("serving_default", serve)
        archive.write_out(tmp, verbose=False)
        flatbuffer = tf.lite.TFLiteConverter.from_saved_model(tmp).convert()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    interpreter = Interpreter(model_content=flatbuffer, num_threads=threads)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]

    def run(images):
        interpreter.set_tensor(inp, images)
        interpreter.invoke()
        return interpreter.get_tensor(out)

    return run


def median_seconds(fn, x, runs: int) -> float:
    fn(x)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=TEACHER, help="the teacher .keras (default: the shipped default's stage 4)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    if not os.path.isfile(args.teacher):
        sys.exit(f"{args.teacher}: teacher .keras not found")
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    teacher = keras.saving.load_model(args.teacher, compile=False)
    size = int(teacher.input_size)
    x = np.random.default_rng(0).uniform(0, 255, (args.batch, size, size, 3)).astype(np.float32)
    keras_fn = tf.function(lambda images: final_heatmaps(teacher(images, training=False)))
    lite_fn = tflite_heatmaps(teacher, args.batch, args.threads)
    reference = keras_fn(x).numpy()
    diff = float(np.abs(lite_fn(x) - reference).max() / np.abs(reference).max())
    k = median_seconds(lambda images: keras_fn(images).numpy(), x, args.runs)
    t = median_seconds(lite_fn, x, args.runs)
    result = {
        "teacher": os.path.basename(args.teacher), "batch": args.batch, "threads": args.threads, "runs": args.runs,
        "keras_s_per_batch": k, "tflite_fp32_s_per_batch": t, "keras_over_tflite": k / t, "max_rel_diff": diff,
        "cpu_avx512": "avx512f" in open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else None,
    }  # fmt: skip
    print(f"| teacher forward, batch {args.batch}, {args.threads} threads | s / batch |")
    print("|---|---|")
    print(f"| Keras | {k:.3f} |")
    print(f"| TFLite fp32 | {t:.3f} ({k / t:.2f}x faster; max difference {diff:.1e} of the range) |")
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
