"""The CLI: every table-dispatched stage passes exactly its function's arguments, in order."""

import importlib
import inspect

import pytest

from salad.cli import CELL_STAGES, build_parser


@pytest.mark.parametrize("stage", sorted(CELL_STAGES))
def test_dispatched_stages_pass_their_functions_arguments_in_order(stage):
    module, function, names = CELL_STAGES[stage]
    signature = inspect.signature(getattr(importlib.import_module(module), function))
    params = [p for p in signature.parameters.values() if p.default is inspect.Parameter.empty]
    assert params[0].name == "params"
    assert len(names.split()) == len(params) - 1, (names, [p.name for p in params])
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "stage").choices[stage]
    flags = {a.dest for a in sub._actions}
    assert set(names.split()) <= flags, set(names.split()) - flags
