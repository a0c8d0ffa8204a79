"""The type checker runs over src/ as part of the suite (so `make test` runs it): mypy with the
configuration in pyproject.toml ([tool.mypy]), from the repository root."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_mypy_is_clean_on_src():
    out = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary"], cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, f"mypy found type errors in src/:\n{out.stdout}{out.stderr}"


def test_mypy_catches_a_type_error(tmp_path):
    """The check can fail: the same configuration refuses a module with a wrong argument type."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x: int) -> int:\n    return x\n\nf('not an int')\n")
    out = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"),
                          str(bad)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1 and "arg-type" in out.stdout, out.stdout + out.stderr
