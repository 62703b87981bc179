"""Unlabelled faces for distillation: images without landmarks, framed by the teacher.

A face without landmarks still needs a crop: the same square that a labelled
face gets from its landmarks' bounding box. Two ways to find that box:

* ``box="teacher"`` (folders of face crops): the teacher runs on the whole
  image, resized to its input, and the box of its predicted landmarks frames
  the face. The crop is then built from that box exactly as for labelled
  faces (`build_dataset`'s crop_scale), so unlabelled crops look like
  labelled ones.
* ``box="detector"`` (photos): `mobilefan_tf.predictor.Predictor` with the
  teacher finds every face (its face detector, then the teacher); each face
  becomes one sample, framed by the box of the teacher's landmarks.

Either way the landmarks are *not* kept: during training the teacher's
outputs on each augmented view are the only targets (see `Distiller`).
"""

from __future__ import annotations

import os

import numpy as np

from mobilefan_tf.data import FaceSample, face_box

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
BOX_MODES = ("teacher", "detector")


def list_images(directory: str) -> list[str]:
    """Image files under `directory` (recursive, sorted).

    Raises:
        FileNotFoundError: No such folder.
        ValueError: The folder holds no image files.
    """
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Unlabelled-face folder not found: {directory}")
    paths = sorted(
        os.path.join(root, f)
        for root, _, files in os.walk(directory)
        for f in files
        if f.lower().endswith(IMAGE_SUFFIXES)
    )
    if not paths:
        raise ValueError(f"{directory}: no images ({', '.join(IMAGE_SUFFIXES)}) in the unlabelled-face folder")
    return paths


def _read_rgb(path: str) -> np.ndarray:
    import cv2

    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: cannot decode the image")
    return np.ascontiguousarray(image[:, :, ::-1])


def teacher_boxes(teacher, images: list[np.ndarray], batch_size: int = 16) -> np.ndarray:
    """Face boxes [N, 4] (x0, y0, x1, y1, image pixels) from the teacher's landmarks on whole images.

    Each image [H, W, 3] is resized to the teacher's S x S input (pixel
    centres map by u = (x + 0.5) * S / W - 0.5), the teacher predicts, and the
    landmarks are mapped back before their bounding box is taken.
    """
    import cv2

    size = teacher.input_size
    crops, scales = [], []
    for image in images:
        h, w = image.shape[:2]
        crops.append(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))
        scales.append((w / size, h / size))
    landmarks, _ = teacher.predict_landmarks(np.stack(crops).astype(np.float32), batch_size=batch_size)
    scales = np.asarray(scales, np.float32)[:, None, :]
    return face_box((landmarks + 0.5) * scales - 0.5)


def read_unlabeled(
    directory: str,
    teacher,
    box: str = "teacher",
    teacher_path: str | None = None,
    max_images: int | None = None,
) -> list[FaceSample]:
    """Unlabelled `FaceSample`s (landmarks None, `box` set) for every face in a folder of images.

    Args:
        directory: Folder searched recursively for images.
        teacher: The (loaded) teacher model; frames the faces.
        box: ``"teacher"`` (each image is one face crop) or ``"detector"``
            (photos: every detected face; needs `teacher_path`).
        teacher_path: The teacher's file, for ``box="detector"`` (`Predictor` loads it).
        max_images: Use at most this many images (sorted order).

    Returns:
        Samples with ``image_path`` set (decoded in the pipeline) and
        ``attributes["unlabeled"] = True``; photos where no face is found
        are left out.

    Raises:
        FileNotFoundError / ValueError: Missing or empty folder, an image
            that cannot be decoded (named), an unknown box mode.
    """
    if box not in BOX_MODES:
        raise ValueError(f"Unknown unlabelled box mode {box!r}: use one of {BOX_MODES}")
    paths = list_images(directory)[:max_images]
    samples = []
    if box == "teacher":
        for start in range(0, len(paths), 64):  # bounded memory for large folders
            chunk = paths[start:start + 64]
            boxes = teacher_boxes(teacher, [_read_rgb(p) for p in chunk])
            for path, b in zip(chunk, boxes, strict=True):
                samples.append(_sample(directory, path, b, 0))
        return samples
    if teacher_path is None:
        raise ValueError("box='detector' needs teacher_path (the Predictor loads the teacher file)")
    from mobilefan_tf.predictor import Predictor

    predictor = Predictor(teacher_path, flip_test=False)
    for path in paths:
        for i, face in enumerate(predictor.predict(_read_rgb(path))):
            samples.append(_sample(directory, path, face_box(np.asarray(face["landmarks"], np.float32)), i))
    return samples


def _sample(directory: str, path: str, box: np.ndarray, index: int) -> FaceSample:
    name = os.path.splitext(os.path.relpath(path, directory))[0]
    return FaceSample(
        f"unlabeled/{name}/{index}", path, None, None, box=np.asarray(box, np.float32), attributes={"unlabeled": True}
    )
