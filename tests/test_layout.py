"""The house's layout rules that no linter checks: package size and package docstrings."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [
    p.parent
    for top in ("analytics", "models", "dashboard", "sample_data")
    for p in sorted((ROOT / top).rglob("__init__.py"))
]
MAX_MODULES = 12  # the restructure issue: no package keeps more than 12 modules side by side


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_package_keeps_more_than_twelve_modules_side_by_side(package: Path):
    modules = [p.name for p in package.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(modules) <= MAX_MODULES, (package, sorted(modules))


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_package_says_what_lives_there(package: Path):
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
    assert doc and len(doc.split()) >= 8, package


def test_every_folder_of_python_modules_is_a_package():
    for top in ("analytics", "models", "dashboard", "sample_data"):
        for folder in (ROOT / top).rglob("*"):
            if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py")):
                assert (folder / "__init__.py").exists(), folder


def _function_local_imports(path: Path) -> list[tuple[int, str, str]]:
    lines = path.read_text().split("\n")
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import | ast.ImportFrom):
                    found.append((sub.lineno, lines[sub.lineno - 1], lines[sub.lineno - 2]))
    return found


@pytest.mark.parametrize("top", ["analytics", "models", "dashboard", "sample_data"])
def test_function_local_imports_say_why(top: str):
    """The restructure issue: function-local imports remain only where they buy start-up time,
    and say so in a comment (on the line or the line above); a cycle is untied by moving code."""
    silent = [
        f"{path.relative_to(ROOT)}:{lineno}"
        for path in sorted((ROOT / top).rglob("*.py"))
        for lineno, line, above in _function_local_imports(path)
        if "#" not in line and not above.strip().startswith("#")
    ]
    assert not silent, silent


def test_test_modules_have_unique_basenames():
    """pytest imports test modules by basename (tests/ has no __init__.py files), so two
    ``test_data.py`` in different folders stop the whole run with "import file mismatch"."""
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(ROOT)} and {path.relative_to(ROOT)}")
        seen.setdefault(path.name, path)
    assert not clashes, "same basename: " + "; ".join(clashes)
