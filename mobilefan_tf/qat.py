"""Quantisation-aware training of a MobileFAN student with tensorflow-model-optimization.

tfmot works on tf_keras (Keras 2) models only, so the trained Keras 3 student
is rebuilt layer by layer as a tf_keras functional model with the same layer
names (MobileNetV2 trunk from ``tf_keras.applications``, the three k2/s2
deconvolutions, the 1x1 head), its weights copied by name, and checked
against the original (`check_parity`, 1e-5 on the heatmaps) before
``tfmot.quantization.keras.quantize_model`` inserts the fake-quant ops.

Needs the ``qat`` extra (tf_keras + tensorflow-model-optimization), which must
not replace the Keras 3 / tensorflow-cpu stack: install it in a separate venv
(WORKSPACE.md, "Quantisation-aware training"). Importing tfmot sets
``TF_USE_LEGACY_KERAS=1``; this module only uses ``tf_keras`` explicitly and
leaves ``import keras`` (Keras 3) alone.
"""

from __future__ import annotations

import json
import os

import numpy as np

TRUNK_OUTPUT = "block_16_project_BN"


def import_qat():
    """(tf_keras, tfmot), or ImportError with one line saying what is missing."""
    try:
        import tensorflow_model_optimization as tfmot
        import tf_keras
    except ImportError as err:
        raise ImportError(f"QAT needs the 'qat' extra (tf_keras, tensorflow-model-optimization): {err}") from None
    return tf_keras, tfmot


def rebuild_tf_keras(model):
    """A tf_keras copy of a Keras 3 `MobileFAN` (same layers and names, weights copied).

    Args:
        model: A `mobilefan_tf.models.MobileFAN` (Keras 3).

    Returns:
        tf_keras functional model: [B, S, S, 3] RGB 0..255 -> [B, S/4, S/4, K] heatmaps.

    Raises:
        ValueError: when the model is not a MobileFAN or a layer's weights do not fit.
    """
    tf_keras, _ = import_qat()
    if type(model).__name__ != "MobileFAN":
        raise ValueError(f"QAT rebuild supports MobileFAN students only, got {type(model).__name__}")
    layers = tf_keras.layers
    size = int(model.input_size)
    inputs = tf_keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(inputs)
    base = tf_keras.applications.MobileNetV2(input_tensor=x, alpha=model.width, include_top=False, weights=None)
    x = base.get_layer(TRUNK_OUTPUT).output
    for i in range(3):
        name = f"feat{i + 1}"
        x = layers.Conv2DTranspose(model.deconv_filters, 2, strides=2, use_bias=False, name=f"{name}_deconv")(x)
        x = layers.BatchNormalization(momentum=model.bn_momentum, epsilon=1e-5, name=f"{name}_bn")(x)
        x = layers.ReLU(name=name)(x)
    heatmaps = layers.Conv2D(int(model.num_keypoints), 1, name="heatmaps")(x)
    rebuilt = tf_keras.Model(inputs, heatmaps, name=f"{model.name}_tf_keras")
    source = {layer.name: layer for layer in model.layers}
    copied = 0
    for layer in rebuilt.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if layer.name not in source:
            raise ValueError(f"layer {layer.name!r} of the rebuilt model has no counterpart in {model.name}")
        values = source[layer.name].get_weights()
        if [w.shape for w in values] != [w.shape for w in weights]:
            raise ValueError(f"layer {layer.name!r}: weight shapes differ ({[w.shape for w in values]})")
        layer.set_weights(values)
        copied += 1
    if copied != sum(1 for layer in model.layers if layer.get_weights()):
        raise ValueError(f"copied {copied} layers' weights, the model has more")
    return rebuilt


def check_parity(model, rebuilt, num: int = 4, atol: float = 1e-5, seed: int = 0) -> float:
    """Max |heatmap difference| of the two models on random images; raises above `atol`."""
    rng = np.random.default_rng(seed)
    size = int(model.input_size)
    images = rng.uniform(0, 255, (num, size, size, 3)).astype(np.float32)
    a = np.asarray(model(images, training=False))
    b = rebuilt(images, training=False).numpy()
    diff = float(np.max(np.abs(a - b)))
    if not diff <= atol:
        raise ValueError(f"rebuilt tf_keras model differs from the Keras 3 model by {diff:.3g} (> {atol:g})")
    return diff


def quantize(rebuilt):
    """``tfmot`` default 8-bit QAT model of a rebuilt student.

    The input Rescaling layer (pixels -> [-1, 1]) has no tfmot quantize
    config; it is annotated with a no-op config so the model keeps taking
    raw 0..255 pixels (the first quantizer sits right after it).
    """
    tf_keras, tfmot = import_qat()
    qk = tfmot.quantization.keras

    class NoOpQuantizeConfig(qk.QuantizeConfig):
        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    def annotate(layer):
        if isinstance(layer, tf_keras.layers.Rescaling):
            return qk.quantize_annotate_layer(layer, quantize_config=NoOpQuantizeConfig())
        return qk.quantize_annotate_layer(layer) if not isinstance(layer, tf_keras.layers.InputLayer) else layer

    annotated = tf_keras.models.clone_model(rebuilt, clone_function=annotate)
    annotated.set_weights(rebuilt.get_weights())
    with qk.quantize_scope({"NoOpQuantizeConfig": NoOpQuantizeConfig}):
        return qk.quantize_apply(annotated)


def export_qat_tflite(qat_model, path: str, metadata: dict, method: str = "dark") -> str:
    """Writes the QAT model as an int8 TFLite file with the same contract as `export.export_tflite`.

    Input float32 [1, S, S, 3] (RGB 0..255), outputs ``landmarks`` [1, K, 2]
    and ``scores`` [1, K]; ``<path>.json`` gets `metadata` plus
    ``quantize: "qat_int8"``. The network runs int8 (scales learned in
    training); the heatmap decoder after it has no fake-quant ops and stays float.
    """
    import tensorflow as tf

    from mobilefan_tf.heatmaps import decode_to_input

    size = int(qat_model.input_shape[1])

    tf_keras, _ = import_qat()
    # The decoder as a layer after the QAT network; converted from the tf_keras model
    # (the tfmot path: a tf.Module SavedModel cannot capture the QAT deconv kernels).
    heatmaps = qat_model.output
    landmarks, scores = tf_keras.layers.Lambda(
        lambda h: decode_to_input(h, size, method=method), name="decode")(heatmaps)
    wrapped = tf_keras.Model(qat_model.input, {"landmarks": landmarks, "scores": scores})
    converter = tf.lite.TFLiteConverter.from_keras_model(wrapped)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    flatbuffer = converter.convert()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(flatbuffer)
    with open(path + ".json", "w") as f:
        json.dump({**metadata, "quantize": "qat_int8", "int8_io": False}, f, indent=1)
    return path


def cluster(rebuilt, clusters: int = 16):
    """Weight clustering (tfmot): every conv / deconv kernel shares `clusters` values.

    Only Conv2D and Conv2DTranspose kernels are clustered (tfmot 0.8.1
    leaves DepthwiseConv2D kernels as they are, and BatchNorm and biases stay
    too); fine-tune the result, then `strip_clustering` and `copy_back` into
    the Keras 3 model.
    """
    tf_keras, tfmot = import_qat()
    ck = tfmot.clustering.keras
    kinds = (tf_keras.layers.Conv2D, tf_keras.layers.DepthwiseConv2D, tf_keras.layers.Conv2DTranspose)
    init = ck.CentroidInitialization.KMEANS_PLUS_PLUS

    def wrap(layer):
        if isinstance(layer, kinds):
            return ck.cluster_weights(layer, number_of_clusters=clusters, cluster_centroids_init=init)
        return layer

    # The wrappers hold the original layers, weights included: no copy needed.
    return tf_keras.models.clone_model(rebuilt, clone_function=wrap)


def strip_clustering(clustered):
    """The clustered model as plain layers (kernels holding only the centroid values)."""
    _, tfmot = import_qat()
    return tfmot.clustering.keras.strip_clustering(clustered)


def copy_back(rebuilt, model) -> None:
    """Copies a (stripped) tf_keras rebuild's weights into the Keras 3 `model`, layer by layer by name."""
    target = {layer.name: layer for layer in model.layers}
    for layer in rebuilt.layers:
        if layer.get_weights():
            target[layer.name].set_weights(layer.get_weights())
