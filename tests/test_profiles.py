"""A profile runs in its own work tree (salad.profiles): the sources of this tree, the profile as params.yaml, no
default results; updating it follows this tree's edits and keeps the profile's outputs."""

import shutil
import subprocess
from pathlib import Path

import pytest

from salad.profiles import profile_workspace

REPO = Path(__file__).resolve().parents[1]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    files = {"src/a.py": "A = 1\n", "params.yaml": "default\n", "dvc.lock": "lock\n", "metrics/m.json": "{}\n",
             "reports/README.md": "r\n", "dvclive/train/metrics.json": "{}\n", ".gitignore": "/runs/\nignored.txt\n",
             "ignored.txt": "no\n", "data/raw/x.txt": "raw\n"}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "params").mkdir()
    shutil.copy(REPO / "params" / "ci.yaml", root / "params" / "ci.yaml")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "x")
    (root / "new.py").write_text("uncommitted\n")  # untracked, not ignored: a clone would not have it, a run should
    return root


def test_a_profile_tree_holds_the_sources_and_the_profile_but_no_default_results(repo):
    result = profile_workspace(Path("params/ci.yaml"), repo=repo)
    run = repo / "runs" / "ci"
    assert result["created"] and Path(result["workspace"]) == run
    assert (run / "params.yaml").read_bytes() == (repo / "params" / "ci.yaml").read_bytes()
    assert (run / "src/a.py").read_text() == "A = 1\n" and (run / "new.py").exists() and (run / "data/raw/x.txt").exists()
    for result_file in ("dvc.lock", "metrics/m.json", "reports/README.md", "dvclive/train/metrics.json",
                        "ignored.txt"):
        assert not (run / result_file).exists(), result_file
    assert git(run, "status", "--porcelain") == "" and git(run, "log", "--oneline").count("\n") == 1


def test_local_downloads_are_linked_into_the_tree_not_copied(repo):
    (repo / ".gitignore").write_text("/runs/\n/models/\n")
    (repo / "models" / "qwen").mkdir(parents=True)
    (repo / "models" / "qwen" / "model.safetensors").write_bytes(b"weights")
    result = profile_workspace(Path("params/ci.yaml"), repo=repo)
    run = repo / "runs" / "ci"
    assert result["linked"] == ["models"] and (run / "models").is_symlink()
    assert (run / "models" / "qwen" / "model.safetensors").read_bytes() == b"weights"


def test_updating_a_profile_tree_follows_edits_and_keeps_its_outputs(repo):
    profile_workspace(Path("params/ci.yaml"), repo=repo)
    run = repo / "runs" / "ci"
    (run / "metrics").mkdir()
    (run / "metrics" / "train.json").write_text("{\"profile\": true}\n")  # what the profile's pipeline wrote
    git(run, "add", "-A")
    git(run, "commit", "-q", "-m", "results")
    (repo / "src" / "a.py").write_text("A = 2\n")
    (repo / "new.py").unlink()
    result = profile_workspace(Path("params/ci.yaml"), repo=repo)
    assert not result["created"] and result["removed"] == ["new.py"]
    assert (run / "src/a.py").read_text() == "A = 2\n" and not (run / "new.py").exists()
    assert (run / "metrics" / "train.json").read_text() == "{\"profile\": true}\n"
    assert git(run, "status", "--porcelain") == ""


def test_a_profile_that_does_not_validate_or_a_tree_outside_runs_is_refused(repo):
    (repo / "params" / "bad.yaml").write_text((repo / "params" / "ci.yaml").read_text().replace(
        "\ntrain:\n", "\ntrain:\n  batch_sise: 4\n", 1))
    with pytest.raises(ValueError, match="batch_sise"):
        profile_workspace(Path("params/bad.yaml"), repo=repo)
    assert not (repo / "runs").exists()
    with pytest.raises(ValueError, match="runs"):
        profile_workspace(Path("params/ci.yaml"), out=Path("src/elsewhere"), repo=repo)
