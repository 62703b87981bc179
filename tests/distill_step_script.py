"""One cross-resolution distillation step on the current Keras backend (run by test_distill_backends.py).

    KERAS_BACKEND=jax python tests/distill_step_script.py WORKDIR

Reads WORKDIR/student.weights.h5, teacher.weights.h5 and batch.npz, computes
every loss term, takes one SGD step through `train_on_batch`, and writes
WORKDIR/<backend>.json (the terms before the step and the step's logs) and
WORKDIR/<backend>_update.npy (the student's weight change, flattened).
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

from distillation import Distiller  # noqa: E402
from mobilefan_tf.models import build_model  # noqa: E402

S = 64
WEIGHTS = {"fa_weight": 1e-4, "fs_weight": 1e-2, "kd_weight": 1.0}  # about balanced (MODEL_CARD.md)
LEARNING_RATE = 0.05


def build_pair():
    student = build_model("mobilefan", input_size=S, width=0.35, deconv_filters=16)
    teacher = build_model("mobilefan", input_size=2 * S, width=0.35, deconv_filters=16)
    return student, teacher


def run(workdir: str, grad_scale: float = 1.0) -> tuple[dict, np.ndarray]:
    student, teacher = build_pair()
    student.load_weights(os.path.join(workdir, "student.weights.h5"))
    teacher.load_weights(os.path.join(workdir, "teacher.weights.h5"))
    batch = np.load(os.path.join(workdir, "batch.npz"))
    x = {"student": batch["student"], "teacher": batch["teacher"]}
    d = Distiller(student, teacher)
    d.compile(keras.optimizers.SGD(grad_scale * LEARNING_RATE), **WEIGHTS, metrics=[], jit_compile=False)
    for adaptor in d.adaptors.values():  # adaptors are created fresh: make them identical on every backend
        conv = adaptor.layers[0]
        shape = tuple(conv.kernel.shape)
        conv.kernel.assign(np.sin(np.arange(np.prod(shape), dtype="float32")).reshape(shape) * 0.3)
    terms = {k: float(keras.ops.convert_to_numpy(v)) for k, v in
             d.compute_losses(x, batch["heatmaps"], batch["weight"], training=False).items() if k != "pred"}
    before = np.concatenate([keras.ops.convert_to_numpy(v).ravel() for v in student.trainable_variables])
    logs = d.train_on_batch(x, batch["heatmaps"], sample_weight=batch["weight"], return_dict=True)
    after = np.concatenate([keras.ops.convert_to_numpy(v).ravel() for v in student.trainable_variables])
    info = {"backend": keras.backend.backend(), "terms": terms, "logs": {k: float(v) for k, v in logs.items()}}
    return info, (after.astype(np.float64) - before)


if __name__ == "__main__":
    info, update = run(sys.argv[1])
    np.save(os.path.join(sys.argv[1], f"{info['backend']}_update.npy"), update)
    with open(os.path.join(sys.argv[1], f"{info['backend']}.json"), "w") as f:
        json.dump(info, f)
