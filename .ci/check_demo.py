"""Checks what `mobilefan demo` wrote, run by the virtual environment that installed the wheel.

    python .ci/check_demo.py OUT_DIR CHECKOUT

Exits non-zero, with one line saying what is wrong, unless:
  * ``mobilefan_tf`` (and ``mobilefan_tf.distillation``) import from this
    environment's site-packages (the wheel), not from the checkout;
  * OUT_DIR/landmarks.json holds one face of 68 finite landmarks inside the
    photo and near its face box, with the photo's size;
  * OUT_DIR/landmarks.png is the photo with the box and landmarks drawn on
    it: same size, changed pixels, and every changed pixel near the box.
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig

import numpy as np
from PIL import Image


def fail(message: str) -> None:
    sys.exit(f"check_demo: {message}")


def main(out: str, checkout: str) -> None:
    try:
        import mobilefan_tf.distillation

        import mobilefan_tf
    except ImportError as err:
        fail(f"cannot import the installed package: {err}")

    site = os.path.realpath(sysconfig.get_paths()["purelib"])
    checkout = os.path.realpath(checkout)
    for module in (mobilefan_tf, mobilefan_tf.distillation):
        where = os.path.realpath(module.__file__)
        if not where.startswith(site + os.sep) or where.startswith(checkout + os.sep):
            fail(f"{module.__name__} imported from {where}, not from the wheel in {site}")
    print(f"check_demo: mobilefan_tf from {os.path.dirname(mobilefan_tf.__file__)}")

    path = os.path.join(out, "landmarks.json")
    with open(path) as f:
        record = json.load(f)
    photo = np.asarray(Image.open(os.path.join(out, "astronaut.png")).convert("RGB"))
    h, w = photo.shape[:2]
    if (record.get("width"), record.get("height")) != (w, h):
        fail(f"{path}: size {record.get('width')}x{record.get('height')}, the photo is {w}x{h}")
    if len(record.get("faces", [])) != 1:
        fail(f"{path}: {len(record.get('faces', []))} faces, the demo photo has one")
    face = record["faces"][0]
    points = np.asarray(face["landmarks"], np.float64)
    x0, y0, x1, y1 = face["box"]
    if points.shape != (68, 2) or not np.isfinite(points).all():
        fail(f"{path}: landmarks of shape {points.shape} (want 68 finite (x, y))")
    margin = 0.25 * max(x1 - x0, y1 - y0)
    inside = ((points >= [x0 - margin, y0 - margin]) & (points <= [x1 + margin, y1 + margin])).all()
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h) or not inside:
        fail(f"{path}: box {face['box']} or landmarks outside the photo / the face box")

    drawing_path = os.path.join(out, "landmarks.png")
    drawing = np.asarray(Image.open(drawing_path).convert("RGB"))
    if drawing.shape != photo.shape:
        fail(f"{drawing_path}: shape {drawing.shape}, the photo is {photo.shape}")
    ys, xs = np.nonzero((drawing != photo).any(-1))
    if len(xs) < 68:
        fail(f"{drawing_path}: only {len(xs)} pixels differ from the photo (nothing drawn?)")
    pad = 10  # circle radius and line width
    if xs.min() < x0 - margin - pad or xs.max() > x1 + margin + pad or ys.min() < y0 - margin - pad \
            or ys.max() > y1 + margin + pad:
        fail(f"{drawing_path}: drawn pixels outside the face box {face['box']}")
    print(f"check_demo: 1 face, box {face['box']}, 68 landmarks, {len(xs)} drawn pixels: OK")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
