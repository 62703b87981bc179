"""One distillation step gives the same losses and the same update on the TensorFlow and JAX backends."""

import json
import os
import subprocess
import sys

import distill_step_script as step  # tests/ is on sys.path (pytest prepend mode)
import keras
import numpy as np
import pytest

from mobilefan_tf.heatmaps import encode_heatmaps

pytest.importorskip("jax", reason="the JAX backend needs jax (pip install '.[jax]')")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("distill_backends")
    keras.utils.set_random_seed(4)
    student, teacher = step.build_pair()
    teacher.get_layer("heatmaps").bias.assign(np.full(68, 0.2, "float32"))  # untrained heads output 0
    student.save_weights(str(path / "student.weights.h5"))
    teacher.save_weights(str(path / "teacher.weights.h5"))
    rng = np.random.default_rng(4)
    big = rng.uniform(0, 255, (4, 2 * step.S, 2 * step.S, 3)).astype("float32")
    small = big.reshape(4, step.S, 2, step.S, 2, 3).mean(axis=(2, 4))
    heatmaps = encode_heatmaps(rng.uniform(2, 13, (4, 68, 2)), step.S // 4).numpy()
    np.savez(path / "batch.npz", student=small, teacher=big, heatmaps=heatmaps, weight=np.array([1, 1, 1, 0], "f4"))
    return path


@pytest.fixture(scope="module")
def jax_result(workdir):
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, os.path.join(root, "tests", "distill_step_script.py"), str(workdir)],
                          env=env, capture_output=True, text=True, timeout=600, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((workdir / "jax.json").read_text()), np.load(workdir / "jax_update.npy")


def relative_difference(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.slow
def test_same_losses_and_update_on_tensorflow_and_jax(workdir, jax_result):
    jax_info, jax_update = jax_result
    tf_info, tf_update = step.run(str(workdir))
    assert tf_info["backend"] == "tensorflow" and jax_info["backend"] == "jax"
    for name, value in tf_info["terms"].items():
        np.testing.assert_allclose(jax_info["terms"][name], value, rtol=2e-4, atol=1e-7, err_msg=name)
    assert tf_info["terms"]["kd_loss"] > 0 and tf_info["terms"]["fs_loss"] > 0
    for name in ("loss", "heatmap_loss", "fa_loss", "fs_loss", "kd_loss"):
        np.testing.assert_allclose(jax_info["logs"][name], tf_info["logs"][name], rtol=2e-4, err_msg=name)
    # The update itself (every student weight's change in the step) agrees to float noise ...
    assert np.linalg.norm(tf_update) > 0
    assert relative_difference(jax_update, tf_update) < 1e-2
    # ... while a deliberate 2x gradient error is 100x outside that tolerance.
    _, doubled = step.run(str(workdir), grad_scale=2.0)
    assert relative_difference(jax_update, doubled) > 0.4
