"""Knowledge distillation for MobileFAN: FAD and FSD losses and the `Distiller`.

Everything here is plain Keras (any backend): the losses are keras.ops and the
`Distiller` trains through Keras' own per-backend step (TensorFlow, JAX). It is
imported on first use, so ``distillation.losses`` loads without it.
"""

from .losses import (
    cosine_similarity_matrix,
    feature_aligned_loss,
    feature_similarity_loss,
    make_adaptor,
)

_LAZY = ("Distiller", "check_landmark_model", "load_teacher")
_LAZY_TFLITE = ("TFLiteTeacher", "with_teacher_heatmaps")

__all__ = [
    "Distiller", "TFLiteTeacher", "check_landmark_model", "cosine_similarity_matrix", "feature_aligned_loss",
    "feature_similarity_loss", "load_teacher", "make_adaptor", "with_teacher_heatmaps",
]


def __getattr__(name):
    if name in _LAZY:
        from . import distiller

        return getattr(distiller, name)
    if name in _LAZY_TFLITE:
        from . import tflite_teacher

        return getattr(tflite_teacher, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
