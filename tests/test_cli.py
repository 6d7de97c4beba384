"""The CLI: one table from command to function, its options read from the function's signature; every dvc.yaml
stage's cmd parses and passes every parameter its function requires."""

import argparse
import inspect
import itertools
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
import yaml

from salad.cli import COMMANDS, build_parser, call, option_name, options
from salad.config import Params

REPO = Path(__file__).resolve().parents[1]


def _lookup(expression: str, context: dict):
    value = context
    for key in expression.split("."):
        value = value[key]
    return value


def _interpolate(text: str, context: dict) -> str:
    return re.sub(r"\$\{([^}]+)\}", lambda m: str(_lookup(m.group(1).strip(), context)), text)


def _resolve(value, context: dict):
    """A foreach / matrix axis: a list, or `${...}` naming one in params.yaml."""
    if isinstance(value, str):
        match = re.fullmatch(r"\$\{([^}]+)\}", value.strip())
        return _lookup(match.group(1).strip(), context)
    return value


def dvc_commands() -> list[tuple[str, str]]:
    """(stage, cmd) for every stage of dvc.yaml, foreach and matrix stages expanded, `${...}` filled from
    params.yaml the way DVC does."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    result = []
    for name, stage in stages.items():
        if "foreach" in stage:
            for item in _resolve(stage["foreach"], params):
                result.append((f"{name}@{item}", _interpolate(stage["do"]["cmd"], {**params, "item": item})))
        elif "matrix" in stage:
            axes = {axis: _resolve(values, params) for axis, values in stage["matrix"].items()}
            for values in itertools.product(*axes.values()):
                item = dict(zip(axes, values))
                result.append((f"{name}@{'-'.join(map(str, values))}",
                               _interpolate(stage["cmd"], {**params, "item": item})))
        else:
            result.append((name, _interpolate(stage["cmd"], params)))
    return result


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_names_a_function_whose_required_parameters_are_required_options(name):
    """The table against the signatures: the function exists, every parameter without a default is an option the
    parser requires (or the params file), and every option is a parameter."""
    function = COMMANDS[name].function()
    signature = inspect.signature(function)
    opts = options(function)
    assert {o.parameter for o in opts} <= set(signature.parameters)
    for p in signature.parameters.values():
        if p.default is inspect.Parameter.empty:
            mine = [o for o in opts if o.parameter == p.name]
            assert mine, f"{name}: required parameter {p.name} has no option"
            option = mine[0]
            if option.flag == "--params":
                continue  # the params file, params.yaml unless given
            assert option.argparse.get("required", "nargs" not in option.argparse), (name, p.name)


def test_dvc_yaml_commands_parse_and_pass_every_required_parameter():
    parser = build_parser()
    commands = dvc_commands()
    assert commands
    for stage, cmd in commands:
        words = shlex.split(cmd)
        assert words[0] == "salad" and words[1] in COMMANDS, (stage, cmd)
        try:
            args = parser.parse_args(words[1:])
        except SystemExit:
            pytest.fail(f"{stage}: `{cmd}` does not parse (argparse said why above)")
        function = COMMANDS[words[1]].function()
        given = vars(args)
        for p in inspect.signature(function).parameters.values():
            if p.default is inspect.Parameter.empty:
                assert p.name in given, f"{stage}: {p.name} of {COMMANDS[words[1]].target} is not passed"


def test_options_map_one_to_one_onto_parameters(tmp_path):
    """Names, types, defaults and the params file, through a parse and a call."""
    def stage(params: Params, alpha: float, teacher_dir: Path, metrics_path: Path, data: Literal["speech", "broad"],
              modes: tuple[str, ...] = ("text",), limit: int | None = None, quiet: bool = False,
              extra: dict | None = None) -> dict:
        return dict(params=params, alpha=alpha, teacher_dir=teacher_dir, metrics_path=metrics_path, data=data,
                    modes=modes, limit=limit, quiet=quiet)

    parser = argparse.ArgumentParser()
    for o in options(stage):
        parser.add_argument(o.flag, dest=o.dest, **o.argparse)
    assert [o.flag for o in options(stage)] == ["--params", "--alpha", "--teacher", "--metrics", "--data", "--modes",
                                                "--limit", "--quiet"]
    (tmp_path / "p.yaml").write_text("alpha: 0.5\n")
    args = parser.parse_args(["--params", str(tmp_path / "p.yaml"), "--alpha", "0.25", "--teacher", "t",
                              "--metrics", "m.json", "--data", "broad", "--modes", "text", "speech"])
    got = call(stage, args)
    assert got["params"].alpha == 0.5
    assert got == {**got, "alpha": 0.25, "teacher_dir": Path("t"), "metrics_path": Path("m.json"), "data": "broad",
                   "modes": ("text", "speech"), "limit": None, "quiet": False}
    with pytest.raises(SystemExit):
        parser.parse_args(["--alpha", "0.25"])  # --teacher, --metrics, --data are required
    assert option_name("stage1_dir") == "stage1" and option_name("asr_model") == "asr-model"


def test_estimate_rates_are_flags(monkeypatch):
    import salad.scale.estimate as dry_run

    seen = {}
    monkeypatch.setattr(dry_run, "estimate", lambda params, rates: seen.setdefault("rates", rates) and {})
    monkeypatch.setattr(dry_run, "format_estimate", lambda result: "")
    from salad.cli import main

    assert main(["estimate", "--params", str(REPO / "params.yaml"), "--gpus", "128", "--mfu", "0.5"]) == 0
    assert seen["rates"] == dry_run.Rates(gpus=128, mfu=0.5)


def test_help_imports_no_stage():
    """`salad --help` builds the table without importing any function's module."""
    code = ("import sys; from salad.cli import build_parser; build_parser([]).format_help(); "
            "print(sorted(m for m in sys.modules if m.startswith('salad.') or m == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "torch" not in out and "salad.stages" not in out, out


def test_a_known_error_is_one_readable_line_and_traceback_shows_the_rest(tmp_path, capsys):
    from salad.cli import main
    from salad.config import ConfigError

    bad = tmp_path / "params.yaml"
    bad.write_text("- seed\n- alpha\n")
    assert main(["check-params", "--params", str(bad), "--out", str(tmp_path / "out.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert err.startswith("salad check-params: error: ") and "must be a mapping of sections" in err
    assert not (tmp_path / "out.json").exists()
    with pytest.raises(ConfigError, match="must be a mapping of sections"):
        main(["check-params", "--params", str(bad), "--out", str(tmp_path / "out.json"), "--traceback"])


def test_a_missing_teacher_is_one_readable_line(tmp_path, capsys):
    from salad.cli import main

    code = main(["measure", "--params", "params/ci.yaml", "--teacher", str(tmp_path / "no-teacher"),
                 "--model", str(tmp_path / "m"), "--speech", str(tmp_path), "--features", str(tmp_path),
                 "--metrics", str(tmp_path / "m.json")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.count("\n") == 0
    assert "teacher folder" in err and "does not exist: run the teacher stage" in err


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_and_every_option_has_help(name):
    """`salad <command> --help` says what the command does in a line and what each option is (not only its
    default); a new parameter needs its line in OPTION_HELP or, in a dataclass, a field docstring."""
    assert COMMANDS[name].help.strip()
    parser = build_parser([name])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    for action in sub._actions:
        if action.dest == "help":
            continue
        text = (action.help or "").strip()
        assert text and not text.startswith("(default"), (name, action.option_strings or action.dest, text)
