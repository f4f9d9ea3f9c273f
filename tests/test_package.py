"""The package as others depend on it: imports without the compiled extension, one version, honest pins."""

import importlib.metadata
import os
import re
import subprocess
import sys

import pytest
import tomllib
from packaging.requirements import Requirement

import trackformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    PYPROJECT = tomllib.load(f)["project"]


@pytest.mark.parametrize("module", ["trackformer", "trackformer.cli", "trackformer.separate", "trackformer.kernels",
                                    "trackformer.models", "trackformer.registry"])
def test_imports_without_the_compiled_extension(module):
    """These imports never load trackformer._C (an op that needs it loads it on its first call)."""
    code = f"import sys; sys.modules['trackformer._C'] = None; import {module}"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_version_is_defined_once():
    assert "version" not in PYPROJECT and "version" in PYPROJECT["dynamic"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", trackformer.__version__)
    assert importlib.metadata.version("trackformer") == trackformer.__version__


def test_py_typed_ships_with_the_package():
    assert os.path.isfile(os.path.join(os.path.dirname(trackformer.__file__), "py.typed"))


def _pins(name: str) -> dict[str, str]:
    """package name → pinned version of a requirements file (lines ``name==version``)."""
    with open(os.path.join(ROOT, name)) as f:
        lines = [line.split("#")[0].strip() for line in f]
    return {r.name.lower(): str(r.specifier).removeprefix("==") for r in map(Requirement, filter(None, lines))
            if str(r.specifier).startswith("==")}


def test_pinned_sets_satisfy_the_package_ranges():
    """The requirements files pin versions inside pyproject.toml's ranges; triton is optional."""
    ranges = [Requirement(r) for r in PYPROJECT["dependencies"]]
    ranges += [Requirement(r) for extra in PYPROJECT["optional-dependencies"].values() for r in extra]
    pins = _pins("requirements.txt") | _pins("requirements-dev.txt") | _pins("requirements-nodeps.txt")
    checked = [r.name for r in ranges if r.name.lower() in pins]
    assert {"torch", "soundfile", "scipy", "tqdm", "pyyaml", "matplotlib", "music21"} <= set(checked)
    for r in ranges:
        if r.name.lower() in pins:
            assert r.specifier.contains(pins[r.name.lower()]), f"{r.name}=={pins[r.name.lower()]} is outside {r}"
    assert not any(Requirement(r).name == "triton" for r in PYPROJECT["dependencies"])
    assert "triton" not in _pins("requirements.txt")  # runtime set: the CPU path does not use it
