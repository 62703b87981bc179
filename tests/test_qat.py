"""Quantisation-aware training (needs the ``qat`` extra: tf_keras + tensorflow-model-optimization).

The extra must live in its own venv (it cannot share the Keras 3 environment's
tensorflow-cpu safely); run these there, e.g.
``/work/venv-qat/bin/python -m pytest -q tests/test_qat.py`` (WORKSPACE.md).
Without the extra only the missing-extra message is checked.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_QAT = all(importlib.util.find_spec(m) is not None for m in ("tf_keras", "tensorflow_model_optimization"))
needs_qat = pytest.mark.skipif(
    not HAVE_QAT, reason="the 'qat' extra (tf_keras, tensorflow-model-optimization) is not installed in this venv"
)


@pytest.mark.skipif(HAVE_QAT, reason="the qat extra is installed")
def test_missing_extra_is_one_clear_line():
    from mobilefan_tf import qat

    with pytest.raises(ImportError, match=r"^QAT needs the 'qat' extra \(tf_keras, tensorflow-model-optimization\)"):
        qat.import_qat()


@needs_qat
def test_rebuild_parity_quantize_and_int8_export_match(tmp_path):
    """Rebuilt float model == Keras 3 model (1e-5); the int8 file computes what the QAT model trained."""
    from mobilefan_tf import qat
    from mobilefan_tf.data import synthetic_faces
    from mobilefan_tf.export import model_metadata
    from mobilefan_tf.heatmaps import decode_to_input
    from mobilefan_tf.models import build_model
    from mobilefan_tf.predictor import load_landmark_model

    model = build_model("mobilefan_lite", input_size=64, width=0.35, deconv_filters=16, num_keypoints=68, spec="300w")
    rebuilt = qat.rebuild_tf_keras(model)
    assert qat.check_parity(model, rebuilt) <= 1e-5
    rebuilt.get_layer("heatmaps").set_weights([w + 0.5 for w in rebuilt.get_layer("heatmaps").get_weights()])
    with pytest.raises(ValueError, match="differs from the Keras 3 model"):
        qat.check_parity(model, rebuilt)
    quantized = qat.quantize(qat.rebuild_tf_keras(model))
    assert any("quant" in layer.name for layer in quantized.layers)
    path = qat.export_qat_tflite(quantized, str(tmp_path / "q.tflite"), model_metadata(model))
    runner = load_landmark_model(path)
    images, _ = synthetic_faces(3, image_size=64, seed=0)
    images = images.astype(np.float32)
    got, _ = runner.predict_landmarks(images)
    want, _ = decode_to_input(quantized(images, training=False), 64)
    # int8 kernels vs fake-quant float emulation: within a small fraction of a heatmap pixel (4 px)
    assert np.median(np.abs(got - want.numpy())) < 0.5
    meta = json.loads(open(path + ".json").read())
    assert meta["quantize"] == "qat_int8" and meta["num_keypoints"] == 68
    from ai_edge_litert.interpreter import Interpreter

    kinds = {d["dtype"] for d in Interpreter(model_path=path).get_tensor_details()}
    assert np.int8 in kinds  # the network runs int8


@needs_qat
def test_clustering_shares_kernel_values_and_copies_back():
    from mobilefan_tf import qat
    from mobilefan_tf.models import build_model

    model = build_model("mobilefan_lite", input_size=64, width=0.35, deconv_filters=16, num_keypoints=68, spec="300w")
    depthwise = model.get_layer("block_3_depthwise").get_weights()[0]
    stripped = qat.strip_clustering(qat.cluster(qat.rebuild_tf_keras(model), clusters=8))
    qat.copy_back(stripped, model)
    for name in ("Conv1", "block_3_project", "feat2_deconv", "heatmaps"):
        assert len(np.unique(model.get_layer(name).get_weights()[0])) <= 8, name
    np.testing.assert_array_equal(model.get_layer("block_3_depthwise").get_weights()[0], depthwise)  # not clustered
    assert qat.check_parity(model, stripped) <= 1e-5  # the Keras 3 model now computes the clustered one


@needs_qat
@pytest.mark.slow
def test_qat_script_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.qat", "--smoke", f"--workdir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["parity_max_abs_diff"] <= 1e-5
    from mobilefan_tf.specs import W300

    for name in ("float", "ptq_int8", "qat_int8"):
        row = results["models"][name]
        assert np.isfinite(row["nme"]) and row["num_images"] == 6 and set(row["groups"]) == set(W300.groups)
    assert results["models"]["qat_int8"]["worst_group"] in W300.groups
    assert len(results["history"]["loss"]) == 1  # --smoke: one fine-tuning epoch
