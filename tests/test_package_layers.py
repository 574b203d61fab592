"""The package draws the data flow, and the code keeps to it: a layer imports only itself and the
layers below it (a source never imports the translator or an exporter; the translator knows no
source), and no module imports another module's private names (docs/architecture.md)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "kit_otel"

# lower imports nothing of higher; equal ranks may import each other
RANK = {
    "bridge": 0,  # the Go sources and their paths: data, no Python dependencies
    "state": 0,
    "model": 1,
    "sources": 2,
    "translate": 3,
    "export": 4,
    "config": 4,  # settings name exporters (checked with the rest); the pipeline reads settings
    "serve": 5,
    "cli": 5,
    "instrumentation": 5,
}
# what lives at kit_otel/ itself
TOP = {"__init__"}


def layer_of(module: str) -> str:
    """kit_otel.sources.spool -> sources; kit_otel.config -> config; kit_otel -> the top."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        yield name, path, path.name == "__init__.py"


def imports(module: str, path: Path, is_package: bool):
    """(imported module, imported names, line) of every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, [a.name for a in node.names], node.lineno


def test_every_subpackage_has_a_rank():
    for name, _, _ in modules():
        layer = layer_of(name)
        assert layer in RANK or layer in TOP, f"{name}: place it in a layer of RANK"


def layer_violations(found) -> list[str]:
    """Imports of a higher layer, for (module, path, is_package) triples."""
    wrong = []
    for name, path, is_package in found:
        mine = layer_of(name)
        if mine in TOP:
            continue
        for target, _, line in imports(name, path, is_package):
            if not target.startswith("kit_otel.") or layer_of(target) in TOP:
                continue
            theirs = layer_of(target)
            if RANK[theirs] > RANK[mine]:
                wrong.append(f"{path.name}:{line}: {mine} imports {target} ({theirs})")
    return wrong


def private_import_violations(found) -> list[str]:
    """`from x import _name` across modules, and a package's private module imported from
    outside that package."""
    wrong = []
    for name, path, is_package in found:
        package = name if is_package else name.rpartition(".")[0]
        for target, names, line in imports(name, path, is_package):
            if not target.startswith("kit_otel"):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            # a package's private module (instrumentation/_core.py) is for that package only
            module_private = any(part.startswith("_") and not part.startswith("__")
                                 for part in target.split("."))
            if private or (module_private and target.rpartition(".")[0] != package):
                wrong.append(f"{path.name}:{line}: from {target} import "
                             f"{', '.join(private) or '...'}")
    return wrong


def test_no_layer_imports_a_higher_one():
    wrong = layer_violations(modules())
    assert not wrong, "\n".join(wrong)


def test_sources_never_import_a_sink_or_the_translator():
    for name, path, is_package in modules():
        if layer_of(name) != "sources":
            continue
        for target, _, line in imports(name, path, is_package):
            assert layer_of(target) not in ("translate", "export", "serve", "cli"), \
                f"{path.relative_to(PACKAGE)}:{line} imports {target}"


def test_no_module_imports_private_names_of_another():
    wrong = private_import_violations(modules())
    assert not wrong, "\n".join(wrong)


LONG_MODULE_LINES = 500


def test_a_long_module_says_why_at_its_top():
    """One concept per module: a module past ~500 lines is split, or its docstring says why
    it is not (a sentence starting "Longer than")."""
    unexplained = []
    for name, path, _ in modules():
        text = path.read_text()
        if text.count("\n") > LONG_MODULE_LINES * 1.1:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "Longer than" not in doc:
                unexplained.append(f"{path.relative_to(PACKAGE)} ({text.count(chr(10))} lines)")
    assert not unexplained, unexplained


@pytest.mark.parametrize("module, source, layer_bad, private_bad", [
    ("kit_otel.serve.checkpoint", "from kit_otel.translate.translator import _Session\n",
     False, True),
    ("kit_otel.sources.spool", "from kit_otel.translate.translator import _Session\n", True, True),
    ("kit_otel.sources.spool", "from kit_otel.export.pipeline import Pipeline\n", True, False),
    ("kit_otel.model.events", "import kit_otel.serve.daemon\n", True, False),
    ("kit_otel.cli.doctor", "from kit_otel.instrumentation._core import Emitter\n", False, True),
    ("kit_otel.instrumentation.acp", "from ._core import Emitter\n", False, False),
    ("kit_otel.serve.daemon", "from kit_otel.translate.translator import Translator\n",
     False, False),
])
def test_the_checks_catch_what_they_are_for(tmp_path, module, source, layer_bad, private_bad):
    path = tmp_path / (module.rpartition(".")[2] + ".py")
    path.write_text(source)
    found = [(module, path, False)]
    assert bool(layer_violations(found)) is layer_bad
    assert bool(private_import_violations(found)) is private_bad
