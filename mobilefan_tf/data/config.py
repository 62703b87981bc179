"""`AugmentConfig`: augmentation strengths, shared by every implementation.

Kept free of TensorFlow so the NumPy feeder (``mobilefan_tf.data.feeder``)
draws its augmentations from the same config as the tf.data pipeline.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths and probabilities.

    Attributes:
        rotation_deg: Max in-plane rotation (uniform in +-rotation_deg).
        rotation_prob: Probability of rotating at all.
        scale: (min, max) zoom factor, uniform.
        translate: Max shift, as a fraction of the input size, per axis.
        flip_prob: Probability of a horizontal flip (indices permuted by the spec).
        occlusion_prob: Probability of pasting one random rectangle.
        occlusion_size: (min, max) rectangle side, fraction of the input size.
        brightness: Max additive brightness change, fraction of 255.
        contrast: (min, max) contrast factor.
        saturation: (min, max) saturation factor.
        blur_prob: Probability of a Gaussian blur.
        blur_sigma: (min, max) blur sigma in input pixels.
    """

    rotation_deg: float = 30.0
    rotation_prob: float = 0.6
    scale: tuple[float, float] = (0.75, 1.25)
    translate: float = 0.05
    flip_prob: float = 0.5
    occlusion_prob: float = 0.3
    occlusion_size: tuple[float, float] = (0.1, 0.4)
    brightness: float = 0.2
    contrast: tuple[float, float] = (0.7, 1.3)
    saturation: tuple[float, float] = (0.7, 1.3)
    blur_prob: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 1.5)

    @classmethod
    def none(cls) -> AugmentConfig:
        """A config that changes nothing (crop only)."""
        return cls(
            rotation_prob=0.0, scale=(1.0, 1.0), translate=0.0, flip_prob=0.0, occlusion_prob=0.0,
            brightness=0.0, contrast=(1.0, 1.0), saturation=(1.0, 1.0), blur_prob=0.0,
        )

    @classmethod
    def geometric(cls) -> AugmentConfig:
        """Default geometry (rotation, scale, shift, flip), no photometric change."""
        return dataclasses.replace(
            cls.none(), rotation_prob=cls.rotation_prob, scale=cls.scale, translate=cls.translate, flip_prob=cls.flip_prob
        )
