"""tests/lint.sh's checks can fail: each tool, with this repository's configuration, rejects a
small bad file and accepts its fixed version (so a green lint step means something)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_ruff_check_rejects_unused_and_unsorted_imports(tmp_path: Path) -> None:
    pytest.importorskip("ruff")
    config = str(REPO / "pyproject.toml")
    (tmp_path / "bad.py").write_text("import sys\nimport os\n\nprint(os.sep)\n")
    (tmp_path / "good.py").write_text("import os\n\nprint(os.sep)\n")
    bad = _run("-m", "ruff", "check", "--no-cache", "--config", config, "bad.py", cwd=tmp_path)
    assert bad.returncode == 1 and "F401" in bad.stdout and "I001" in bad.stdout, bad.stdout
    good = _run("-m", "ruff", "check", "--no-cache", "--config", config, "good.py", cwd=tmp_path)
    assert good.returncode == 0, good.stdout


def test_ruff_format_check_rejects_unformatted_code(tmp_path: Path) -> None:
    pytest.importorskip("ruff")
    config = str(REPO / "pyproject.toml")
    (tmp_path / "bad.py").write_text("x=[1,2 ,3]\n")
    (tmp_path / "good.py").write_text("x = [1, 2, 3]\n")
    bad = _run("-m", "ruff", "format", "--check", "--no-cache", "--config", config, "bad.py", cwd=tmp_path)
    assert bad.returncode == 1, bad.stdout
    good = _run("-m", "ruff", "format", "--check", "--no-cache", "--config", config, "good.py", cwd=tmp_path)
    assert good.returncode == 0, good.stdout


def test_mypy_strict_rejects_an_unannotated_function(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    (tmp_path / "bad.py").write_text("def twice(x):\n    return 2 * x\n")
    (tmp_path / "good.py").write_text("def twice(x: int) -> int:\n    return 2 * x\n")
    common = ("-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"))
    bad = _run(*common, "bad.py", cwd=tmp_path)
    assert bad.returncode == 1 and "no-untyped-def" in bad.stdout, bad.stdout
    good = _run(*common, "good.py", cwd=tmp_path)
    assert good.returncode == 0, good.stdout


def test_clang_format_rejects_unformatted_cpp(tmp_path: Path) -> None:
    pytest.importorskip("clang_format")
    shutil.copy(REPO / ".clang-format", tmp_path / ".clang-format")
    (tmp_path / "bad.cc").write_text("int  f( int x ){return x+1;}\n")
    (tmp_path / "good.cc").write_text("int f(int x) { return x + 1; }\n")
    fmt = ("-c", "import sys; from clang_format import clang_format; sys.exit(clang_format())", "--dry-run", "--Werror")
    bad = _run(*fmt, "bad.cc", cwd=tmp_path)
    assert bad.returncode != 0 and "bad.cc" in bad.stderr, bad.stderr
    good = _run(*fmt, "good.cc", cwd=tmp_path)
    assert good.returncode == 0, good.stderr


def test_lint_script_is_run_by_the_suite() -> None:
    """tests/run.sh runs tests/lint.sh, which fails in CI when a tool is missing."""
    run_sh = (REPO / "tests" / "run.sh").read_text()
    lint_sh = (REPO / "tests" / "lint.sh").read_text()
    assert "bash tests/lint.sh" in run_sh
    assert 'if [ "${CI:-}" = true ]' in lint_sh and "exit 1" in lint_sh
    assert os.access(REPO / "tests" / "lint.sh", os.X_OK)


def test_installed_package_is_typed() -> None:
    """The installed npquant (a wheel in tests/run.sh) ships py.typed and the extension's stub,
    and the stub names every public attribute of the extension."""
    import importlib.resources

    import npquant._C

    root = importlib.resources.files("npquant")
    assert root.joinpath("py.typed").is_file()
    stub = root.joinpath("_C.pyi").read_text()
    public = [n for n in dir(npquant._C) if not n.startswith("_")]
    assert public and all(f"def {n}(" in stub or f"class {n}" in stub or f"{n}:" in stub for n in public)
