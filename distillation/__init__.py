"""Knowledge distillation for MobileFAN: FAD and FSD losses and the `Distiller`."""

from distillation.distiller import Distiller, check_landmark_model, load_teacher
from distillation.losses import (
    cosine_similarity_matrix,
    feature_aligned_loss,
    feature_similarity_loss,
    make_adaptor,
)

__all__ = [
    "Distiller", "check_landmark_model", "cosine_similarity_matrix", "feature_aligned_loss",
    "feature_similarity_loss", "load_teacher", "make_adaptor",
]
