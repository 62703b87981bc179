"""MobileFAN student: MobileNetV2 encoder + three deconvolutions -> heatmaps.

Paper-faithful layout (authors' public PyTorch code): MobileNetV2 run through
its last inverted-residual block (320 channels at 1/32 of the input; the
1280-channel 1x1 conv and classifier dropped), three Conv2DTranspose(k=2,
s=2, no bias) + BN + ReLU, then a 1x1 conv to K heatmaps at 1/4 of the input.
"""

from __future__ import annotations

import keras

from mobilefan_tf.models.base import (
    LandmarkModelMixin,
    check_weights_file,
    copy_weights_by_name,
    head_initializer,
    preprocess_layer,
)
from mobilefan_tf.specs import check_num_points

TRUNK_OUTPUT = "block_16_project_BN"  # last inverted residual (320 ch at alpha 1)


def deconv_block(x, filters: int, bn_momentum: float, name: str):
    """Conv2DTranspose(k2, s2, no bias) + BN + ReLU: doubles the resolution."""
    x = keras.layers.Conv2DTranspose(
        filters, 2, strides=2, use_bias=False, kernel_initializer=head_initializer(), name=f"{name}_deconv"
    )(x)
    x = keras.layers.BatchNormalization(momentum=bn_momentum, epsilon=1e-5, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=name)(x)


def _check_size(input_size: int) -> None:
    if input_size % 32 or input_size < 64:
        raise ValueError(f"input_size must be a multiple of 32 and >= 64, got {input_size}")


@keras.saving.register_keras_serializable(package="mobilefan_tf")
class MobileFAN(LandmarkModelMixin, keras.Model):
    """The MobileFAN student.

    Args:
        num_keypoints: K, heatmaps out.
        input_size: S; input [B, S, S, 3] float RGB in [0, 255].
        width: MobileNetV2 width multiplier (alpha).
        deconv_filters: Filters of each of the three deconvolutions.
        bn_momentum: BatchNorm momentum of the whole model. Keras' MobileNetV2
            uses 0.999, which lags far behind in short from-scratch runs.
        encoder_weights: Optional local file of MobileNetV2 (no-top) weights
            for this width, e.g. Keras' ImageNet file; never downloaded.
        spec: Optional dataset spec name; K is checked against it.

    Output: [B, S/4, S/4, K] heatmaps. `feature_extractor` also returns the
    three decoder features (S/16, S/8, S/4).
    """

    CONFIG_KEYS = ("num_keypoints", "input_size", "width", "deconv_filters", "bn_momentum", "spec")

    def __init__(
        self,
        num_keypoints: int = 68,
        input_size: int = 256,
        width: float = 1.0,
        deconv_filters: int = 128,
        bn_momentum: float = 0.99,
        encoder_weights: str | None = None,
        spec: str | None = None,
        **kwargs,
    ):
        check_num_points(num_keypoints, spec)
        _check_size(input_size)
        inputs = keras.Input((input_size, input_size, 3), name="image")
        x = preprocess_layer()(inputs)
        base = keras.applications.MobileNetV2(
            input_tensor=x, alpha=width, include_top=False, weights=None
        )
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = bn_momentum
        x = base.get_layer(TRUNK_OUTPUT).output
        features = {}
        for i in range(3):
            x = deconv_block(x, deconv_filters, bn_momentum, name=f"feat{i + 1}")
            features[f"feat{i + 1}"] = x
        heatmaps = keras.layers.Conv2D(
            num_keypoints, 1, kernel_initializer=head_initializer(), name="heatmaps"
        )(x)
        super().__init__(inputs, heatmaps, name=kwargs.pop("name", "mobilefan"), **kwargs)

        self.num_keypoints = num_keypoints
        self.input_size = input_size
        self.heatmap_size = input_size // 4
        self.width = width
        self.deconv_filters = deconv_filters
        self.bn_momentum = bn_momentum
        self.spec = spec
        self._feature_tensors = features
        if encoder_weights:
            self.load_encoder_weights(encoder_weights)

    def load_encoder_weights(self, path: str) -> int:
        """Loads MobileNetV2 (no-top) weights from a local file into the encoder."""
        check_weights_file(path, "MobileNetV2 encoder")
        try:
            ref = keras.applications.MobileNetV2(
                input_shape=(self.input_size, self.input_size, 3),
                alpha=self.width,
                include_top=False,
                weights=path,
            )
        except Exception as err:  # noqa: BLE001 - re-raised with the file named
            raise ValueError(
                f"Cannot load MobileNetV2 width {self.width} weights from {path}: {err}"
            ) from None
        return copy_weights_by_name(ref, self)

