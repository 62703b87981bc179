"""Where the shipped, trained models live (`mobilefan_tf/assets/`)."""

from __future__ import annotations

import os

ASSETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
# Looked for in this order when no name is given.
DEFAULT_MODEL_FILES = ("mobilefan_300w.keras", "mobilefan_lite_300w.keras", "mobilefan_300w.tflite")


class NoDefaultModelError(FileNotFoundError):
    """No trained model is shipped in `ASSETS_DIR` (yet)."""


def shipped_models() -> list[str]:
    """Paths of every model file in the assets folder (.keras, .tflite, SavedModel dirs)."""
    if not os.path.isdir(ASSETS_DIR):
        return []
    found = []
    for name in sorted(os.listdir(ASSETS_DIR)):
        path = os.path.join(ASSETS_DIR, name)
        if name.endswith((".keras", ".tflite")) or os.path.isfile(os.path.join(path, "saved_model.pb")):
            found.append(path)
    return found


def default_model_path(name: str | None = None) -> str:
    """The shipped model to use when none is given.

    Args:
        name: A file name in the assets folder; None takes the first of
            `DEFAULT_MODEL_FILES` that exists.

    Raises:
        NoDefaultModelError: one line, when it is not there.
    """
    names = (name,) if name else DEFAULT_MODEL_FILES
    for candidate in names:
        path = os.path.join(ASSETS_DIR, candidate)
        if os.path.exists(path):
            return path
    raise NoDefaultModelError(
        f"no default model is shipped yet (looked for {', '.join(names)} in {ASSETS_DIR}): pass --model PATH"
    )
