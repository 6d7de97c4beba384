"""The `check-params` stage: the whole params file validated before any stage touches an output.

DVC removes a stage's outputs just before it runs the stage's command, so a typo found by that command (say
`train.batch_sise`) used to cost the stage's outputs. Every stage of dvc.yaml depends on this stage's output, and
this stage depends on the whole params file: after any edit of the file DVC runs this check first, and a file that
does not validate stops `dvc repro` before any other stage starts. The output says only which sections were checked,
so it keeps its bytes when a value changes and reruns nothing downstream by itself.
"""

from __future__ import annotations

from pathlib import Path

from salad.config import SECTIONS, ConfigError, Params, load_params
from salad.storage.atomic import write_json

__all__ = ["check_names", "check_params"]


def _require(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{where}: {message}")


def check_names(params: Params) -> Params:
    """The names a params file gives that refer to registries of the library: the tasks of `evaluate.tasks`
    (salad.evaluation.tasks) and the corpora of `corpora` (salad.scale.corpora). Kept out of the dataclasses, so
    that loading params (salad.config, which every stage does) imports no library package. dvc.yaml runs this
    stage before every other one, and the `salad` CLI checks the names of every params file it loads."""
    from salad.evaluation.tasks import TASKS
    from salad.scale.corpora import source_of

    unknown = [t for t in params.evaluate.tasks if t not in TASKS]
    _require(not unknown, "evaluate.tasks", f"unknown task(s) {unknown}; known: {sorted(TASKS)}")
    for key in ("web", "text_mix", "natural_speech"):
        value = getattr(params.corpora, key)
        if value is not None:
            try:
                source_of(value)
            except (KeyError, TypeError, ValueError) as e:
                message = e.args[0] if isinstance(e, KeyError) else e
                raise ConfigError(f"corpora.{key}: {message}") from None
    return params


def check_params(params_path: Path, out: Path) -> dict:
    """Validate the params file `params_path` whole (its sections, and the task and corpus names it gives:
    `check_names`) and write the checked sections to `out`."""
    check_names(load_params(params_path))
    result = {"params_file": str(params_path), "sections": ["seed", "alpha", *SECTIONS]}
    write_json(out, result)
    return result
