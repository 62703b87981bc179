"""Distillation on the real pair: gradient balance of each term, and the step's cost.

Teacher: the shipped default (``mobilefan_300w``, 256 px). Student: a fresh
``mobilefan_lite`` (128 px, seed 0) and, for comparison, the shipped lite
model (a trained student). Real 300W training faces through the distillation
pipeline (one warp, two sizes). For each term: the norm of its unweighted
gradient w.r.t. the student's weights, the ratio to the heatmap loss's, and
the weight that would make it ``--ratio`` x the heatmap pull
(`distillation.balance`). Then the median training-step time of the student
alone and of each distillation variant, measured in the same run (machines
differ between sessions: read the ratios).

    python benchmarks/bench_distill.py                       # ~5 min on 2 cores
    python benchmarks/bench_distill.py --batches 2 --steps 3 --json results/bench_distill.json
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

flags.DEFINE_integer("batches", 4, "Batches for the gradient norms (median over them).")
flags.DEFINE_integer("steps", 5, "Timed training steps per variant (after two warm-up steps).")
flags.DEFINE_integer("batch_size", 16, "Images per step.")
flags.DEFINE_float("ratio", 0.5, "Target gradient ratio for the suggested weights.")
flags.DEFINE_string("json", None, "Also write the results here.")
FLAGS = flags.FLAGS

ALL_ON = {"fa_weight": 1.0, "fs_weight": 1.0, "kd_weight": 1.0}
VARIANTS = {
    "student alone": None,
    "+ KD": {"kd_weight": 1.0},
    "+ FAD": {"fa_weight": 0.05},
    "+ FSD": {"fs_weight": 1e-3},
    "+ FAD + FSD + KD": {"fa_weight": 0.05, "fs_weight": 1e-3, "kd_weight": 1.0},
}


def real_batches(student_size: int, teacher_size: int, n: int, batch_size: int):
    from mobilefan_tf.data import AugmentConfig, build_dataset, read_300w

    data = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data", "300w")
    if not os.path.isdir(data):
        raise SystemExit(f"300W folder not found: {data}")
    faces = read_300w(data, index_base=0)[: n * batch_size]
    ds = build_dataset(faces, augment=AugmentConfig(), input_size=student_size, teacher_input_size=teacher_size,
                       batch_size=batch_size, seed=0, with_label_weight=True)
    return list(ds.take(n))


def gradient_rows(teacher, batches) -> list[dict]:
    import keras

    from distillation import Distiller
    from distillation.balance import balanced_weights, term_gradient_norms
    from mobilefan_tf.models import build_model

    rows = []
    shipped_lite = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "mobilefan_tf", "assets", "mobilefan_lite_300w.keras")
    for label in ("fresh lite student (init)", "shipped lite student (trained)"):
        keras.utils.set_random_seed(0)
        student = build_model("mobilefan_lite", spec="300w")
        if "shipped" in label:
            student.set_weights(keras.saving.load_model(shipped_lite, compile=False).get_weights())
        d = Distiller(student, teacher)
        d.compile("adam", **ALL_ON, jit_compile=False)
        norms = [term_gradient_norms(d, x, y, w) for x, y, w in batches]
        terms = {k: float(np.median([n[k] for n in norms])) for k in norms[0]}
        values = [d.compute_losses(x, y, w) for x, y, w in batches]
        vals = {k: float(np.median([float(v[k]) for v in values])) for k in terms}
        rows.append({"student": label, "grad_norm": terms, "value": vals,
                     "ratio_to_heatmap": {k: terms[k] / terms["heatmap_loss"] for k in terms},
                     "weight_for_ratio": balanced_weights(norms, FLAGS.ratio)})
    return rows


def step_rows(teacher, batches) -> list[dict]:
    import keras

    from distillation import Distiller
    from mobilefan_tf.models import build_model
    from mobilefan_tf.training import TrainConfig, compile_heatmap_model

    rows = []
    for name, weights in VARIANTS.items():
        keras.utils.set_random_seed(0)
        student = build_model("mobilefan_lite", spec="300w")
        if weights is None:
            compile_heatmap_model(student, TrainConfig(), "300w", steps_per_epoch=100)
            step = lambda x, y, w, m=student: m.train_on_batch(x["student"], y)  # noqa: E731
        else:
            d = Distiller(student, teacher)
            d.compile(keras.optimizers.Adam(1e-3), **weights, jit_compile=False)
            step = lambda x, y, w, m=d: m.train_on_batch(x, y, sample_weight=w)  # noqa: E731
        times = []
        for i in range(FLAGS.steps + 2):
            x, y, w = batches[i % len(batches)]
            t0 = time.perf_counter()
            step(x, y, w)
            if i >= 2:
                times.append(time.perf_counter() - t0)
        rows.append({"variant": name, "weights": weights, "median_s_per_step": round(float(np.median(times)), 3)})
    base = rows[0]["median_s_per_step"]
    for r in rows:
        r["x_student_alone"] = round(r["median_s_per_step"] / base, 2)
    return rows


def main(argv):
    del argv
    from distillation import load_teacher

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    teacher = load_teacher(os.path.join(root, "mobilefan_tf", "assets", "mobilefan_300w.keras"))
    batches = real_batches(128, teacher.input_size, max(FLAGS.batches, 2), FLAGS.batch_size)
    grads = gradient_rows(teacher, batches[: FLAGS.batches])
    print(f"{'student':<32}{'term':<14}{'value':>11}{'|grad|':>11}{'/heatmap':>10}{'w for ' + str(FLAGS.ratio):>12}")
    for r in grads:
        for term in r["grad_norm"]:
            w = r["weight_for_ratio"].get(term.replace("_loss", "_weight"), float("nan"))
            print(f"{r['student']:<32}{term:<14}{r['value'][term]:>11.4g}{r['grad_norm'][term]:>11.4g}"
                  f"{r['ratio_to_heatmap'][term]:>10.3g}{w:>12.3g}")
    steps = step_rows(teacher, batches)
    print(f"\n{'variant (lite student, 256 px teacher)':<40}{'s/step':>8}{'x alone':>9}")
    for r in steps:
        print(f"{r['variant']:<40}{r['median_s_per_step']:>8.3f}{r['x_student_alone']:>9.2f}")
    result = {"gradient_balance": grads, "step_time": steps, "batch_size": FLAGS.batch_size}
    print(json.dumps(result))
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    app.run(main)
