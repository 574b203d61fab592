"""docs/architecture.md stays true to the code: every module, class, function and method it
names in backticks exists (the conventions are stated at the top of the page)."""

import ast
import functools
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "kit_otel"
PAGE = ROOT / "docs" / "architecture.md"

CODE_SPAN = re.compile(r"`([^`\n]+)`")
MODULE_FILE = re.compile(r"^[\w/]+\.(?:py|go)$")
DOTTED = re.compile(r"^(?:kit_otel|opentelemetry)(?:\.\w+)+$")
CALLABLE = re.compile(r"^(?:([A-Z]\w*)\.)?(\w+)\(\)$")
CLASS = re.compile(r"^[A-Z][a-z]\w*$")  # CamelCase, not a CONSTANT


@functools.lru_cache(maxsize=1)
def definitions() -> tuple[set[str], set[str], set[tuple[str, str]]]:
    """Classes, functions and (class, method) pairs defined anywhere in the package."""
    classes, functions, methods = set(), set(), set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                classes.add(node.name)
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        methods.add((node.name, item.name))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.add(node.name)
    return classes, functions, methods


def importable(dotted: str) -> bool:
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def cited_names() -> list[str]:
    return CODE_SPAN.findall(PAGE.read_text())


def check(name: str, classes, functions, methods) -> str | None:
    """Why `name` is not in the code, or None when it is (or is not a code name)."""
    if MODULE_FILE.match(name):
        return None if (PACKAGE / name).is_file() or (ROOT / name).is_file() \
            else "no such file in src/kit_otel or the repository"
    if name.endswith("/") and "." not in name:
        return None if (PACKAGE / name).is_dir() or (ROOT / name).is_dir() \
            else "no such directory"
    if DOTTED.match(name.removesuffix("()")):
        return None if importable(name.removesuffix("()")) else "not importable"
    match = CALLABLE.match(name)
    if match:
        cls, func = match.groups()
        if cls:
            return None if (cls, func) in methods else f"no method {func} in a class {cls}"
        return None if func in functions or any(m == func for _, m in methods) \
            else "no such function"
    if CLASS.match(name):
        return None if name in classes else "no such class"
    return None  # not a code name (a path, a metric, an event kind, a command)


def test_the_page_cites_code_names():
    names = cited_names()
    assert sum(1 for name in names if CALLABLE.match(name)) >= 20
    assert sum(1 for name in names if MODULE_FILE.match(name)) >= 25


def test_every_module_of_the_package_has_its_place_on_the_page():
    text = PAGE.read_text()
    modules = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
                     if p.name != "__init__.py")
    missing = [m for m in modules if f"`{m}`" not in text]
    assert not missing, f"docs/architecture.md does not place: {missing}"


def test_the_checker_refuses_names_that_do_not_exist():
    defs = definitions()
    assert check("Translator.process()", *defs) is None
    assert check("Translator.no_such_method()", *defs)
    assert check("no_such_function()", *defs)
    assert check("NoSuchClass", *defs)
    assert check("no_such.py", *defs)
    assert check("kit_otel.no_such_module", *defs)
    assert check("opentelemetry.sdk.trace.NoSuchThing", *defs)


@pytest.mark.parametrize("name", sorted(set(cited_names())))
def test_every_cited_name_exists(name):
    reason = check(name, *definitions())
    assert reason is None, f"docs/architecture.md cites `{name}`: {reason}"
