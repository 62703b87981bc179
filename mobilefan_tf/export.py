"""Exports a landmark model as a TF Serving SavedModel or a TFLite flatbuffer.

Both exports decode heatmaps to landmarks inside the graph, so a client gets
coordinates, not heatmaps:

* SavedModel ``serving_default``: ``images`` float32 [N, S, S, 3], RGB in
  [0, 255] (no normalisation needed: the model normalises inside) ->
  ``landmarks`` float32 [N, K, 2] (x, y) in input pixels (0-based pixel
  centres) and ``scores`` float32 [N, K] (heatmap peaks).
* SavedModel ``serving_bytes``: ``image_bytes`` string [N] of encoded
  JPEG/PNG/BMP/GIF face crops (gray, RGBA and 16-bit are converted to 8-bit
  RGB; each is resized to S x S in the graph) -> ``landmarks`` [N, K, 2] in the
  *original* encoded image's pixels, ``scores`` [N, K] and ``image_size``
  int32 [N, 2] (height, width).
* TFLite: one input float32 [1, S, S, 3] (int8 with ``int8_io``), outputs
  ``landmarks`` [1, K, 2] and ``scores`` [1, K]. The batch is fixed to 1
  because XNNPACK cannot run the transposed convolutions with a dynamic batch.

Both also carry ``mobilefan.json`` (input size, K, crop scale) for loaders.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

import keras
import numpy as np

from mobilefan_tf.heatmaps import decode_to_input


class _LazyTensorFlow:
    """``tensorflow``, imported on first use: the constants here (and evaluation/predictor,
    which import them) also load on a machine without TensorFlow."""

    def __getattr__(self, name):
        import tensorflow

        return getattr(tensorflow, name)


tf = _LazyTensorFlow()

METADATA_FILE = "mobilefan.json"
DEFAULT_CROP_SCALE = 1.25
QUANTIZE_MODES = ("none", "fp16", "int8")


def model_metadata(model: keras.Model) -> dict:
    """What a loader needs besides the graph: sizes, K, the training crop scale and the layout.

    ``spec`` is the built-in layout's name or a custom layout's full
    `LandmarkSpec.to_dict` (so predict / flip test need no spec file).
    """
    from mobilefan_tf.specs import model_spec, spec_config

    try:
        spec = spec_config(model_spec(model))
    except ValueError:  # a K no built-in layout has, and no spec given: nothing to record
        spec = None
    return {
        "name": model.name,
        "input_size": int(model.input_size),
        "heatmap_size": int(model.heatmap_size),
        "num_keypoints": int(model.num_keypoints),
        "crop_scale": float(getattr(model, "crop_scale", DEFAULT_CROP_SCALE)),
        "spec": spec,
    }


# fp16 conversion also rounds the decoder's constants, and its log floor
# (1e-10) becomes 0: where a peak's blurred neighbour is <= 0 the Newton step
# is then inf - inf = NaN. Those points fall back to the peak pixel (argmax).


def _landmark_fn(model: keras.Model, method: str, fp16_safe: bool = False):
    """images [B, S, S, 3] float32 -> (landmarks [B, K, 2], scores [B, K])."""

    def run(images):
        outputs = model(images, training=False)
        if isinstance(outputs, (list, tuple)):
            outputs = outputs[-1]
        landmarks, scores = decode_to_input(outputs, model.input_size, method=method)
        if fp16_safe:
            peaks, _ = decode_to_input(outputs, model.input_size, method="argmax")
            landmarks = tf.where(tf.math.is_finite(landmarks), landmarks, peaks)
        return landmarks, scores

    return run


def _sole_consumer(layer, model_outputs: set):
    """The one layer that reads `layer`'s output, or None (several, none, or it is also a
    model output)."""
    nodes = layer._outbound_nodes  # noqa: SLF001 - Keras' functional graph
    if len(nodes) != 1 or len(layer._inbound_nodes) != 1 or id(layer.output) in model_outputs:  # noqa: SLF001
        return None
    return nodes[0].operation


class _DeconvAsDepthToSpace:
    """While active, every Conv2DTranspose of `model` whose kernel equals its stride runs
    as a 1x1 convolution to s*s*C channels + depth_to_space, with the BatchNorm and ReLU
    that follow it (if they are its only reader) folded in.

    With kernel == stride the output windows do not overlap, so out[s*i + a, s*j + b, o]
    = sum_c x[i, j, c] * kernel[a, b, o, c]: one 1x1 convolution whose channel
    (a*s + b)*C + o is that sum, rearranged by depth_to_space. BatchNorm (inference) is
    a per-channel affine map and ReLU is elementwise, so both move in front of the
    rearrangement into the convolution. TFLite gets CONV_2D (BN and ReLU fused) +
    DEPTH_TO_SPACE, which XNNPACK runs faster than TRANSPOSE_CONV; int8 also keeps one
    quantised tensor per stage instead of three. Only the export traces through this:
    the Keras model is unchanged when the block exits.
    """

    def __init__(self, model: keras.Model):
        self.plans = []  # (deconv, folded BatchNorm or None, folded ReLU or None)
        outputs = {id(t) for t in keras.tree.flatten(model.outputs)}
        for layer in model._flatten_layers(include_self=False):  # noqa: SLF001 - nested models too
            if not (
                isinstance(layer, keras.layers.Conv2DTranspose)
                and tuple(layer.kernel_size) == tuple(layer.strides)
                and tuple(layer.dilation_rate) == (1, 1)
                and layer.data_format == "channels_last"
                and layer.output_padding is None
            ):
                continue
            bn = relu = None
            after = _sole_consumer(layer, outputs)
            linear = layer.activation in (None, keras.activations.linear)  # else nothing folds past it
            if linear and isinstance(after, keras.layers.BatchNormalization) and after.axis in (-1, 3, [-1], [3]):
                bn, after = after, _sole_consumer(after, outputs)
            if (
                linear
                and isinstance(after, keras.layers.ReLU)
                and after.max_value is None
                and float(after.negative_slope) == 0.0
                and float(after.threshold) == 0.0
            ):
                relu = after
            self.plans.append((layer, bn, relu))

    @staticmethod
    def _call(layer, bn, relu):
        kh, kw = layer.kernel_size

        def call(inputs):
            # [kh, kw, out, in] -> [1, 1, in, kh*kw*out]: channel (a*kw + b)*out + o.
            weights = tf.reshape(tf.transpose(layer.kernel, [3, 0, 1, 2]), [1, 1, -1, kh * kw * layer.filters])
            bias = layer.bias if layer.use_bias else tf.zeros([layer.filters])
            if bn is not None:
                scale = tf.math.rsqrt(bn.moving_variance + bn.epsilon)
                if bn.scale:
                    scale = scale * bn.gamma
                bias = (bias - bn.moving_mean) * scale + (bn.beta if bn.center else 0.0)
                weights = weights * tf.tile(scale, [kh * kw])
            x = tf.nn.conv2d(inputs, weights, strides=1, padding="VALID") + tf.tile(bias, [kh * kw])
            x = tf.nn.relu(x) if relu is not None else layer.activation(x)
            if kh == kw:
                return tf.nn.depth_to_space(x, kh)
            shape = tf.shape(x)  # rectangular: [B, H, W, kh, kw, C] -> [B, H*kh, W*kw, C]
            x = tf.reshape(x, [shape[0], shape[1], shape[2], kh, kw, layer.filters])
            x = tf.transpose(x, [0, 1, 3, 2, 4, 5])
            return tf.reshape(x, [shape[0], shape[1] * kh, shape[2] * kw, layer.filters])

        return call

    def __enter__(self):
        for layer, bn, relu in self.plans:
            layer.call = self._call(layer, bn, relu)
            for folded in (bn, relu):
                if folded is not None:
                    folded.call = lambda inputs, *args, **kwargs: inputs
        return self

    def __exit__(self, *exc):
        for plan in self.plans:
            for layer in plan:
                if layer is not None and "call" in vars(layer):
                    del layer.call  # back to the class's own call
        return False


def _decode_one(data, size: int):
    """One encoded image -> (float32 [S, S, 3] resized RGB, int32 [2] original (h, w))."""
    image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    hw = tf.shape(image)[:2]
    resized = tf.image.resize(tf.cast(image, tf.float32), [size, size], antialias=True)
    return tf.clip_by_value(resized, 0.0, 255.0), hw


def export_saved_model(model: keras.Model, path: str, method: str = "dark") -> str:
    """Writes a SavedModel for TF Serving with `serving_default` and `serving_bytes`.

    Args:
        model: A landmark model of this package (has `input_size`, ...).
        path: Output directory (replaced if it exists).
        method: Heatmap decoding method (see `heatmaps.decode_heatmaps`).

    Returns:
        `path`. See the module docstring for the signatures.
    """
    size = int(model.input_size)
    run = _landmark_fn(model, method)

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
    def serving_default(images):
        landmarks, scores = run(images)
        return {"landmarks": landmarks, "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serving_bytes(image_bytes):
        images, hw = tf.map_fn(
            lambda b: _decode_one(b, size),
            image_bytes,
            fn_output_signature=(tf.TensorSpec([size, size, 3], tf.float32), tf.TensorSpec([2], tf.int32)),
        )
        landmarks, scores = run(images)
        # Resize maps pixel centres as x_orig = (x + 0.5) * W / S - 0.5.
        scale = tf.cast(tf.reverse(hw, [1]), tf.float32)[:, None, :] / float(size)
        return {"landmarks": (landmarks + 0.5) * scale - 0.5, "scores": scores, "image_size": hw}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serving_default)
    archive.add_endpoint("serving_bytes", serving_bytes)
    if os.path.exists(path):
        shutil.rmtree(path)
    archive.write_out(path, verbose=False)
    extra = os.path.join(path, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, METADATA_FILE), "w") as f:
        json.dump(model_metadata(model), f, indent=1)
    return path


def _representative(images: np.ndarray | None, size: int, num: int = 32):
    """Yields [1, S, S, 3] float32 calibration batches (synthetic faces if none given)."""
    if images is None:
        from mobilefan_tf.data import synthetic_faces

        images, _ = synthetic_faces(num, image_size=size, seed=123)
    images = np.asarray(images, np.float32)
    if images.shape[1:] != (size, size, 3):
        raise ValueError(f"representative_images must be [N, {size}, {size}, 3], got {list(images.shape)}")

    def gen():
        for image in images:
            yield [image[None]]

    return gen


def _decode_tensor_names(float_flatbuffer: bytes) -> list[str]:
    """Output tensors of every op downstream of the last CONV_2D (the heatmap head): the decoder."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=float_flatbuffer)
    ops = interpreter._get_ops_details()  # noqa: SLF001 - the only op-graph view LiteRT offers
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    head = [op for op in ops if op["op_name"] == "CONV_2D"][-1]
    downstream = {int(i) for i in head["outputs"]}
    decode = []
    for op in ops:
        if op["index"] > head["index"] and any(int(i) in downstream for i in op["inputs"]):
            downstream.update(int(i) for i in op["outputs"])
            decode.extend(names[int(i)] for i in op["outputs"])
    return decode


def _convert_int8(saved_model_dir: str, representative, int8_io: bool) -> bytes:
    """Full-integer network, float decoder.

    Quantising the decoder (log, Newton step, coordinates) to int8 costs
    pixels, so its ops are kept float with the quantisation debugger's
    node denylist; everything up to the heatmaps runs int8.
    """
    from tensorflow.lite.python import convert

    denylist = _decode_tensor_names(tf.lite.TFLiteConverter.from_saved_model(saved_model_dir).convert())
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    # What tf.lite.experimental.QuantizationDebugger does: calibrate, then
    # quantise with a node denylist (and here, optionally, an int8 input).
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True  # noqa: SLF001
    calibrated = converter.convert()
    return convert.mlir_quantize(
        calibrated,
        fully_quantize=int8_io,
        input_data_type=tf.int8 if int8_io else tf.float32,
        output_data_type=tf.float32,
        denylisted_nodes=denylist,
    )


@contextlib.contextmanager
def _traced_saved_model(model: keras.Model, serve, deconv_as_depth_to_space: bool = True):
    """Yields a temporary SavedModel folder whose ``serving_default`` is the tf.function `serve`
    (traced with the deconvolution rewrite when asked); the folder is removed afterwards."""
    tmp = tempfile.mkdtemp(prefix="mobilefan_tflite_")
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        with _DeconvAsDepthToSpace(model) if deconv_as_depth_to_space else contextlib.nullcontext():
            archive.add_endpoint("serving_default", serve)
        archive.write_out(tmp, verbose=False)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def heatmap_flatbuffer(model: keras.Model, batch_size: int, deconv_as_depth_to_space: bool = True) -> bytes:
    """A float32 TFLite flatbuffer of the model's final heatmaps at a fixed batch (no decoding).

    What a CPU distillation run uses to compute its teacher's targets
    (`distillation.TFLiteTeacher`): XNNPACK runs the teacher ~2x faster than
    Keras here (``benchmarks/bench_teacher_tflite.py``).

    Args:
        model: A landmark model of this package.
        batch_size: B, fixed (XNNPACK cannot take a dynamic-batch Conv2DTranspose).
        deconv_as_depth_to_space: As in `export_tflite`.

    Returns:
        The flatbuffer: input ``images`` float32 [B, S, S, 3] RGB 0..255, output
        ``heatmaps`` float32 [B, Hm, Hm, K] (the last stack of a multi-stack model).
    """
    from mobilefan_tf.models import final_heatmaps

    size = int(model.input_size)

    @tf.function(input_signature=[tf.TensorSpec([int(batch_size), size, size, 3], tf.float32, name="images")])
    def serve(images):
        return {"heatmaps": final_heatmaps(model(images, training=False))}

    with _traced_saved_model(model, serve, deconv_as_depth_to_space) as tmp:
        return tf.lite.TFLiteConverter.from_saved_model(tmp).convert()


def export_tflite(
    model: keras.Model,
    path: str,
    quantize: str = "none",
    representative_images: np.ndarray | None = None,
    int8_io: bool = False,
    method: str = "dark",
    deconv_as_depth_to_space: bool = True,
) -> str:
    """Writes a batch-1 TFLite model that outputs landmarks and scores.

    Args:
        model: A landmark model of this package.
        path: Output ``.tflite`` file; ``<path>.json`` gets the metadata.
        quantize: ``"none"`` (float32), ``"fp16"`` (float16 weights) or
            ``"int8"`` (int8 network up to the heatmaps, calibrated on
            `representative_images`; the small decoder stays float).
        representative_images: [N, S, S, 3] RGB 0..255 calibration faces for
            int8; defaults to 32 synthetic faces.
        int8_io: With int8, make the input and outputs int8 too (input:
            pixel - 128, scale 1; landmarks in steps of about S / 350 px, which
            `TFLiteModel` dequantises).
        method: Heatmap decoding method.
        deconv_as_depth_to_space: Write kernel == stride deconvolutions as
            1x1 convolutions + DEPTH_TO_SPACE with their BatchNorm and ReLU
            folded in (same result; ~15 % faster int8 MobileFAN, see
            `_DeconvAsDepthToSpace` and ``benchmarks/bench_deconv_rewrite.py``).
            False keeps TRANSPOSE_CONV.

    Returns:
        `path`.
    """
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    if int8_io and quantize != "int8":
        raise ValueError("int8_io needs quantize='int8'")
    size = int(model.input_size)
    run = _landmark_fn(model, method, fp16_safe=quantize == "fp16")

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="images")])
    def serve(images):
        landmarks, scores = run(images)
        return {"landmarks": landmarks, "scores": scores}

    with _traced_saved_model(model, serve, deconv_as_depth_to_space) as tmp:
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if quantize == "none":
            flatbuffer = converter.convert()
        elif quantize == "fp16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
            flatbuffer = converter.convert()
        else:
            flatbuffer = _convert_int8(tmp, _representative(representative_images, size), int8_io)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(flatbuffer)
    with open(path + ".json", "w") as f:
        json.dump({**model_metadata(model), "quantize": quantize, "int8_io": int8_io}, f, indent=1)
    return path
