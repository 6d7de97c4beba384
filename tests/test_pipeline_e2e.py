"""End-to-end smoke repro: the real dvc.yaml on the tiny params/ci.yaml profile, in a fresh copy of the repository.

It proves, in one run: the README's commands work as printed (read from the README itself) from a shell that activated
nothing, with PROFILE=params/ci.yaml; the profile runs in its own tree (runs/ci) and leaves the committed default
results untouched; every stage executes and writes its declared outputs; the run is offline (every Python process
refuses network access through the offline guard, and none was attempted); a second `dvc repro` does nothing;
forcing the training and measurement again gives identical metrics; the README's sweep works and `dvc exp show`
lists M and F for both α, in a table that fits 120 columns; a params typo stops DVC before any output is touched.
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from salad.analysis.artifacts import ARTIFACTS, NOTEBOOKS

REPO = Path(__file__).resolve().parents[1]
GUARD = Path(__file__).parent / "offline_guard"
pytestmark = pytest.mark.slow


HANG_GUARD_S = 3 * 3600
"""A hang guard, not a speed requirement: the CI-profile `dvc repro` takes minutes on an idle 2-core machine and
tens of minutes on a loaded one; only a command that never ends should reach this."""


def sh(cmd, cwd, env, timeout=HANG_GUARD_S):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, shell=True)
    if r.returncode != 0:
        raise AssertionError(f"`{cmd}` failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r.stdout + r.stderr


def readme_commands(section: str) -> list[str]:
    """The command lines of the README's bash blocks under the heading `## <section>`, as printed there."""
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start:end if end >= 0 else None]
    blocks = re.findall(r"```bash\n(.*?)```", body, flags=re.S)
    assert blocks, f"README section {section!r} has no bash block"
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def without_venv(path: str) -> str:
    """PATH without this project's .venv/bin: the README's commands must work without activating anything."""
    venv = Path(sys.executable).parent.resolve()
    return os.pathsep.join(p for p in path.split(os.pathsep) if p and Path(p).resolve() != venv)


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """The repository as a fresh clone holds it (tracked and untracked-but-not-ignored files, committed), with this
    checkout's installed .venv (`make` finds it installed), and the environments of a reader who has activated
    nothing (`plain`) and of the checks below (`tools`: .venv/bin on PATH)."""
    dest = tmp_path_factory.mktemp("clone")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(REPO / ".venv")
    log = dest.parent / "network.log"
    git = dict(GIT_AUTHOR_NAME="ci", GIT_AUTHOR_EMAIL="ci@localhost", GIT_COMMITTER_NAME="ci",
               GIT_COMMITTER_EMAIL="ci@localhost")
    plain = dict(os.environ, PATH=without_venv(os.environ.get("PATH", "")), PYTHONPATH=str(GUARD),
                 SALAD_NETWORK_LOG=str(log), PROFILE="params/ci.yaml", COLUMNS="120", **git)
    for leaked in ("VIRTUAL_ENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"):  # as if run from a fresh shell
        plain.pop(leaked, None)
    tools = dict(plain, PATH=f"{Path(sys.executable).parent}:{plain['PATH']}")
    tools.pop("PROFILE")
    sh("git init -q -b main && git add -A && git commit -q -m clone", dest, tools)
    # `make` must find the linked .venv installed: a reinstall from here would point its editable install at this
    # temporary copy (and break the venv for every other test once the copy is gone)
    up_to_date = subprocess.run(["make", "-q", "install"], cwd=dest, env=plain)
    assert up_to_date.returncode == 0, "make would reinstall .venv from the test's copy: run `make install` first"
    return dest, plain, tools, log


def committed_results(root: Path) -> dict[str, bytes]:
    """The default world's committed results in a tree."""
    files = {"dvc.lock": (root / "dvc.lock").read_bytes()}
    for top in ("metrics", "dvclive", "reports"):
        files.update({str(p.relative_to(root)): p.read_bytes() for p in sorted((root / top).rglob("*"))
                      if p.is_file()})
    return files


@pytest.fixture(scope="module")
def project(clone):
    """The README's "Two commands" (but `make test`: that is this run) and "Profiles" blocks, as printed, from a shell
    that activated nothing: `make repro` with PROFILE=params/ci.yaml runs the pipeline in runs/ci/."""
    dest, plain, tools, log = clone
    before = committed_results(dest)
    commands = [c for c in readme_commands("Two commands") if not c.startswith("make test")]
    assert commands and commands[0].startswith("make repro"), commands
    profiles = readme_commands("Profiles")
    assert any(c.startswith("make repro PROFILE=params/ci.yaml") for c in profiles), profiles
    for command in commands + profiles:
        sh(command, dest, plain)
    # the profile ran in its own tree: the default world's committed results are untouched
    assert committed_results(dest) == before
    return dest / "runs" / "ci", tools, log


def read_metrics(root: Path, name: str) -> dict:
    return json.loads((root / "metrics" / f"{name}.json").read_text())


def test_repro_runs_every_stage_offline_and_is_idempotent(project):
    root, env, log = project
    sh("dvc repro", root, env)
    assert not log.exists(), f"network access attempted:\n{log.read_text()}"

    measure = read_metrics(root, "measure")
    for key in ("M", "F", "M_shuffled", "M_first1"):
        assert math.isfinite(measure[key]) and measure[key] >= 0, key
    evaluation = read_metrics(root, "evaluate")["results"]
    assert set(evaluation["student"]["storycloze"]["continuation"]) == {"text", "speech"}
    assert evaluation["teacher"]["storycloze"]["continuation"]["text"]["n"] > 0
    # the analysis grid: every cell (data side x alpha) of the profile, every budget, with M, F and accuracies
    grid = yaml.safe_load((root / "params.yaml").read_text())["grid"]
    budgets = {str(b) for b in [*grid["budgets"], grid["tokens"]]}
    for data in grid["data"]:
        for alpha in grid["alphas"]:
            cell = root / "metrics" / "grid" / f"{data}-{float(alpha)}"
            train = json.loads((cell / "train.json").read_text())
            assert train["corpus"] == data and train["alpha"] == alpha
            measured = json.loads((cell / "measure.json").read_text())["models"]
            assert set(measured) == budgets
            assert all(math.isfinite(m["M"]) and m["M"] >= 0 and math.isfinite(m["F"]) for m in measured.values())
            evaluated = json.loads((cell / "evaluate.json").read_text())["models"]
            assert set(evaluated) == budgets
            assert evaluated[str(grid["tokens"])]["storycloze"]["continuation"]["speech"]["n"] > 0
    table = (root / "reports" / "analysis" / "tables" / "grid.csv").read_text().splitlines()
    assert len(table) == 1 + len(grid["data"]) * len(grid["alphas"]) * len(budgets)

    # active selection and Stage II: every gamma's D_active within its budgets, every cell trained and scored
    active = yaml.safe_load((root / "params.yaml").read_text())["active"]
    clusters = read_metrics(root, "active/clusters")
    assert max(clusters["sizes"]) - min(clusters["sizes"]) <= 1 and len(clusters["terms"]) == active["clusters"]
    misalignment = read_metrics(root, "active/misalignment")
    assert len(misalignment["M"]) == active["clusters"] and min(misalignment["M"]) > 0
    for gamma in active["gammas"]:
        select = read_metrics(root, f"active/select/{float(gamma)}")
        for budget in active["budgets"]:
            spent = select["budgets"][str(float(budget))]
            assert spent["documents"] > 0 and spent["seconds"] >= spent["budget_seconds"]
            cell = f"stage2/{float(gamma)}-{float(budget)}"
            assert read_metrics(root, f"{cell}/train")["active_documents"] == spent["documents"]
            assert math.isfinite(read_metrics(root, f"{cell}/measure")["M"])
            assert read_metrics(root, f"{cell}/evaluate")["results"]["storycloze"]["continuation"]["speech"]["n"] > 0
    stage2 = (root / "reports" / "stage2" / "tables" / "stage2.csv").read_text().splitlines()
    assert len(stage2) == 2 + len(active["gammas"]) * len(active["budgets"])

    # every registered table and figure, every executed notebook, the index and the findings
    outs = [f"reports/{a.files[i]}" for a in ARTIFACTS for i in (0, 1)]
    outs += [f"reports/{nb}/{nb}.ipynb" for nb in NOTEBOOKS] + ["reports/README.md"]
    for out in outs:
        assert (root / out).stat().st_size > 0, out
    verdicts = pd.read_csv(root / "reports" / "findings" / "tables" / "findings.csv")["verdict"]
    assert len(verdicts) >= 6 and set(verdicts) <= {"yes", "partly", "no", "not measurable"}
    assert "## Findings" in (root / "reports" / "README.md").read_text()

    again = sh("dvc repro", root, env)
    assert "Running stage" not in again, again
    assert "up to date" in sh("dvc status", root, env)

    # Same params and seed give the same metrics: rerun training and measurement from scratch.
    before = read_metrics(root, "measure")
    sh("dvc repro --force --single-item train measure", root, env)
    assert read_metrics(root, "measure") == before


def test_readme_sweep_commands_work_as_printed(clone, project):
    """The README's "Sweeps and experiments" block, line by line as printed, from a shell that activated nothing, on
    the CI profile's tree; the tables fit a 120-column terminal."""
    dest, plain, _, log = clone
    root, tools, _ = project
    printed = {}
    for command in readme_commands("Sweeps and experiments"):
        printed[command.split("#")[0].strip()] = sh(command, dest, plain)
    assert not log.exists(), f"network access attempted:\n{log.read_text()}"
    run = next(out for cmd, out in printed.items() if cmd.startswith("make exp-run"))
    # the grid has its own alphas: a new main alpha reruns the main run only
    assert "Running stage 'train'" in run and "Running stage 'grid-" not in run, run
    for cmd in ("make exp-show", "make metrics-show"):
        table = [line for line in printed[cmd].splitlines() if not line.startswith(("cd ", "make"))]
        assert max(map(len, table)) <= 120 and "…" not in printed[cmd], "\n".join(table)
        assert any("gap_speech" in line for line in table), printed[cmd]
    assert "alpha" in printed["make exp-show"] and "0.5" in printed["make exp-show"]
    plots = printed["make plots-show"]
    assert "warning" not in plots.lower() and "nonetype" not in plots.lower(), plots
    assert (root / "dvc_plots" / "index.html").is_file()

    shown = subprocess.run("dvc exp show --json", cwd=root, env=tools, shell=True, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    rows = []

    def walk(node):
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, dict) and "params" in data and "metrics" in data:
                rows.append(data)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads(shown.stdout))
    seen = {}
    for data in rows:
        alpha = data["params"].get("params.yaml", {}).get("data", {}).get("alpha")
        headline = data["metrics"].get("metrics/headline.json", {}).get("data", {})
        assert set(data["metrics"]) <= {"metrics/headline.json"}, set(data["metrics"])  # one small metrics file
        if alpha is not None and "M" in headline and "F" in headline:
            seen[alpha] = (headline["M"], headline["F"])
    assert {0.5, 1.0} <= set(seen), seen


def _outputs(root: Path) -> dict[str, bytes]:
    """Every file the pipeline wrote (what DVC would delete before rerunning a stage), but the check's own output."""
    files = {}
    for top in ("data", "metrics", "dvclive", "reports"):
        for p in sorted((root / top).rglob("*")):
            if p.is_file() and p.name != "checked-params.json" and ".gitignore" not in p.name:
                files[str(p.relative_to(root))] = p.read_bytes()
    return files


def test_a_params_typo_stops_dvc_before_any_output_is_touched(project):
    root, env, _ = project
    params = root / "params.yaml"
    good = params.read_text()
    before = _outputs(root)
    assert any(k.startswith("data/models/student/") for k in before)
    params.write_text(good.replace("\ntrain:\n", "\ntrain:\n  batch_sise: 4\n", 1))
    r = subprocess.run("dvc repro", cwd=root, env=env, shell=True, capture_output=True, text=True,
                       timeout=HANG_GUARD_S)
    assert r.returncode != 0
    assert "train: unknown key(s) ['batch_sise']" in r.stdout + r.stderr
    assert "Running stage 'train'" not in r.stdout + r.stderr
    assert _outputs(root) == before  # nothing deleted, nothing rewritten
    params.write_text(good)
    again = sh("dvc repro", root, env)
    ran = [line for line in again.splitlines() if line.startswith("Running stage")]
    # at most the check reruns (DVC may restore its output from the cache instead); nothing else does
    assert set(ran) <= {"Running stage 'check-params':"}, ran
    assert (root / "data" / "checked-params.json").is_file() and _outputs(root) == before
