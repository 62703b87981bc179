"""Teacher networks: a stacked hourglass and a ResNet-50 deconv ("SimpleBaseline").

Both take [B, S, S, 3] RGB in [0, 255] and give heatmaps at S/4, and expose
the three decoder features at S/16, S/8 and S/4 that distillation matches.
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


def _bn(momentum: float, name: str):
    return keras.layers.BatchNormalization(momentum=momentum, epsilon=1e-5, name=name)


def residual(x, channels: int, momentum: float, name: str):
    """Pre-activation bottleneck (BN-ReLU-conv x3) with a 1x1 skip if needed."""
    skip = x
    if x.shape[-1] != channels:
        skip = keras.layers.Conv2D(channels, 1, name=f"{name}_skip")(x)
    y = x
    for i, (k, c) in enumerate(((1, channels // 2), (3, channels // 2), (1, channels))):
        y = _bn(momentum, f"{name}_bn{i}")(y)
        y = keras.layers.ReLU(name=f"{name}_relu{i}")(y)
        y = keras.layers.Conv2D(c, k, padding="same", name=f"{name}_conv{i}")(y)
    return keras.layers.Add(name=f"{name}_add")([skip, y])


def hourglass(x, depth: int, channels: int, momentum: float, name: str, taps: dict):
    """Recursive hourglass; records the merged output of each level in `taps` by resolution."""
    up1 = residual(x, channels, momentum, f"{name}_up1")
    low = keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    low = residual(low, channels, momentum, f"{name}_low1")
    if depth > 1:
        low = hourglass(low, depth - 1, channels, momentum, f"{name}_d{depth - 1}", taps)
    else:
        low = residual(low, channels, momentum, f"{name}_low2")
    low = residual(low, channels, momentum, f"{name}_low3")
    up2 = keras.layers.UpSampling2D(2, name=f"{name}_upsample")(low)
    out = keras.layers.Add(name=f"{name}_merge")([up1, up2])
    taps[int(out.shape[1])] = out
    return out


@keras.saving.register_keras_serializable(package="mobilefan_tf")
class HourglassTeacher(LandmarkModelMixin, keras.Model):
    """Stacked hourglass (Newell et al. 2016) with intermediate supervision.

    Args:
        num_keypoints: K.
        input_size: S (multiple of 64); heatmaps are S/4.
        num_stacks: Hourglasses in sequence; one heatmap output per stack.
        depth: Down-samplings inside each hourglass (4 reaches S/64).
        channels: Feature channels.

    Outputs: a list of `num_stacks` tensors [B, S/4, S/4, K] (the last is the
    prediction), or a single tensor when `num_stacks` is 1. Distillation
    features: the last hourglass's merged outputs at S/16 and S/8, and its
    final S/4 feature.
    """

    CONFIG_KEYS = ("num_keypoints", "input_size", "num_stacks", "depth", "channels", "bn_momentum", "spec")

    def __init__(
        self,
        num_keypoints: int = 68,
        input_size: int = 256,
        num_stacks: int = 2,
        depth: int = 4,
        channels: int = 128,
        bn_momentum: float = 0.99,
        spec: str | None = None,
        **kwargs,
    ):
        check_num_points(num_keypoints, spec)
        if input_size % 64:
            raise ValueError(f"input_size must be a multiple of 64, got {input_size}")
        if depth < 2:
            raise ValueError(f"depth must be >= 2 to give S/16 and S/8 features, got {depth}")
        m = bn_momentum
        inputs = keras.Input((input_size, input_size, 3), name="image")
        x = preprocess_layer()(inputs)
        x = keras.layers.Conv2D(channels // 2, 7, strides=2, padding="same", name="stem_conv")(x)
        x = keras.layers.ReLU(name="stem_relu")(_bn(m, "stem_bn")(x))
        x = residual(x, channels, m, "stem_res1")
        x = keras.layers.MaxPooling2D(2, name="stem_pool")(x)
        x = residual(x, channels, m, "stem_res2")
        outputs, taps = [], {}
        hm_size = input_size // 4
        for s in range(num_stacks):
            taps = {}
            y = hourglass(x, depth, channels, m, f"hg{s}", taps)
            y = residual(y, channels, m, f"hg{s}_res")
            y = keras.layers.Conv2D(channels, 1, name=f"hg{s}_lin")(y)
            y = keras.layers.ReLU(name=f"hg{s}_feat")(_bn(m, f"hg{s}_lin_bn")(y))
            heat = keras.layers.Conv2D(
                num_keypoints, 1, kernel_initializer=head_initializer(), name=f"heatmaps_{s}"
            )(y)
            outputs.append(heat)
            feature = y
            if s < num_stacks - 1:
                x = keras.layers.Add(name=f"hg{s}_next")(
                    [
                        x,
                        keras.layers.Conv2D(channels, 1, name=f"hg{s}_fwd_feat")(y),
                        keras.layers.Conv2D(channels, 1, name=f"hg{s}_fwd_heat")(heat),
                    ]
                )
        # The merged hourglass outputs are pre-activation; a ReLU (feature path
        # only) puts them in the same non-negative range as the student's.
        features = {
            "feat1": keras.layers.ReLU(name="feat1")(taps[hm_size // 4]),
            "feat2": keras.layers.ReLU(name="feat2")(taps[hm_size // 2]),
            "feat3": feature,
        }
        super().__init__(
            inputs, outputs if num_stacks > 1 else outputs[0], name=kwargs.pop("name", "hourglass"), **kwargs
        )
        self.num_keypoints = num_keypoints
        self.input_size = input_size
        self.heatmap_size = hm_size
        self.num_stacks = num_stacks
        self.depth = depth
        self.channels = channels
        self.bn_momentum = bn_momentum
        self.spec = spec
        self._feature_tensors = features



@keras.saving.register_keras_serializable(package="mobilefan_tf")
class ResNetDeconvTeacher(LandmarkModelMixin, keras.Model):
    """ResNet-50 + three 4x4 stride-2 deconvolutions (Xiao et al. 2018), the authors' teacher.

    Args:
        num_keypoints: K.
        input_size: S (multiple of 32).
        deconv_filters: Filters of each deconvolution (256 in the paper).
        encoder_weights: Optional local ResNet-50 (no-top) Keras weights file.
    """

    CONFIG_KEYS = ("num_keypoints", "input_size", "deconv_filters", "bn_momentum", "spec")

    def __init__(
        self,
        num_keypoints: int = 68,
        input_size: int = 256,
        deconv_filters: int = 256,
        bn_momentum: float = 0.99,
        encoder_weights: str | None = None,
        spec: str | None = None,
        **kwargs,
    ):
        check_num_points(num_keypoints, spec)
        if input_size % 32:
            raise ValueError(f"input_size must be a multiple of 32, got {input_size}")
        inputs = keras.Input((input_size, input_size, 3), name="image")
        x = preprocess_layer()(inputs)
        base = keras.applications.ResNet50(input_tensor=x, include_top=False, weights=None)
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = bn_momentum
        x = base.output
        features = {}
        for i in range(3):
            x = keras.layers.Conv2DTranspose(
                deconv_filters, 4, strides=2, padding="same", use_bias=False,
                kernel_initializer=head_initializer(), name=f"feat{i + 1}_deconv",
            )(x)
            x = keras.layers.ReLU(name=f"feat{i + 1}")(_bn(bn_momentum, f"feat{i + 1}_bn")(x))
            features[f"feat{i + 1}"] = x
        heat = keras.layers.Conv2D(num_keypoints, 1, kernel_initializer=head_initializer(), name="heatmaps")(x)
        super().__init__(inputs, heat, name=kwargs.pop("name", "resnet_deconv"), **kwargs)
        self.num_keypoints = num_keypoints
        self.input_size = input_size
        self.heatmap_size = input_size // 4
        self.deconv_filters = deconv_filters
        self.bn_momentum = bn_momentum
        self.spec = spec
        self._feature_tensors = features
        if encoder_weights:
            check_weights_file(encoder_weights, "ResNet-50 encoder")
            try:
                ref = keras.applications.ResNet50(
                    input_shape=(input_size, input_size, 3), include_top=False, weights=encoder_weights
                )
            except Exception as err:  # noqa: BLE001
                raise ValueError(f"Cannot load ResNet-50 weights from {encoder_weights}: {err}") from None
            copy_weights_by_name(ref, self)

