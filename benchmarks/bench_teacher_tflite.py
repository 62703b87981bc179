"""Output-KD distillation on the CPU: the teacher in Keras vs TFLite fp32, side by side.

Output-KD steps on the CPU are mostly the teacher's forward pass. Two
measurements, same weights, ``--threads`` threads (oneDNN on unless
TF_ENABLE_ONEDNN_OPTS says otherwise):

* the teacher's forward pass on one random batch: Keras vs `TFLiteTeacher`
  (median seconds per batch, ratio, the TFLite heatmaps' largest difference
  from Keras's relative to their range);
* with ``--steps N`` also whole training steps through `Distiller.fit`, the
  lite student on synthetic faces at the teacher's 2x size: the Keras teacher in
  the step (``--teacher_runtime keras``) vs the TFLite teacher in the input
  pipeline (``--teacher_runtime tflite``, `with_teacher_heatmaps`); median
  seconds per step after the first (compilation) steps.

    python benchmarks/bench_teacher_tflite.py --steps 30 --json results/bench_teacher_tflite.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from distillation import Distiller, TFLiteTeacher, with_teacher_heatmaps  # noqa: E402
from mobilefan_tf.models import build_model, final_heatmaps  # noqa: E402

TEACHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "results", "ablation_models", "teacher_default_stage4.keras")


class _StepTimes(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times, self._start = [], None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def fit_seconds_per_step(teacher: keras.Model, runner: TFLiteTeacher | None, batch: int, steps: int) -> float:
    """Median seconds per `fit` step of output KD into a fresh lite student (synthetic faces)."""
    from mobilefan_tf.data import AugmentConfig, FaceSample, build_dataset, synthetic_faces

    keras.utils.set_random_seed(0)
    student = build_model("mobilefan_lite", num_keypoints=teacher.num_keypoints)
    size = int(teacher.input_size)
    images, landmarks = synthetic_faces(4 * batch, image_size=size, seed=0)
    faces = [FaceSample(f"f{i}", None, im, lm) for i, (im, lm) in enumerate(zip(images, landmarks, strict=True))]
    ds = build_dataset(faces, input_size=student.input_size, batch_size=batch, augment=AugmentConfig(), seed=0,
                       repeat=True, cache=True, teacher_input_size=size, with_label_weight=True)
    if runner is not None:
        ds = with_teacher_heatmaps(ds, runner)
    distiller = Distiller(student, teacher)
    distiller.compile(keras.optimizers.Adam(1e-3), kd_weight=1.0, jit_compile=False)
    timer = _StepTimes()
    distiller.fit(ds, epochs=1, steps_per_epoch=steps + 3, callbacks=[timer], verbose=0)
    return float(np.median(timer.times[3:]))  # the first steps trace and compile


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
    parser.add_argument("--steps", type=int, default=0, help="also time this many output-KD fit steps each way")
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
    lite_fn = TFLiteTeacher(teacher, args.batch, num_threads=args.threads)
    reference = keras_fn(x).numpy()
    diff = float(np.abs(lite_fn(x) - reference).max() / np.abs(reference).max())
    k = median_seconds(lambda images: keras_fn(images).numpy(), x, args.runs)
    t = median_seconds(lite_fn, x, args.runs)
    result = {
        "teacher": os.path.basename(args.teacher), "batch": args.batch, "threads": args.threads, "runs": args.runs,
        "keras_s_per_batch": k, "tflite_fp32_s_per_batch": t, "keras_over_tflite": k / t, "max_rel_diff": diff,
        "cpu_avx512": "avx512f" in open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else None,
    }  # fmt: skip
    print(f"| batch {args.batch}, {args.threads} threads | Keras | TFLite fp32 | ratio |")
    print("|---|---|---|---|")
    print(f"| teacher forward, s / batch | {k:.3f} | {t:.3f} | {k / t:.2f}x (max difference {diff:.1e} of the range) |")
    if args.steps:
        ks = fit_seconds_per_step(teacher, None, args.batch, args.steps)
        ts = fit_seconds_per_step(teacher, lite_fn, args.batch, args.steps)
        result.update(steps=args.steps, keras_teacher_s_per_step=ks, tflite_teacher_s_per_step=ts,
                      step_keras_over_tflite=ks / ts)
        print(f"| output-KD fit step, lite student, s / step | {ks:.3f} | {ts:.3f} | {ks / ts:.2f}x |")
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
