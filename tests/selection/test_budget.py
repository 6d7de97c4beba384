"""Budgets in audio (docs/design.md §6): the shortest draw-order prefix that reaches a budget, and D_active's ids."""

import json

import pytest

from salad.selection.budget import active_ids, budget_prefix


def test_budget_prefix_is_the_shortest_prefix_that_reaches_the_budget():
    seconds = [3.0, 4.0, 2.0, 5.0]
    assert budget_prefix(seconds, 0.0) == 0
    assert budget_prefix(seconds, 3.0) == 1        # reached exactly
    assert budget_prefix(seconds, 3.5) == 2
    assert budget_prefix(seconds, 9.0) == 3
    assert budget_prefix(seconds, 14.0) == 4
    with pytest.raises(ValueError, match="plan_margin"):
        budget_prefix(seconds, 14.5)


def test_active_ids_are_the_budgets_prefix_of_the_draw_order(tmp_path):
    selection = {"gamma": 5.0, "order": ["a", "b", "c", "d"], "seconds": [1.0, 2.0, 3.0, 4.0],
                 "prefix": {"0.1": 2, "0.5": 4}}
    (tmp_path / "selection.json").write_text(json.dumps(selection))
    assert active_ids(tmp_path, 0.1) == ["a", "b"]
    assert active_ids(tmp_path, 0.5) == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="no D_active for budget 0.2"):
        active_ids(tmp_path, 0.2)
