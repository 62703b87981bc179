"""Data path: readers, face crops, augmentation, tf.data pipeline, synthetic faces.

The TFDS builders live in `mobilefan_tf.data.tfds_builders` (imported on
demand: tensorflow-datasets is slow to import). `build_dataset` (tf.data)
is imported on first use, so readers, transforms and `AugmentConfig` also
load on a machine without TensorFlow.
"""

from mobilefan_tf.data.config import AugmentConfig
from mobilefan_tf.data.readers import (
    WFLW_ATTRIBUTES,
    FaceSample,
    SampleList,
    read_300w,
    read_cofw,
    read_pts,
    read_split_list,
    read_wflw,
    split_300w,
    split_train_val,
    subset_300w,
    wflw_subset,
    write_split_list,
)
from mobilefan_tf.data.synthetic import synthetic_faces
from mobilefan_tf.data.transforms import apply_affine, compose_affine, crop_face, crop_matrix, face_box, invert_affine
from mobilefan_tf.data.visualize import draw_landmarks, sample_grid

__all__ = [
    "WFLW_ATTRIBUTES",
    "AugmentConfig",
    "FaceSample",
    "SampleList",
    "apply_affine",
    "build_dataset",
    "compose_affine",
    "crop_face",
    "crop_matrix",
    "draw_landmarks",
    "face_box",
    "invert_affine",
    "read_300w",
    "read_cofw",
    "read_pts",
    "read_split_list",
    "read_wflw",
    "sample_grid",
    "split_300w",
    "split_train_val",
    "subset_300w",
    "synthetic_faces",
    "wflw_subset",
    "write_split_list",
]


def __getattr__(name):
    if name == "build_dataset":
        from mobilefan_tf.data.pipeline import build_dataset

        return build_dataset
    raise AttributeError(f"module 'mobilefan_tf.data' has no attribute {name!r}")
