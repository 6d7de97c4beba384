"""DVCLive logging for training stages, configured for a hand-written dvc.yaml.

DVCLive by default rewrites dvc.yaml and tries to save experiments itself; both would fight DVC's own stage graph,
so its dvc.yaml writing and experiment saving are turned off and its folder is a declared stage output.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def live_logger(directory: str | Path, resume: bool = False) -> Iterator["dvclive.Live"]:  # noqa: F821
    from dvclive import Live

    with Live(str(directory), dvcyaml=None, save_dvc_exp=False, report=None, resume=resume) as live:
        yield live
