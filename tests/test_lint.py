"""The code base stays ruff clean (config in pyproject.toml)."""

import shutil
import subprocess
from pathlib import Path

import pytest


def test_ruff_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([ruff, "check", "."], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
