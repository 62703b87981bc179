"""Training step time of the heatmap models (Keras, TensorFlow backend, this machine).

One `train_on_batch` (Adam + MSE, as `training.compile_heatmap_model`) on random
images and heatmaps; the median of ``--steps`` timed steps after two warm-up
steps. Prints a table, then the rows as JSON. The GPU numbers in the model card
come from the former `experiments/jax_train.py`'s own logs (``results/logs/gpu/*.csv``,
column ``seconds``), not from this script.

    python benchmarks/bench_train_step.py                          # mobilefan at 256, batch 16
    python benchmarks/bench_train_step.py --presets mobilefan,mobilefan_lite --steps 10
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

flags.DEFINE_list("presets", ["mobilefan"], "Model presets.")
flags.DEFINE_integer("batch_size", 16, "Images per step.")
flags.DEFINE_integer("steps", 5, "Timed steps (after two warm-up steps).")
FLAGS = flags.FLAGS


def time_steps(preset: str, batch_size: int, steps: int) -> dict:
    import keras

    from mobilefan_tf.models import build_model
    from mobilefan_tf.training import TrainConfig, compile_heatmap_model

    model = build_model(preset, spec="300w")
    compile_heatmap_model(model, TrainConfig(batch_size=batch_size), "300w", steps_per_epoch=100)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch_size, model.input_size, model.input_size, 3)).astype("float32")
    hm = rng.uniform(0, 1, (batch_size, model.heatmap_size, model.heatmap_size, model.num_keypoints))
    y = [hm.astype("float32")] * len(model.outputs) if len(model.outputs) > 1 else hm.astype("float32")
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        model.train_on_batch(x, y)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    keras.backend.clear_session()
    median = float(np.median(times))
    return {"preset": preset, "input_size": model.input_size, "batch_size": batch_size,
            "median_s_per_step": round(median, 3), "images_per_s": round(batch_size / median, 1)}


def main(argv):
    del argv
    rows = [time_steps(p, FLAGS.batch_size, FLAGS.steps) for p in FLAGS.presets]
    print(f"{'preset':<16}{'input':>6}{'batch':>6}{'s/step':>9}{'img/s':>8}")
    for r in rows:
        print(f"{r['preset']:<16}{r['input_size']:>6}{r['batch_size']:>6}{r['median_s_per_step']:>9.3f}"
              f"{r['images_per_s']:>8.1f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    app.run(main)
