"""Memory and step time of one distillation step vs. FSD pooling and FSD form.

FSD forms: ``gram`` (the loss from C x C Gram matrices, no N x N matrix;
what `feature_similarity_per_item` uses when channels are fewer than
positions) and ``matrices`` (the N x N similarity matrices built, forced).

Step time is the fastest of ``--steps`` timed steps (least disturbed by other
processes) and the median CPU time of all threads per step. Each
configuration runs in a fresh subprocess so its peak memory is its own:
peak RSS growth over the step (CPU; ``ru_maxrss``) or TensorFlow's peak GPU
allocation, plus the analytic size of the FSD similarity matrices (student +
teacher, float32, all stages). Prints a table, then the rows as JSON.

    python benchmarks/bench_fsd.py                       # paper preset, batch 4
    python benchmarks/bench_fsd.py --student mobilefan_lite --teacher hourglass_lite
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root: distillation/

flags.DEFINE_string("student", "mobilefan", "Student preset.")
flags.DEFINE_string("teacher", "resnet50_deconv", "Teacher preset (same input size as the student).")
flags.DEFINE_integer("batch_size", 4, "Images per step.")
flags.DEFINE_integer("steps", 3, "Timed steps (after one warm-up step).")
flags.DEFINE_list("pools", ["off", "none", "2", "4"], "FSD settings: off (fs_weight 0), none (no pooling), or a pool size.")
flags.DEFINE_list("forms", ["gram", "matrices"], "FSD forms to compare (see the module docstring).")
flags.DEFINE_string("one", None, "Internal: run one setting in this process and print its JSON row.")
flags.DEFINE_string("json_out", None, "Also write the rows to this JSON file.")
FLAGS = flags.FLAGS


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(setting: str) -> dict:
    """Builds student + teacher, runs warm-up and timed `train_on_batch` steps."""
    import keras
    import numpy as np
    import tensorflow as tf

    from distillation import Distiller, losses
    from mobilefan_tf.models import build_model

    setting, _, form = setting.partition(":")
    if form:
        losses._gram_form_is_cheaper = lambda n, cs, ct: form == "gram"
    student, teacher = build_model(FLAGS.student), build_model(FLAGS.teacher)
    pool = None if setting in ("off", "none") else int(setting)
    d = Distiller(student, teacher)
    d.compile(keras.optimizers.Adam(1e-4), fs_weight=0.0 if setting == "off" else 0.01, fs_pool_size=pool)
    s, hm = student.input_size, student.heatmap_size
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (FLAGS.batch_size, s, s, 3)).astype("float32")
    y = rng.uniform(0, 1, (FLAGS.batch_size, hm, hm, student.num_keypoints)).astype("float32")
    gpu = bool(tf.config.list_physical_devices("GPU"))
    base = rss_peak_mb()
    d.train_on_batch(x, y)  # trace + first step
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    times, cpu = [], []
    for _ in range(FLAGS.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        d.train_on_batch(x, y)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    matrix_bytes = 0
    if setting != "off" and form != "gram":
        for name, t in student.feature_extractor.output.items():
            if name != "heatmaps":
                n = (t.shape[1] // (pool or 1)) * (t.shape[2] // (pool or 1))
                matrix_bytes += 2 * FLAGS.batch_size * n * n * 4  # student + teacher, float32
    row = {
        "fsd": setting + (f" {form}" if form else ""),
        "step_ms": 1000 * float(np.min(times)),  # min: least disturbed by other processes
        "cpu_ms": 1000 * float(np.median(cpu)),  # CPU time of all threads (CPU runs)
        "matrices_mb": matrix_bytes / 2**20,
        "peak_rss_growth_mb": rss_peak_mb() - base,
        "device": "GPU" if gpu else "CPU",
    }
    if gpu:
        row["gpu_peak_mb"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return row


def main(_):
    if FLAGS.one:
        print("ROW" + json.dumps(measure(FLAGS.one)), flush=True)
        return
    rows = []
    settings = [p if p == "off" else f"{p}:{form}" for p in FLAGS.pools for form in (["-"] if p == "off" else FLAGS.forms)]
    for setting in settings:
        argv = [sys.executable, __file__, f"--one={setting}", f"--student={FLAGS.student}",
                f"--teacher={FLAGS.teacher}", f"--batch_size={FLAGS.batch_size}", f"--steps={FLAGS.steps}"]
        out = subprocess.run(argv, capture_output=True, text=True)
        lines = [x for x in out.stdout.splitlines() if x.startswith("ROW")]
        if out.returncode or not lines:
            print(f"{setting}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(lines[0][3:]))
    print(f"{FLAGS.student} <- {FLAGS.teacher}, batch {FLAGS.batch_size}")
    print(f"{'FSD':>14} {'step ms':>9} {'CPU ms':>9} {'matrices MB':>12} {'peak RSS +MB':>13}")
    for r in rows:
        print(
            f"{r['fsd']:>14} {r['step_ms']:>9.0f} {r['cpu_ms']:>9.0f} {r['matrices_mb']:>12.1f} "
            f"{r['peak_rss_growth_mb']:>13.0f}"
        )
    print(json.dumps(rows, indent=1))
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    app.run(main)
