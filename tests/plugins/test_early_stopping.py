"""Early stopping: the count of evaluations without improvement, and a real run that stops where it should."""

from __future__ import annotations

import math

import pytest

import peftkit
from peftkit.kit.tiny import tiny_recipe
from peftkit.recipe import validate
from peftkit_plugins.early_stopping import evaluations_without_improvement


@pytest.mark.parametrize(
    "values,min_delta,expected",
    [
        ([0.5, 0.6, 0.7], 0.0, 0),
        ([0.5, 0.6, 0.6, 0.55], 0.0, 2),  # a tie is no improvement
        ([0.5, 0.6, 0.601, 0.602], 0.01, 2),  # gains under min_delta do not count ...
        ([0.5, 0.6, 0.605, 0.611], 0.01, 2),  # ... measured from the best so far, which follows every rise
        ([0.5, math.nan, 0.4], 0.0, 2),  # a NaN never improves
        ([math.nan, 0.1], 0.0, 0),  # the first number is an improvement over nothing
    ],
)
def test_evaluations_without_improvement(values, min_delta, expected):
    assert evaluations_without_improvement(values, min_delta) == expected


def test_a_run_stops_at_the_evaluation_patience_names(tiny_bert, tiny_data, tmp_path):
    # lr 1e-9 changes nothing measurable: evaluation 1 is the best, 2 and 3 do not beat it -> stop after the 3rd
    recipe = tiny_recipe(tiny_bert, tiny_data, tmp_path / "out", epochs=4, lr=1e-9)
    recipe["eval"] = {"every": 2}
    recipe["plugins_config"] = {"early_stopping": {"patience": 2}}
    result = peftkit.run(validate(recipe))
    assert [h["step"] for h in result["history"]] == [2, 4, 6]
    assert result["train"]["steps"] == 6 < result["total_steps"]
    assert result["early_stopping"]["stopped_at_step"] == 6 and result["early_stopping"]["best_step"] == 2


def test_without_its_section_a_run_goes_the_whole_way(tiny_bert, tiny_data, tmp_path):
    recipe = tiny_recipe(tiny_bert, tiny_data, tmp_path / "out", epochs=1, lr=1e-9)
    recipe["eval"] = {"every": 2}
    result = peftkit.run(validate(recipe))
    assert result["train"]["steps"] == result["total_steps"] and "early_stopping" not in result
