"""Model presets: named, frozen configs and one `build_model` entry point."""

from __future__ import annotations

import dataclasses
from typing import Any

import keras

from mobilefan_tf.models.base import FEATURE_NAMES, LandmarkModelMixin
from mobilefan_tf.models.mobilefan import MobileFAN
from mobilefan_tf.models.teacher import HourglassTeacher, ResNetDeconvTeacher

_CLASSES = {"MobileFAN": MobileFAN, "HourglassTeacher": HourglassTeacher, "ResNetDeconvTeacher": ResNetDeconvTeacher}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A named architecture: the class and its constructor arguments."""

    name: str
    model_class: str
    kwargs: dict[str, Any]
    description: str = ""

    @property
    def input_size(self) -> int:
        return self.kwargs.get("input_size", 256)


PRESETS: dict[str, ModelConfig] = {
    c.name: c
    for c in (
        ModelConfig(
            "mobilefan", "MobileFAN",
            {"input_size": 256, "width": 1.0, "deconv_filters": 128},
            "Paper-faithful student: MobileNetV2 1.0 (320-ch trunk) + 3x128 k2/s2 deconvs, 256 in, 64x64 heatmaps.",
        ),
        ModelConfig(
            "mobilefan_lite", "MobileFAN",
            {"input_size": 128, "width": 0.5, "deconv_filters": 64},
            "Phone-speed student: MobileNetV2 0.5 + 3x64 deconvs, 128 in, 32x32 heatmaps.",
        ),
        ModelConfig(
            "hourglass", "HourglassTeacher",
            {"input_size": 256, "num_stacks": 2, "depth": 4, "channels": 256},
            "Teacher: 2-stack hourglass, 256 channels, 256 in.",
        ),
        ModelConfig(
            "hourglass_lite", "HourglassTeacher",
            {"input_size": 128, "num_stacks": 2, "depth": 3, "channels": 128},
            "Teacher for the lite student: 2-stack hourglass, 128 channels, 128 in.",
        ),
        ModelConfig(
            "resnet50_deconv", "ResNetDeconvTeacher",
            {"input_size": 256, "deconv_filters": 256},
            "The authors' teacher: ResNet-50 + 3x256 k4/s2 deconvs, 256 in.",
        ),
    )
}


def build_model(preset: str | ModelConfig, num_keypoints: int = 68, **overrides) -> keras.Model:
    """Builds a preset by name, with any constructor argument overridden.

    Example: ``build_model("mobilefan_lite", num_keypoints=98, spec="wflw")``.
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"Unknown model preset {preset!r} (known: {sorted(PRESETS)})")
        preset = PRESETS[preset]
    kwargs = {**preset.kwargs, **overrides, "num_keypoints": num_keypoints}
    kwargs.setdefault("name", preset.name)
    return _CLASSES[preset.model_class](**kwargs)


def final_heatmaps(outputs):
    """The prediction of a model's outputs: the last stack of a multi-stack model."""
    return outputs[-1] if isinstance(outputs, (list, tuple)) else outputs


__all__ = [
    "FEATURE_NAMES", "PRESETS", "HourglassTeacher", "LandmarkModelMixin", "MobileFAN",
    "ModelConfig", "ResNetDeconvTeacher", "build_model", "final_heatmaps",
]
