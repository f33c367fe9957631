"""The pinned requirement sets: runtime (the Airflow image), embedded stack and development,
compiled together (requirements.in) so that a package shared by two sets has one version."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FULL = ROOT / "requirements.txt"
SETS = ("runtime", "embedded", "dev")
# What the issue names: none of these may reach the Airflow image.
NEVER_AT_RUNTIME = {"pytest", "moto", "pgserver", "ruff", "hypothesis"}
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;#]+)\s*(?:;\s*(.*?))?\s*$")
NAME = re.compile(r"^([A-Za-z0-9_.\-]+)")


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """{package: version} of a lock. Markers are left out: they differ between locks (each says
    why its own set needs the package), versions may not."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if match := PIN.match(line):
            name, version = normal(match.group(1)), match.group(2)
            assert out.setdefault(name, version) == version, f"{path.name}: {name} pinned twice"
    return out


def top_level(path: Path) -> set[str]:
    """The packages an .in file names itself (not those it includes with -r)."""
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-") and (match := NAME.match(line)):
            names.add(normal(match.group(1)))
    return names


def lock(name: str) -> Path:
    return ROOT / "requirements" / f"{name}.txt"


def test_the_full_lock_is_the_three_sets_together():
    assert [line for line in (ROOT / "requirements.in").read_text().splitlines() if line.startswith("-r")] == [
        f"-r requirements/{s}.in" for s in SETS
    ]
    union: dict[str, str] = {}
    for s in SETS:
        union.update(pins(lock(s)))
    assert union == pins(FULL)  # nothing pinned outside the sets, nothing missing from the full lock


def test_every_lock_is_compiled_against_the_full_lock():
    for s in SETS:
        header = lock(s).read_text()[:400]
        assert f"requirements/{s}.in -c requirements.txt --universal" in header, header


@pytest.mark.parametrize("one,other", [(a, b) for a in SETS for b in SETS if a < b])
def test_shared_packages_have_one_version(one, other):
    mine, theirs = pins(lock(one)), pins(lock(other))
    full = pins(FULL)
    shared = set(mine) & set(theirs)
    assert {k: mine[k] for k in shared} == {k: theirs[k] for k in shared}
    assert all(full[k] == v for k, v in {**mine, **theirs}.items())


def test_the_runtime_lock_holds_no_development_or_embedded_only_package():
    runtime = set(pins(lock("runtime")))
    only_elsewhere = top_level(ROOT / "requirements" / "embedded.in") | top_level(ROOT / "requirements" / "dev.in")
    assert only_elsewhere >= NEVER_AT_RUNTIME
    assert runtime.isdisjoint(only_elsewhere), sorted(runtime & only_elsewhere)


def test_tensorflow_by_platform_so_the_image_builds_on_arm64():
    tensorflow = {}
    for line in lock("runtime").read_text().splitlines():
        if (match := PIN.match(line)) and match.group(1) in ("tensorflow", "tensorflow-cpu"):
            tensorflow[match.group(1)] = (match.group(3), match.group(2))
    # tensorflow-cpu has no aarch64 wheels; the full tensorflow of the same version runs there
    version = tensorflow["tensorflow-cpu"][1]
    assert tensorflow == {
        "tensorflow-cpu": ("platform_machine == 'x86_64'", version),
        "tensorflow": ("platform_machine != 'x86_64'", version),
    }
