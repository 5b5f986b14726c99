"""The layout's rules, checked on the source: no import cycle, the domain never imports the command line, and
function-local imports only where they defer a heavy import (each marked ``# deferred: <what>``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "recplatform"
CYCLES_TOOL = ROOT.parent / "shared" / "tools" / "import_cycles.py"


def _modules() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(PACKAGE.rglob("*.py"))}


def _imported_names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return []


@pytest.mark.skipif(not CYCLES_TOOL.exists(), reason=f"{CYCLES_TOOL} is absent")
def test_no_import_cycle():
    run = subprocess.run([sys.executable, str(CYCLES_TOOL), str(ROOT), "recplatform"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "", f"import cycles:\n{run.stdout}"


def test_the_domain_never_imports_the_command_line():
    offenders = [f"{path.relative_to(ROOT)}:{node.lineno}"
                 for path, tree in _modules().items() if PACKAGE / "cli" not in path.parents
                 for node in ast.walk(tree) for name in _imported_names(node)
                 if name == "recplatform.cli" or name.startswith("recplatform.cli.")]
    assert offenders == []


def test_function_local_imports_are_marked_deferred():
    unmarked = []
    for path, tree in _modules().items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    text = "\n".join(lines[node.lineno - 1:node.end_lineno])
                    if "# deferred:" not in text:
                        unmarked.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert unmarked == [], "function-local imports must defer a heavy import and say so:\n" + "\n".join(unmarked)
