"""The library's rooms: every import runs from a higher layer to a lower one, never back.

Layers, bottom up (README, "Module map"): the vocabulary (`tinysol`, `modelspec`), `audio`,
`synth`, `data`, `ml`, `serving`, `pipeline`, `devstack` (the embedded services and local Airflow), the command line
(`cli`). A module
may import its own layer and those below; only `pipeline` and `devstack` touch Airflow.
Imports inside functions count too: they are how the heavy ones are deferred.
"""

from __future__ import annotations

import ast
from importlib import resources
from pathlib import Path

import pytest

import instropitch

LAYERS = ["vocabulary", "audio", "synth", "data", "ml", "serving", "pipeline", "devstack", "cli"]
VOCABULARY = {"tinysol", "modelspec"}
COMPATIBILITY = {"pyfunc_model": "serving"}  # old module paths kept for registered models
PACKAGE = Path(instropitch.__file__).parent


def layer_of(module: str) -> str:
    """`instropitch.ml.training` -> "ml"; `instropitch.tinysol` -> "vocabulary"."""
    parts = module.split(".")
    assert parts[0] == "instropitch", module
    if len(parts) == 1:
        return "vocabulary"
    head = parts[1]
    if head in VOCABULARY:
        return "vocabulary"
    return COMPATIBILITY.get(head, head)


def library_modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__")
        out[name] = path
    return out


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module == "instropitch":
                found += [(node.lineno, f"instropitch.{alias.name}") for alias in node.names]
    return found


def test_every_module_sits_in_a_known_layer() -> None:
    unknown = {name: layer_of(name) for name in library_modules() if layer_of(name) not in LAYERS}
    assert unknown == {}


def test_imports_run_one_way() -> None:
    wrong = []
    for name, path in library_modules().items():
        mine = LAYERS.index(layer_of(name))
        for line, target in imports_of(path):
            if target.split(".")[0] != "instropitch" or target == "instropitch":
                continue
            theirs = LAYERS.index(layer_of(target))
            if theirs > mine:
                wrong.append(
                    f"{path.relative_to(PACKAGE)}:{line} ({layer_of(name)}) imports {target} ({layer_of(target)})"
                )
    assert wrong == []


@pytest.mark.parametrize("layer", ["vocabulary", "audio", "synth", "data", "ml", "serving", "cli"])
def test_only_pipeline_and_devstack_touch_airflow(layer: str) -> None:
    touching = [
        f"{path.relative_to(PACKAGE)}:{line} imports {target}"
        for name, path in library_modules().items()
        if layer_of(name) == layer
        for line, target in imports_of(path)
        if target.split(".")[0] == "airflow"
    ]
    assert touching == []


def test_the_layer_check_sees_a_reversed_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from instropitch.cli import CliError\n")
    assert imports_of(bad) == [(2, "instropitch.cli")]
    assert LAYERS.index(layer_of("instropitch.cli")) > LAYERS.index(layer_of("instropitch.data.download"))


def test_resources_ship_inside_the_package() -> None:
    sql = resources.files("instropitch.data").joinpath("sql")
    assert sorted(p.name for p in sql.iterdir() if p.name.endswith(".sql"))
    page = resources.files("instropitch.serving").joinpath("static", "index.html").read_text()
    assert page.startswith("<!doctype html>")
    source = "\n".join(p.read_text() for p in library_modules().values())
    assert "parents[" not in source  # nothing found through the checkout's layout


def test_models_registered_before_the_split_still_load() -> None:
    """`models:/instropitch` versions logged before hold `from instropitch.pyfunc_model import InstroPitchModel`."""
    namespace: dict[str, object] = {}
    exec("from instropitch.pyfunc_model import InstroPitchModel", namespace)  # the old model file's import
    from instropitch.serving.pyfunc import InstroPitchModel

    assert namespace["InstroPitchModel"] is InstroPitchModel
