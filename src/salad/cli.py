"""`salad <command>`: one subcommand per pipeline stage; `dvc.yaml` calls these, and so can you.

`COMMANDS` is the whole CLI: each subcommand names one plain function and says what it does in a line. The options
are that function's parameters, read from its signature: `--name` per parameter, required when it has no default,
the function's own default otherwise. Nothing here holds a path or a default of a stage: the paths are written once,
in dvc.yaml's cmd, and the defaults once, in the signature. So cli.py changes no result and is no dependency of a
stage (dvc.yaml's header states the rule; tests/test_dvc_deps.py checks it).
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import importlib
import inspect
import json
import sys
import time
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from salad.config import Params, load_params
from salad.offline import go_offline
from salad.scale.estimate import Rates

PARAMS_FILE = Path("params.yaml")


@dataclass(frozen=True)
class Command:
    """A subcommand: the function it calls, as "module:function" (imported only when the command runs, so that
    `salad --help` stays fast), and one line of help."""

    target: str
    help: str
    online: bool = False
    """May reach the network; every other command runs offline (salad.offline) from its first import on."""

    def function(self) -> Callable:
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)


COMMANDS: dict[str, Command] = {
    "check-params": Command("salad.stages.check_params:check_params",
                            "validate the whole params file before any stage touches an output"),
    "prepare": Command("salad.stages.prepare:prepare", "deterministic splits of the shipped raw data"),
    "teacher": Command("salad.stages.teacher:train_teacher", "train the tokenizer and the teacher LM"),
    "synthesize": Command("salad.stages.synthesize:synthesize", "espeak-ng speech with word timestamps"),
    "natural": Command("salad.stages.natural:ingest", "natural speech from a manifest, word-timed and resampled"),
    "phones": Command("salad.stages.phones:train_phones",
                      "train the frame-level phone classifier (encode.encoder: phones) on espeak-ng's phoneme times"),
    "encode": Command("salad.stages.encode:encode", "frozen speech-encoder features at 12.5 Hz"),
    "train": Command("salad.stages.train:train", "Stage I training of the speech-adapted LM"),
    "measure": Command("salad.stages.measure:measure", "misalignment M and forgetting F"),
    "evaluate": Command("salad.stages.evaluate:evaluate", "benchmarks in text and speech mode"),
    "headline": Command("salad.stages.headline:headline",
                        "metrics/headline.json: M, F, average accuracies and gaps of the main run (dvc exp show)"),
    "grid-train": Command("salad.stages.grid:train_cell",
                          "train one cell (alpha, data) of the analysis grid, every budget"),
    "grid-measure": Command("salad.stages.grid:measure_cell", "M and F of every model of a grid cell"),
    "grid-evaluate": Command("salad.stages.grid:evaluate_cell", "benchmarks of every model of a grid cell"),
    "active-embed": Command("salad.stages.active:embed_stage",
                            "sentence embeddings of the selection pool, the probes and D_speech"),
    "active-cluster": Command("salad.stages.active:cluster_stage",
                              "balanced k-means of the pool, probes and terms per cluster"),
    "active-probes": Command("salad.stages.active:probes_stage",
                             "the probe documents spoken in the fixed voice and encoded"),
    "active-misalignment": Command("salad.stages.active:misalignment_stage",
                                   "M(c): L_DIST of the Stage I model on each cluster's probes"),
    "active-select": Command("salad.stages.active:select_stage",
                             "D_active for one gamma and every budget: drawn, spoken and encoded"),
    "stage2-train": Command("salad.stages.stage2:train_cell",
                            "Stage II from Stage I's pre-decay checkpoint on D_speech, D_active and text"),
    "stage2-measure": Command("salad.stages.stage2:measure_cell", "M and F of a Stage II model"),
    "stage2-evaluate": Command("salad.stages.stage2:evaluate_cell", "benchmarks of a Stage II model"),
    "stage2-categories": Command("salad.stages.stage2:category_stage",
                                 "the active Stage II model on every item of Figure 7's tasks, in speech"),
    "report": Command("salad.stages.report:report",
                      "execute a report notebook with papermill into reports/<notebook>/"),
    "report-index": Command("salad.stages.report:report_index",
                            "reports/README.md from the artifact registry, dvc.yaml and the rendered reports"),
    # tools around the pipeline (not DVC stages)
    "profile-workspace": Command("salad.profiles:profile_workspace",
                                 "create or update runs/<profile>/, the work tree where a profile runs (make PROFILE=)"),
    "baseline": Command("salad.cli:baseline",
                        "score another speech LLM (Tables 3 and 5) on the evaluate stage's items"),
    "check-profile": Command("salad.cli:check_profile", "validate a profile end to end on tiny stand-ins of its "
                                                        "models (46 s for paper-3b on 2 idle cores), and list the "
                                                        "local files it needs; exit 1 while one is missing"),
    "estimate": Command("salad.cli:estimate",
                        "dry run: audio hours, disk and GPU-hours of a profile (--params), printed"),
    "fetch": Command("salad.cli:fetch", "stream a corpus of the profile's `corpora` section into local parts "
                                        "(resumable; torchrun ranks or RANK/WORLD_SIZE split it)", online=True),
}


# ---------------------------------------------------------------------------------------------------------------
# Options from a signature

OPTION_HELP: dict[str, str] = {
    # what a parameter of a command's function means, by its name (one meaning per name across the commands); a
    # name with a _dir or _path suffix not listed falls back to its option's name (`out_path` reads as `out`)
    "out": "where this command writes its output (a stage's declared out in dvc.yaml; written atomically)",
    "params": "the params file: every section validated before any work",
    "cfg": "the params file (this command reads its own section)",
    "metrics_path": "the stage's metrics JSON (what the reports read)",
    "teacher_dir": "the teacher's folder (salad teacher): its LM and the tokenizer every stage uses",
    "model_dir": "the student's folder (salad train, grid-train or stage2-train)",
    "stage1_dir": "the Stage I student's folder; Stage II resumes its pre-decay state (pre_decay.pt)",
    "speech": "the synthesized speech stores (salad synthesize): audio and word times per corpus",
    "features": "the encoder features of the speech stores (salad encode)",
    "natural": "the natural-speech store (salad natural), encoded beside the synthesized ones",
    "phones": "the trained phone classifier (salad phones), the encoder when encode.encoder is phones",
    "prepared": "the prepared corpora (salad prepare)",
    "raw": "the shipped raw data (text, benchmarks, LJ Speech sample)",
    "root": "the project root: data/raw/ and data/prepared/ are read under it, relative manifest paths too",
    "live_dir": "the DVCLive folder of the training curves",
    "checkpoints": "where training keeps its checkpoint; a killed run resumes from it exactly",
    "stop_after": "stop after this many optimizer steps, as if killed (for the resume tests)",
    "corpus": "the speech corpus of Stage I's speech batches (speech: D_speech; broad: D_broad)",
    "data": "the grid cell's data side: speech (D_speech, narrow) or broad (D_broad)",
    "alpha": "the grid cell's distillation weight: L = alpha*KL + (1-alpha)*NLL",
    "gamma": "the selection temperature: P_target proportional to P_web * M(c)^gamma (0: uniform)",
    "budget": "the Stage II budget, a fraction of D_speech's audio",
    "embeddings": "the sentence embeddings of the pool, probes and D_speech (salad active-embed)",
    "clusters": "the balanced k-means clusters of the pool (salad active-cluster)",
    "probes": "the probe documents spoken and encoded (salad active-probes)",
    "misalignment": "M(c) of the Stage I model per cluster (salad active-misalignment's metrics)",
    "select_dir": "D_active of this gamma (salad active-select)",
    "metrics": "the baseline's metrics JSON (default: metrics/baselines/<name>.json)",
    "measure_path": "the measure stage's metrics (M, F)",
    "evaluate_path": "the evaluate stage's metrics (best formats, gaps)",
    "notebook": "the report notebook (jupytext percent format, notebooks/<name>.py)",
    "timeout": "seconds a notebook cell may run",
    "reports": "the reports folder, one subfolder per notebook",
    "profile": "a params file of the same schema (a profile under params/)",
    "repo": "the project whose sources the work tree copies",
    "name": "the baseline to score (a key of salad.baselines.speech_llms.BASELINES)",
    "model": "the local folder of the baseline's weights",
    "asr_model": "a local Whisper folder for the cascade's transcripts (default: the oracle transcript)",
    "reference": "the backbone's text records (the evaluate stage's teacher.jsonl): adds the gaps of Tables 3 and 5",
    "modes": "the modes to score the baseline in",
    "limit": "score only the first N items of each task (a quick look)",
    "device": "a torch device (default: cuda when available, else cpu)",
    "work": "a folder for the stand-ins and their outputs (default: a temporary folder, removed)",
    "list_only": "only list the local files the profile reads and how to get them (no stand-ins; exit status 0)",
    "json": "print the estimate as JSON",
}
"""Each option's help. A parameter of a dataclass (estimate's Rates) takes its help from the field's docstring."""


def field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under a dataclass's fields (`x: int = 1` then `\"\"\"what x is\"\"\"`)."""
    import ast
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr) \
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _help(text: str | None, default: str | None) -> str:
    parts = [t for t in (text, None if default is None else f"(default: {default})") if t]
    return " ".join(parts)


@dataclass(frozen=True)
class Option:
    """One command-line argument of a function's parameter (a dataclass parameter has one per field)."""

    parameter: str
    flag: str
    """`--name`, or the bare name of a positional argument (a positional-only parameter)."""
    argparse: dict
    """Keyword arguments of `add_argument`."""
    read: Callable[[Any], Any] = lambda value: value
    """The parsed value -> the function's argument."""
    field: str | None = None
    """The field of a dataclass parameter this option sets."""

    @property
    def dest(self) -> str:
        return self.parameter if self.field is None else f"{self.parameter}.{self.field}"


def option_name(parameter: str) -> str:
    """`teacher_dir` -> `teacher`, `metrics_path` -> `metrics`, `asr_model` -> `asr-model`: the suffix says what kind
    of path a parameter is, the option only which one (so dvc.yaml reads `--teacher data/models/teacher`)."""
    for suffix in ("_dir", "_path"):
        if parameter.endswith(suffix):
            parameter = parameter[:-len(suffix)]
    return parameter.replace("_", "-")


def _section_of(hint: Any) -> str | None:
    """The field of Params whose type is `hint` (a section such as EncodeConfig), if any."""
    fields = typing.get_type_hints(Params)
    return next((name for name, t in fields.items() if t is hint and dataclasses.is_dataclass(t)), None)


def _params_reader(name: str, hint: Any) -> Callable[[Path], Any] | None:
    """How a parameter takes the params file, if it does: `params` gets it loaded, a parameter typed as one of its
    sections (`cfg: EncodeConfig`) that section, `params_path` the path itself."""
    if name == "params_path":
        return lambda path: path
    if name == "params" or hint is Params:
        return load_checked_params
    section = _section_of(hint)
    if section is not None:
        return lambda path: getattr(load_checked_params(path), section)
    return None


def load_checked_params(path: Path) -> Params:
    """The params file, validated whole: its sections and the task and corpus names it gives (check-params)."""
    from salad.stages.check_params import check_names  # imported when a command runs: `salad --help` stays fast

    return check_names(load_params(path))


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _argument(hint: Any, default: Any) -> tuple[dict, Callable[[Any], Any]]:
    """`add_argument` keywords for a value of type `hint` (raises TypeError for a type with no command-line form)
    and how to turn the parsed value into the function's argument."""
    origin, members = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # X | None; str | Path reads as a Path
        present = [m for m in members if m is not type(None)]
        if Path in present:
            return _argument(Path, default)
        if len(present) == 1:
            return _argument(present[0], default)
        raise TypeError(f"no command-line form for {hint}")
    if hint is bool:
        return {"action": "store_true" if default is False else argparse.BooleanOptionalAction}, bool
    if origin is Literal:
        return {"type": type(members[0]), "choices": list(members)}, lambda value: value
    if origin in (tuple, list):
        element, _ = _argument(members[0], inspect.Parameter.empty)
        return {**element, "nargs": "+"}, origin
    if hint in (Path, str, int, float):
        return {"type": hint}, lambda value: value
    raise TypeError(f"no command-line form for {hint}")


def options(function: Callable) -> list[Option]:
    """The command-line options of `function`, from its signature (see the module docstring)."""
    hints = typing.get_type_hints(function)
    result = []
    for p in inspect.signature(function).parameters.values():
        hint, default, required = hints.get(p.name), p.default, p.default is inspect.Parameter.empty
        described = OPTION_HELP.get(p.name, OPTION_HELP.get(option_name(p.name).replace("-", "_")))
        shown = ({"help": _help(described, None)} if required else
                 {"default": argparse.SUPPRESS, "help": _help(described, _shown(default))})
        reader = _params_reader(p.name, hint)
        if reader is not None:
            result.append(Option(p.name, "--params", {"type": Path, "default": PARAMS_FILE,
                                                      "help": _help(described, str(PARAMS_FILE))}, reader))
        elif dataclasses.is_dataclass(hint):  # one option per field, e.g. estimate's Rates
            base = hint() if required else default
            field_hints, docs = typing.get_type_hints(hint), field_docs(hint)
            for f in dataclasses.fields(hint):
                value = getattr(base, f.name)
                kwargs, read = _argument(field_hints[f.name], value)
                result.append(Option(p.name, f"--{option_name(f.name)}", {
                    **kwargs, "default": argparse.SUPPRESS, "help": _help(docs.get(f.name), _shown(value))}, read,
                    field=f.name))
        else:
            try:
                kwargs, read = _argument(hint, default)
            except TypeError:
                if required:
                    raise TypeError(f"{function.__qualname__}: parameter {p.name} has no command-line form") from None
                continue  # e.g. a dict: the function's default stands
            if p.kind is inspect.Parameter.POSITIONAL_ONLY:
                result.append(Option(p.name, p.name, {**kwargs, **({} if required else {"nargs": "?"}), **shown},
                                     read))
            else:
                result.append(Option(p.name, f"--{option_name(p.name)}", {**kwargs, **shown, "required": required},
                                     read))
    flags = [o.flag for o in result]
    if len(set(flags)) != len(flags):
        raise ValueError(f"{function.__qualname__}: two parameters make the same option: {flags}")
    return result


def call(function: Callable, namespace: argparse.Namespace) -> Any:
    """Call `function` with the parsed options; an option not given leaves the function's default."""
    given = vars(namespace)
    positional, keywords = [], {}
    all_options = options(function)
    hints = typing.get_type_hints(function)
    for name, p in inspect.signature(function).parameters.items():
        mine = [o for o in all_options if o.parameter == name and o.dest in given]
        if not mine:
            continue
        if mine[0].field is not None:  # a dataclass from its fields' options, the rest from the default
            base = hints[name]() if p.default is inspect.Parameter.empty else p.default
            value = dataclasses.replace(base, **{o.field: o.read(given[o.dest]) for o in mine})
        else:
            value = mine[0].read(given[mine[0].dest])
        if p.kind is inspect.Parameter.POSITIONAL_ONLY:
            positional.append(value)
        else:
            keywords[name] = value
    return function(*positional, **keywords)


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command; only those in `commands` (default: all) get their options, which imports their
    functions."""
    commands = set(COMMANDS) if commands is None else set(commands)
    parser = argparse.ArgumentParser(prog="salad", description=__doc__.splitlines()[0],
                                     epilog="--traceback (anywhere on the line): show the full trace of an error "
                                            "instead of its one-line message")
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="command")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=f"{command.help} ({command.target})")
        if name in commands:
            for option in options(command.function()):
                if option.flag.startswith("--"):
                    named = {} if "choices" in option.argparse or "action" in option.argparse else {
                        "metavar": option.flag[2:].upper().replace("-", "_")}
                    p.add_argument(option.flag, dest=option.dest, **named, **option.argparse)
                else:
                    p.add_argument(option.flag, **option.argparse)
    return parser


# Errors that salad raises with a message meant for the user (a bad value, a missing file, a record that names its
# problem, a stage that cannot start): printed as one line; anything else is a bug and shows its traceback.
KNOWN_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError)


def _known_errors() -> tuple[type[BaseException], ...]:
    from salad.storage.store import CannotBuild, TooManySkipped

    return (*KNOWN_ERRORS, CannotBuild, TooManySkipped)


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _leave_process_group() -> None:
    """Leave a torchrun process group that a command joined. A rank that exits with its gloo or NCCL group still up
    can abort in the C++ teardown ("terminate called without an active exception"), failing a finished run."""
    distributed = sys.modules.get("torch.distributed")  # never imported here only to ask
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


atexit.register(_leave_process_group)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    show_traceback = "--traceback" in argv
    argv = [a for a in argv if a != "--traceback"]
    name = next((a for a in argv if not a.startswith("-")), None)
    command = COMMANDS.get(name)
    if command is None or not command.online:  # before any import of the hub libraries
        go_offline()
    args = build_parser([name] if command is not None else []).parse_args(argv)
    started = time.perf_counter()
    try:
        result = call(COMMANDS[args.subcommand].function(), args)
    except _known_errors() as e:
        if show_traceback:
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"salad {args.subcommand}: error: {message} (--traceback shows where)", file=sys.stderr)
        return 1
    print(f"salad {args.subcommand}: done in {_duration(time.perf_counter() - started)}", file=sys.stderr)
    if result is not None:  # a command that prints its own report returns None
        json.dump(result, sys.stdout, indent=2, default=str)
        print()
    return 0


# ---------------------------------------------------------------------------------------------------------------
# Commands that are not a library function as it stands


def baseline(params: Params, name: str, model: Path, root: Path = Path("."), speech: Path = Path("data/speech"),
             out: Path = Path("data/baselines"), metrics: Path | None = None, asr_model: Path | None = None,
             reference: Path | None = None, modes: tuple[Literal["text", "speech"], ...] = ("text", "speech"),
             limit: int | None = None, device: str | None = None) -> dict:
    """Score the speech LLM `name` (a key of salad.baselines.speech_llms.BASELINES) from its local folder `model`;
    `metrics` defaults to metrics/baselines/<name>.json. See `evaluate_baseline` for the rest."""
    from salad.baselines.speech_llms import evaluate_baseline

    return evaluate_baseline(params, name, model, root, speech, out,
                             metrics or Path("metrics/baselines") / f"{name}.json",
                             asr_model=asr_model, reference=reference, modes=modes, limit=limit, device=device)


def check_profile(profile: Path, /, work: Path | None = None, raw: Path = Path("data/raw"),
                  out: Path | None = None, list_only: bool = False) -> None:
    """Validate the params file `profile` on stand-ins in `work` (default: a temporary folder, removed) and print the
    report; `out`: also write it as JSON there. Fails (exit status 1) when a local file the profile reads is missing,
    after the whole report; `list_only`: only list those files and how to get them (no stand-ins, exit status 0)."""
    import tempfile

    import salad.scale.check_profile as profile_check

    if list_only:
        print(profile_check.format_needs(profile_check.needs(load_checked_params(profile)), profile))
        return
    with tempfile.TemporaryDirectory(prefix="salad-check-") as tmp:
        report = profile_check.check_profile(profile, work or tmp, raw=raw)
    if out:
        from salad.storage.atomic import write_json
        write_json(out, json.loads(json.dumps(report, default=str)))
    print(profile_check.format_report(report))
    missing = [n["param"] for n in report["needs"] if not n["present"]]
    if missing:
        raise SystemExit(f"salad check-profile: {len(missing)} local file(s) the profile reads are missing: "
                         f"{', '.join(missing)} (how to get each is listed above)")


def estimate(params: Params, rates: Rates = Rates(), json: bool = False) -> dict | None:
    """Print the dry-run estimate of the profile under `rates` (each a flag); `json`: return it, printed as JSON."""
    import salad.scale.estimate as dry_run

    result = dry_run.estimate(params, rates)
    if json:
        return result
    print(dry_run.format_estimate(result))
    return None


def fetch(params_path: Path, corpus: Literal["web", "text_mix", "natural_speech"]) -> dict:
    """Stream the profile's `corpora.<corpus>` into `<corpora.out>/<corpus>`: this rank's share, resumable."""
    from salad.scale.corpora import fetch as fetch_corpus

    c = load_checked_params(params_path).corpora
    spec = getattr(c, corpus)
    if spec is None:
        raise SystemExit(f"{params_path}: corpora.{corpus} is null: name the corpus to fetch there")
    return fetch_corpus(corpus, spec, Path(c.out) / corpus, docs_per_part=c.docs_per_part,
                        max_documents=c.max_documents)


if __name__ == "__main__":
    sys.exit(main())
