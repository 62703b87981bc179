"""Knowledge distillation for MobileFAN: FAD and FSD losses and the `Distiller`.

The losses are plain Keras ops (any backend); the `Distiller` is TensorFlow.
It is imported on first use, so ``distillation.losses`` also loads on a
machine with JAX and no TensorFlow (see ``experiments/jax_train.py``).
"""

from .losses import (
    cosine_similarity_matrix,
    feature_aligned_loss,
    feature_similarity_loss,
    make_adaptor,
)

_LAZY = ("Distiller", "check_landmark_model", "load_teacher")

__all__ = [
    "Distiller", "check_landmark_model", "cosine_similarity_matrix", "feature_aligned_loss",
    "feature_similarity_loss", "load_teacher", "make_adaptor",
]


def __getattr__(name):
    if name in _LAZY:
        from . import distiller

        return getattr(distiller, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
