"""JAX in float64 from one module: whichever engine module is imported first, arrays are float64."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gwtools"
PRECISION = "gwtools.ringdown.precision"


def _fresh_python(code: str) -> str:
    """stdout of ``code`` run by a new interpreter (nothing imported yet) from the repository root."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("module", ["gwtools.ringdown.likelihood", "gwtools.ringdown.harmonics"])
def test_importing_one_engine_module_alone_gives_float64(module):
    code = f"import {module}; import jax.numpy as jnp; print(jnp.zeros(1).dtype, jnp.asarray(0.1).dtype)"
    assert _fresh_python(code) == "float64 float64"


def _imports(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return []


def _scopes(tree: ast.Module):
    """The module and every function in it, each with the statements directly in its body."""
    yield tree
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _direct_imports(scope) -> list[tuple[int, list[str]]]:
    """(line, imported names) of the import statements of a scope, not those of nested functions."""
    found, stack = [], list(scope.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        names = _imports(node)
        if names:
            found.append((node.lineno, names))
        stack.extend(ast.iter_child_nodes(node))
    return sorted(found)


def _jax_without_precision_first(path: Path) -> list[int]:
    """Lines of ``path`` that import JAX where the precision module was not imported first.

    Importing it earlier in the module counts for every function of the module; in a function,
    an import earlier in that function counts (so lazily importing modules stay JAX-free).
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    module_imports = _direct_imports(tree)
    module_first = min((line for line, names in module_imports if PRECISION in names), default=None)
    bad = []
    for scope in _scopes(tree):
        imports = module_imports if scope is tree else _direct_imports(scope)
        own_first = min((line for line, names in imports if PRECISION in names), default=None)
        for line, names in imports:
            if not any(name == "jax" or name.startswith("jax.") for name in names):
                continue
            module_before = module_first is not None and (scope is not tree or module_first < line)
            if not module_before and not (own_first is not None and own_first < line):
                bad.append(line)
    return bad


def test_every_package_import_of_jax_comes_after_the_precision_module():
    modules = [p for p in sorted(PACKAGE.rglob("*.py")) if p != PACKAGE / "ringdown" / "precision.py"]
    offending = {str(p.relative_to(ROOT)): lines
                 for p in modules if (lines := _jax_without_precision_first(p))}
    assert offending == {}
    # the check sees the imports it is about: the engine's JAX modules and the lazy ones
    importing = {p.stem for p in modules for scope in _scopes(ast.parse(p.read_text()))
                 for _, names in _direct_imports(scope) if any(name.split(".")[0] == "jax" for name in names)}
    engine = {"qnm", "harmonics", "likelihood", "firefly", "blackjax_engine", "pipeline", "sampling", "priors"}
    assert engine <= importing


def test_the_check_finds_a_jax_import_before_the_precision_module(tmp_path):
    early = tmp_path / "early.py"
    early.write_text(f"import jax\nimport {PRECISION}\n\n\ndef f():\n    import jax.numpy as jnp\n")
    assert _jax_without_precision_first(early) == [1]
    lazy = tmp_path / "lazy.py"
    lazy.write_text(f"def f():\n    import jax\n\n\ndef g():\n    import {PRECISION}\n    import jax\n")
    assert _jax_without_precision_first(lazy) == [2]


def test_jax_x64_is_switched_in_one_place_only():
    sources = sorted(path for folder in ("gwtools", "tests", "benchmarks") for path in (ROOT / folder).rglob("*.py"))
    switching = [str(p.relative_to(ROOT)) for p in sources
                 if '"jax_enable_x64"' in p.read_text() and p.name != Path(__file__).name]
    assert switching == ["gwtools/ringdown/precision.py"]
