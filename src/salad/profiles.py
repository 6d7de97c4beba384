"""Profiles run in their own work tree, so they never overwrite the committed default results.

`make repro PROFILE=params/ci.yaml` (and every other `make` target that takes `PROFILE`) runs in `runs/<name>/`: a
copy of this tree's sources with the profile as its `params.yaml`, its own git repository (DVC needs one, and
`dvc exp run` a commit) and its own DVC cache. The copy holds what a fresh clone holds, less the default world's
results (`dvc.lock`, `metrics/`, `dvclive/`, `reports/`): they belong to params.yaml and would otherwise show up as
stale curves and tables of the wrong profile. Calling it again brings the copy's sources up to date with this tree
(files added, changed and removed) and leaves the profile's own outputs alone, so `dvc repro` there reruns exactly
what changed. Local downloads (`models/`, `data/corpora/`, `data/raw/libriheavy/`) are linked into the tree, so the
profile's relative paths find them. `runs/` is ignored by git and by DVC here.
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

from salad.config import load_params

RESULTS = ("dvc.lock", "metrics/", "dvclive/", "reports/")
"""The default world's results, committed here, that a profile's work tree must not inherit."""

DOWNLOADS = ("models", "data/corpora", "data/raw/libriheavy")
"""Local downloads of paper scale (git-ignored here; `salad check-profile` lists them): linked, not copied, into
each work tree, so one download serves every profile and the profiles' relative paths find it."""


def _is_result(name: str) -> bool:
    return any(name == r or name.startswith(r) for r in RESULTS)


def _git(args: list[str], cwd: Path, stdin: str | None = None) -> str:
    r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, input=stdin)
    if r.returncode != 0:
        raise OSError(f"`git {' '.join(args)}` failed in {cwd}: {r.stderr.strip()}")
    return r.stdout


def source_files(repo: Path) -> list[str]:
    """The files a clone of `repo` would hold (tracked, and untracked but not ignored, so an uncommitted edit runs
    too), less the default world's results."""
    names = _git(["ls-files", "-co", "--exclude-standard", "-z"], repo).split("\0")
    return sorted(n for n in names if n and (repo / n).is_file() and not n.startswith("runs/") and not _is_result(n))


def profile_workspace(profile: Path, out: Path | None = None, repo: Path = Path(".")) -> dict:
    """Create or update the work tree of the params file `profile` (default `runs/<profile's stem>/`): this tree's
    sources, `profile` as its params.yaml, committed in its own git repository. Returns what changed."""
    repo = repo.resolve()
    profile = (repo / profile) if not Path(profile).is_absolute() else Path(profile)
    load_params(profile)  # a profile that does not validate stops here, before anything is copied
    out = ((repo / "runs" / profile.stem) if out is None else (repo / out)).resolve()
    if out == repo or (repo in out.parents and repo / "runs" not in out.parents):
        raise ValueError(f"the work tree of a profile goes under {repo / 'runs'}, not {out}")
    fresh = not (out / ".git").exists()
    out.mkdir(parents=True, exist_ok=True)
    wanted = set(source_files(repo))
    copied = []
    for name in sorted(wanted):
        src, dst = repo / name, out / name
        if name == "params.yaml":
            src = profile
        if not dst.exists() or not filecmp.cmp(src, dst, shallow=False):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            copied.append(name)
    removed = []
    if not fresh:  # sources removed here are removed there (the run's own outputs are not tracked by this tree)
        for name in _git(["ls-files", "-z"], out).split("\0"):
            if name and name not in wanted and not _is_result(name) and (out / name).is_file():
                (out / name).unlink()
                removed.append(name)
    linked = []
    for name in DOWNLOADS:
        if (repo / name).exists() and not (out / name).exists() and not (out / name).is_symlink():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).symlink_to(repo / name, target_is_directory=True)
            linked.append(name)
    if fresh:
        _git(["init", "-q", "-b", "main"], out)
    # commit the sources only: the profile's outputs are committed by whoever produced them (make repro PROFILE=)
    _git(["add", "-A", "--pathspec-from-file=-", "--pathspec-file-nul"], out, stdin="\0".join(sorted(wanted)))
    if removed:
        _git(["rm", "-q", "--cached", "--ignore-unmatch", "--", *removed], out)
    if _git(["diff", "--cached", "--name-only"], out).strip():
        _git(["-c", "user.name=salad", "-c", "user.email=salad@localhost", "commit", "-q", "-m",
              f"sources of {repo.name} with {profile.name} as params.yaml"], out)
    return {"workspace": str(out), "profile": str(profile), "created": fresh, "copied": len(copied),
            "removed": removed, "linked": linked}

