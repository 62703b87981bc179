"""Export parity: SavedModel and TFLite (float32, fp16, int8) against Keras.

A briefly trained model is shared by the module: an untrained model's
heatmaps are flat, so its argmax is noise and int8 parity means nothing.
"""

import io
import os
import subprocess

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mobilefan_tf.data import synthetic_faces
from mobilefan_tf.export import _DeconvAsDepthToSpace, export_saved_model, export_tflite
from mobilefan_tf.heatmaps import encode_heatmaps, input_to_heatmap
from mobilefan_tf.metrics import nme_per_image
from mobilefan_tf.models import build_model
from mobilefan_tf.predictor import SavedModelRunner, TFLiteModel, load_landmark_model

SIZE = 128


def _weighted_mse(y_true, y_pred):
    # Up-weights the peaks so a short run learns them instead of all-zero maps.
    return tf.reduce_mean((1.0 + 20.0 * y_true) * tf.square(y_true - y_pred))


@pytest.fixture(scope="module")
def trained():
    """mobilefan_lite (K=68) fitted 400 steps (~45 s) on 64 synthetic faces, and those faces."""
    keras.utils.set_random_seed(0)
    images, landmarks = synthetic_faces(64, image_size=SIZE, seed=0)
    targets = encode_heatmaps(input_to_heatmap(landmarks, 4.0), SIZE // 4, sigma=1.5)
    model = build_model("mobilefan_lite", num_keypoints=68)
    model.compile(keras.optimizers.Adam(3e-3), loss=_weighted_mse)
    model.fit(images.astype(np.float32), targets, batch_size=8, epochs=50, verbose=0)
    return model, images.astype(np.float32), landmarks


@pytest.fixture(scope="module")
def keras_reference(trained):
    model, images, landmarks = trained
    pred, scores = model.predict_landmarks(images[:16])
    return pred, scores


def _parity(pred, ref, gt):
    """Mean landmark distance (px) and |NME difference| (fraction) on the same faces."""
    diff = float(np.linalg.norm(pred - ref, axis=-1).mean())
    nme = abs(float(nme_per_image(pred, gt, "300w").mean() - nme_per_image(ref, gt, "300w").mean()))
    return diff, nme


def test_trained_model_is_peaky(trained, keras_reference):
    _, scores = keras_reference
    assert float(np.median(scores)) > 0.05


@pytest.mark.parametrize("quantize,max_px", [("none", 0.05), ("fp16", 0.2), ("int8", 1.0)])
def test_tflite_parity(trained, keras_reference, tmp_path, quantize, max_px):
    model, images, landmarks = trained
    path = export_tflite(model, str(tmp_path / f"m_{quantize}.tflite"), quantize, representative_images=images[16:48])
    runner = TFLiteModel(path, num_threads=1)
    assert runner.input_size == SIZE and runner.num_keypoints == 68
    assert runner.interpreter.get_input_details()[0]["shape"].tolist() == [1, SIZE, SIZE, 3]
    pred, scores = runner.predict_landmarks(images[:16])
    assert pred.shape == (16, 68, 2) and scores.shape == (16, 68)
    diff, nme_diff = _parity(pred, keras_reference[0], landmarks[:16])
    print(
        f"\nTFLite {quantize}: mean landmark diff {diff:.4f} px, NME diff {100 * nme_diff:.4f}% "
        f"size {os.path.getsize(path) / 1e6:.2f} MB"
    )
    assert diff <= max_px
    assert nme_diff <= max_px / 40  # ~40 px inter-ocular distance at 128 px


@pytest.mark.slow
def test_tflite_int8_io(trained, keras_reference, tmp_path):
    model, images, landmarks = trained
    path = export_tflite(model, str(tmp_path / "m.tflite"), "int8", images[16:48], int8_io=True)
    runner = TFLiteModel(path)
    detail = runner.interpreter.get_input_details()[0]
    assert detail["dtype"] == np.int8
    # Outputs are int8 too; the runner dequantises them.
    assert {d["dtype"] for d in runner.interpreter.get_output_details()} == {np.int8}
    pred, _ = runner.predict_landmarks(images[:16])
    diff, _ = _parity(pred, keras_reference[0], landmarks[:16])
    print(f"\nTFLite int8 (int8 input): mean landmark diff {diff:.4f} px")
    assert diff <= 1.0


@pytest.mark.parametrize("kernel", [(2, 2), (2, 3)])
def test_deconv_as_depth_to_space_matches_conv2d_transpose(kernel):
    """The export-time rewrite of kernel == stride deconvs (BatchNorm and ReLU folded in)
    is exact, leaves overlapping deconvs alone and restores every layer afterwards."""
    inputs = keras.Input((5, 7, 6))
    rewritten = keras.layers.Conv2DTranspose(4, kernel, strides=kernel, name="eq")
    bn, relu = keras.layers.BatchNormalization(epsilon=1e-3), keras.layers.ReLU()
    features = relu(bn(rewritten(inputs)))
    overlapping = keras.layers.Conv2DTranspose(3, 4, strides=2, padding="same", activation="relu", name="overlap")
    model = keras.Model(inputs, [features, overlapping(features)])
    rng = np.random.default_rng(0)
    rewritten.set_weights([rng.normal(size=w.shape).astype("float32") for w in rewritten.get_weights()])
    # BatchNorm statistics far from the identity, so a missed or wrong fold shows.
    gamma, var = (rng.uniform(0.5, 2.0, size=4).astype("float32") for _ in range(2))
    beta, mean = (rng.normal(size=4).astype("float32") for _ in range(2))
    bn.set_weights([gamma, beta, mean, var])
    x = rng.normal(size=(2, 5, 7, 6)).astype("float32")
    ref = [t.numpy() for t in model(x, training=False)]
    patch = _DeconvAsDepthToSpace(model)
    assert patch.plans == [(rewritten, bn, relu)]
    with patch:
        got = [t.numpy() for t in model(x, training=False)]
        assert "call" in vars(rewritten) and "call" not in vars(overlapping)
    assert got[0].shape == (2, 5 * kernel[0], 7 * kernel[1], 4)
    assert np.isfinite(ref[1]).all() and (ref[0] == 0).mean() > 0.2  # ReLU active somewhere
    np.testing.assert_allclose(got[0], ref[0], atol=1e-5)
    np.testing.assert_allclose(got[1], ref[1], atol=1e-4)
    assert not any("call" in vars(layer) for layer in (rewritten, bn, relu))
    assert np.abs(model(x, training=False)[0].numpy() - ref[0]).max() == 0.0  # restored
    # The sub-pixel order matters: the same kernel with (a, b) swapped gives other outputs.
    if kernel[0] == kernel[1]:
        weights = rewritten.get_weights()
        rewritten.set_weights([np.swapaxes(weights[0], 0, 1), *weights[1:]])
        with patch:
            assert np.abs(model(x, training=False)[0].numpy() - ref[0]).max() > 0.1


def test_deconv_read_twice_keeps_its_batchnorm():
    inputs = keras.Input((3, 3, 2))
    deconv = keras.layers.Conv2DTranspose(2, 2, strides=2)
    y = deconv(inputs)
    model = keras.Model(inputs, [keras.layers.BatchNormalization()(y), y])
    assert _DeconvAsDepthToSpace(model).plans == [(deconv, None, None)]


def test_tflite_runs_deconvs_as_depth_to_space(trained, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    model = trained[0]
    assert all(bn is not None and relu is not None for _, bn, relu in _DeconvAsDepthToSpace(model).plans)
    path = export_tflite(model, str(tmp_path / "m.tflite"))
    ops = [op["op_name"] for op in Interpreter(model_path=path)._get_ops_details()]
    assert ops.count("DEPTH_TO_SPACE") == 3 and "TRANSPOSE_CONV" not in ops
    # BatchNorm and ReLU live in the convolutions: each rearrangement feeds the next convolution.
    assert [ops[i + 1] for i, op in enumerate(ops) if op == "DEPTH_TO_SPACE"] == ["CONV_2D"] * 3
    assert not any("call" in vars(layer) for layer in model._flatten_layers())


def test_tflite_rejects_bad_options(trained, tmp_path):
    model = trained[0]
    with pytest.raises(ValueError, match="quantize"):
        export_tflite(model, str(tmp_path / "x.tflite"), "int4")
    with pytest.raises(ValueError, match="int8_io"):
        export_tflite(model, str(tmp_path / "x.tflite"), "fp16", int8_io=True)


@pytest.fixture(scope="module")
def saved_model(trained, tmp_path_factory):
    return export_saved_model(trained[0], str(tmp_path_factory.mktemp("sm") / "mobilefan"))


def test_saved_model_default_signature(trained, keras_reference, saved_model):
    _, images, _ = trained
    loaded = tf.saved_model.load(saved_model)
    assert {"serving_default", "serving_bytes"} <= set(loaded.signatures)
    out = loaded.signatures["serving_default"](images=tf.constant(images[:16]))
    assert out["landmarks"].shape == (16, 68, 2) and out["scores"].shape == (16, 68)
    np.testing.assert_allclose(out["landmarks"].numpy(), keras_reference[0], atol=1e-3)
    runner = load_landmark_model(saved_model)
    assert isinstance(runner, SavedModelRunner) and runner.input_size == SIZE and runner.crop_scale == 1.25


def test_saved_model_cli_show(saved_model):
    out = subprocess.run(
        ["saved_model_cli", "show", "--dir", saved_model, "--all"], capture_output=True, text=True, check=True
    ).stdout
    default = out[out.index("signature_def['serving_default']") :]
    assert "inputs['images']" in default and "DT_FLOAT" in default and f"(-1, {SIZE}, {SIZE}, 3)" in default
    raw = out[out.index("signature_def['serving_bytes']") : out.index("signature_def['serving_default']")]
    assert "inputs['image_bytes']" in raw and "DT_STRING" in raw and "shape: (-1)" in raw
    for text in (default, raw):
        assert "outputs['landmarks']" in text and "(-1, 68, 2)" in text
        assert "outputs['scores']" in text and "(-1, 68)" in text


def _encode(image: np.ndarray, fmt: str) -> bytes:
    if fmt == "png16":
        return cv2.imencode(".png", (image.astype(np.uint16) * 257)[..., ::-1])[1].tobytes()
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def test_saved_model_bytes_signature(trained, saved_model):
    _, images, _ = trained
    face = images[0].astype(np.uint8)
    signature = tf.saved_model.load(saved_model).signatures["serving_bytes"]
    same = signature(image_bytes=tf.constant([_encode(face, "png")]))
    assert same["image_size"].numpy().tolist() == [[SIZE, SIZE]]
    ref = same["landmarks"].numpy()
    # A 2x larger photo of the same face: landmarks come back in its own pixels.
    big = cv2.resize(face, (2 * SIZE, 2 * SIZE), interpolation=cv2.INTER_CUBIC)
    batch = [_encode(big, "png"), _encode(big, "jpeg"), _encode(big, "png16")]
    out = signature(image_bytes=tf.constant(batch))
    assert out["image_size"].numpy().tolist() == [[2 * SIZE, 2 * SIZE]] * 3
    expected = (ref + 0.5) * 2 - 0.5
    for lm in out["landmarks"].numpy():
        assert np.median(np.linalg.norm(lm - expected[0], axis=-1)) < 2.0
    # Gray and RGBA inputs are converted to RGB.
    gray = np.asarray(Image.fromarray(face).convert("L"))
    rgba = np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])
    out = signature(image_bytes=tf.constant([_encode(gray, "png"), _encode(rgba, "png")]))
    assert out["landmarks"].shape == (2, 68, 2)
    assert np.isfinite(out["landmarks"].numpy()).all()
