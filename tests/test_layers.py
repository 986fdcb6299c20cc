"""The package's imports run one way: data -> models -> train -> unlearn -> evaluate -> bench,
service, cli. Checked on the source, function-level imports included."""

import ast
from pathlib import Path

import recunlearn

LAYERS = {"data": 0, "models": 1, "train": 2, "unlearn": 3, "evaluate": 4}
TOP = 5  # bench, service, cli
SOURCE = Path(recunlearn.__file__).parent


def layer(package: str) -> int | None:
    """The layer of a subpackage; None for the shared leaves (errors, seeds, plugins, testing)."""
    if package in LAYERS:
        return LAYERS[package]
    return TOP if package in {"bench", "service", "cli"} else None


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "recunlearn" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_imports_run_one_way():
    wrong = []
    for path in sorted(SOURCE.rglob("*.py")):
        package = path.relative_to(SOURCE).parts[0]
        own = layer(package)
        if own is None:
            continue
        for target in imported_packages(path):
            theirs = layer(target)
            if theirs is not None and theirs > own:
                wrong.append(f"{path.relative_to(SOURCE)} imports recunlearn.{target}")
    assert not wrong, "imports against the layers: " + "; ".join(wrong)


def test_the_check_sees_a_wrong_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from recunlearn.bench import suite\n")
    assert imported_packages(module) == {"bench"}
