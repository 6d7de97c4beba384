"""The install is what the README promises: requirements.txt and environment.yml carry the same exact pins, torch
comes first and pinned (a looser torch pulls CUDA wheels), moshi is installed with --no-deps, and the Makefile does
it in that order."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[A-Za-z0-9,._-]+\])?==([A-Za-z0-9.+!_-]+)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pins(lines: list[str], where: str) -> dict[str, str]:
    pins = {}
    for line in lines:
        m = PIN.match(line.strip())
        assert m, f"{where}: {line!r} is not an exact pin (name==version)"
        name = canonical(m.group(1))
        assert name not in pins, f"{where}: {name} pinned twice"
        pins[name] = m.group(2)
    return pins


def requirement_lines(path: Path) -> list[str]:
    return [s for s in (line.split("#", 1)[0].strip() for line in path.read_text().splitlines()) if s]


def requirements() -> dict[str, str]:
    return parse_pins(requirement_lines(REPO / "requirements.txt"), "requirements.txt")


def conda_pip_lines() -> list[str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "environment.yml must have exactly one pip: section"
    return [str(s) for s in sections[0]]


def test_torch_is_the_first_line_and_pinned():
    assert (REPO / "requirements.txt").read_text().splitlines()[0].strip() == "torch==2.13.0"
    assert requirement_lines(REPO / "requirements.txt")[0] == "torch==2.13.0"
    assert conda_pip_lines()[0] == "torch==2.13.0"


def test_environment_yml_has_exactly_the_pins_of_requirements_txt():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    assert any(d.replace(" ", "") in ("python=3.11", "python==3.11") for d in deps), deps
    assert "pip" in deps
    conda = parse_pins(conda_pip_lines(), "environment.yml")
    req = requirements()
    assert conda == req, {"only in environment.yml": sorted(conda.items() - req.items()),
                          "only in requirements.txt": sorted(req.items() - conda.items())}


def test_moshi_is_only_installed_without_dependencies():
    assert "moshi" not in requirements()
    assert "moshi" not in parse_pins(conda_pip_lines(), "environment.yml")
    nodeps = parse_pins(requirement_lines(REPO / "requirements-nodeps.txt"), "requirements-nodeps.txt")
    assert nodeps == {"moshi": "0.2.13"}
    # environment.yml cannot say --no-deps: it must tell the reader to do it
    assert re.search(r"#.*pip install --no-deps moshi==0\.2\.13", (REPO / "environment.yml").read_text())
    # moshi's real runtime needs are pinned
    assert {"einops", "sphn", "sentencepiece"} <= set(requirements())


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_makefile_installs_torch_first_and_moshi_without_deps(tmp_path):
    for name in ("Makefile", "requirements.txt", "requirements-nodeps.txt", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEFILES")}
    dry = subprocess.run(["make", "--no-print-directory", "-n", "install"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True).stdout
    pips = [line for line in dry.splitlines() if re.search(r"\bpip install\b", line)]
    assert len(pips) == 4, dry
    assert re.search(r"\.venv/bin/pip install torch==2\.13\.0$", pips[0]), pips
    assert pips[1].endswith("pip install -r requirements.txt"), pips
    assert re.search(r"pip install --no-deps -r requirements-nodeps\.txt$", pips[2]), pips
    assert re.search(r"pip install --no-deps -e \.$", pips[3]), pips
    assert "python3 -m venv .venv" in dry or "-m venv .venv" in dry, dry
    assert dry.rstrip().splitlines()[-1] == "touch .venv/.installed", dry
    # the stamp makes a second install a no-op until a requirements file or pyproject.toml changes
    makefile = (REPO / "Makefile").read_text()
    rule = re.search(r"^\$\(STAMP\):(.*)$", makefile, re.MULTILINE)
    assert rule and set(rule.group(1).split()) == {"requirements.txt", "requirements-nodeps.txt", "pyproject.toml"}


def test_installed_versions_match_the_pins():
    """The environment running the tests is the pinned one (a local version label such as +cpu is allowed)."""
    for name, version in {**requirements(), "moshi": "0.2.13"}.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name}=={version} is pinned but not installed")
        assert installed.split("+", 1)[0] == version, f"{name}: installed {installed}, pinned {version}"
