"""A face folder packed into one ``.npz`` (JPEG bytes + landmarks), for machines without the data.

The GPU machines lent to this project have no copy of 300W and get only a
few carried files: `pack_faces` writes the faces' original JPEG bytes,
landmarks and names into one file (~53 MB for the 2,012 300W training
faces), and `read_packed` turns it back into in-memory `FaceSample`s, so
every script that takes ``--data_dir`` also takes a packed file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mobilefan_tf.data.readers import FaceSample, read_300w


def pack_faces(data_dir: str, out_path: str, index_base: int = 0) -> dict:
    """Packs a 300W-style folder (``.jpg``/``.png`` + ``.pts``, searched recursively) into one ``.npz``.

    Returns:
        ``{"faces": n, "bytes": size of the file}``.
    """
    samples = read_300w(data_dir, index_base=index_base)
    if not samples:
        raise ValueError(f"{data_dir}: no faces to pack")
    blobs = [Path(s.image_path).read_bytes() for s in samples]
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    np.savez(
        out_path,
        jpeg=np.frombuffer(b"".join(blobs), np.uint8),
        offsets=offsets,
        landmarks=np.stack([s.landmarks for s in samples]).astype(np.float32),
        names=np.array([s.name for s in samples]),
    )
    return {"faces": len(samples), "bytes": os.path.getsize(out_path)}


def read_packed(path: str) -> list[FaceSample]:
    """The faces of a `pack_faces` file, as `FaceSample`s with decoded RGB images (needs cv2)."""
    import cv2

    if not os.path.isfile(path):
        raise FileNotFoundError(f"packed faces not found: {path}")
    try:
        z = np.load(path)
        jpeg, offsets, landmarks, names = z["jpeg"], z["offsets"], z["landmarks"], z["names"]
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as err:
        raise ValueError(f"{path}: not a packed faces file ({type(err).__name__})") from None
    samples = []
    for i, name in enumerate(names):
        image = cv2.imdecode(jpeg[offsets[i]:offsets[i + 1]], cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{path}: image {i} ({name}) does not decode")
        samples.append(FaceSample(str(name), None, np.ascontiguousarray(image[:, :, ::-1]), landmarks[i]))
    return samples
