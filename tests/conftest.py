"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Seconds each slow file took (`pytest --junitxml`, summed per file, 2026-12-08, beside a training run). xdist hands
# whole files to the two workers in collection order (`--no-loadscope-reorder` in pyproject.toml), so the longest
# go first and the short files fill the gaps at the end: the two workers then finish together instead of one
# waiting on a long file dealt last (simulated on those times: 1182 s against 1311 s with xdist's own order, by
# number of tests per file). Files not listed are short and keep their order after these.
FILE_SECONDS = {
    "test_experiments_smoke.py": 389,
    "test_export.py": 252,
    "test_distill_unlabeled.py": 205,
    "test_experiments_resume.py": 200,
    "test_distill_mirrored.py": 162,
    "test_learning.py": 146,
    "test_distill_backends.py": 138,
    "test_custom_datasets.py": 125,
    "test_backends.py": 124,
    "test_cli.py": 119,
    "test_multi_worker.py": 112,
    "test_shipped_models.py": 75,
    "test_distill_training.py": 72,
    "test_distill_tflite_teacher.py": 70,
    "test_models.py": 48,
    "test_distill_cross_resolution.py": 39,
    "test_distill_losses.py": 32,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest files first, each file's tests in their own order (a stable sort; they may share module fixtures)."""
    items.sort(key=lambda item: -FILE_SECONDS.get(item.path.name, 0))


@pytest.fixture(scope="session")
def w300_dir() -> Path:
    """The real 300W faces (``shared/data/300w`` beside the repo, or $MOBILEFAN_300W_DIR); skips if absent."""
    path = Path(os.environ.get("MOBILEFAN_300W_DIR") or REPO_ROOT.parent / "shared/data/300w")
    if not path.is_dir():
        pytest.skip(f"real 300W data not found at {path} (set MOBILEFAN_300W_DIR or place shared/ beside the repo)")
    return path
