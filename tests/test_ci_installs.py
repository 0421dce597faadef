"""CI installs what the tests import: every third-party module imported anywhere in
tests/, examples/, bench/ or the package (also inside functions, and through
pytest.importorskip) comes from a pip package that .ci/run installs by name.

A clean CI machine has nothing else, so a missing install step shows up here on any
machine, not only as an ImportError on a fresh one."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shlex
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCANNED = ("tests", "examples", "bench", os.path.join("python", "npquant"))
# Imported only where no test runs them, each with the reason (none at present).
OPTIONAL: dict[str, str] = {}


def _python_files():
    for top in SCANNED:
        for root, _, files in os.walk(os.path.join(REPO, top)):
            yield from (os.path.join(root, f) for f in sorted(files) if f.endswith(".py"))


def _local_modules():
    """Modules of this repository imported by plain name (test helpers, bench scripts)."""
    names = {"npquant"}
    for path in _python_files():
        names.add(os.path.splitext(os.path.basename(path))[0])
    return names


def _imported_modules(path):
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) == "importorskip"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            yield node.args[0].value.split(".")[0]


def _ci_pip_packages():
    """The package names of .ci/run's `pip install` lines (versions stripped)."""
    text = open(os.path.join(REPO, ".ci", "run"), encoding="utf-8").read().replace("\\\n", " ")
    names = set()
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if "pip" in words and "install" in words:
            for w in words[words.index("install") + 1 :]:
                if not w.startswith("-") and w != ".":
                    names.add(re.split(r"[<>=!~\[ ]", w)[0].lower().replace("_", "-"))
    return names


def third_party_imports():
    local, stdlib = _local_modules(), set(sys.stdlib_module_names)
    found = {}
    for path in _python_files():
        for mod in _imported_modules(path):
            if mod not in local and mod not in stdlib and mod not in OPTIONAL:
                found.setdefault(mod, os.path.relpath(path, REPO))
    return found


def test_every_test_import_is_installed_by_ci():
    installed = _ci_pip_packages()
    assert {"pytest", "numpy", "torch"} <= installed, installed  # the parser read the pip line
    dists = importlib.metadata.packages_distributions()
    imports = third_party_imports()
    assert {"numpy", "pytest", "torch", "onnxruntime"} <= set(imports), imports  # the scan saw them
    missing = {}
    for mod, where in sorted(imports.items()):
        names = {d.lower().replace("_", "-") for d in dists.get(mod, [])}
        if not names & installed:
            missing[mod] = (where, sorted(names) or "not installed here")
    assert not missing, (
        f".ci/run does not pip-install what these imports need (module: first file, "
        f"distribution): {missing}; add the distribution to .ci/run's pip line"
    )


@pytest.mark.parametrize(
    "line, expect", [("python3 -m pip install --quiet a 'b==1.0' c[x]", {"a", "b", "c"}), ("echo pip", set())]
)
def test_pip_line_parser(tmp_path, monkeypatch, line, expect):
    ci = tmp_path / ".ci"
    ci.mkdir()
    (ci / "run").write_text(line + "\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", str(tmp_path))
    assert _ci_pip_packages() == expect
