"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def w300_dir() -> Path:
    """The real 300W faces (``shared/data/300w`` beside the repo, or $MOBILEFAN_300W_DIR); skips if absent."""
    path = Path(os.environ.get("MOBILEFAN_300W_DIR") or REPO_ROOT.parent / "shared/data/300w")
    if not path.is_dir():
        pytest.skip(f"real 300W data not found at {path} (set MOBILEFAN_300W_DIR or place shared/ beside the repo)")
    return path
