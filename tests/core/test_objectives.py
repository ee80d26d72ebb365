"""Objectives as plugins: registration (duplicates, one default, tasks naming unknown objectives), a third-party
objective used end to end, the conformance suite over every registered objective, and a core that names none."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from peftkit.kit.conformance import check_objective, objective_cases
from peftkit.plugin.registry import build_registry, get_registry

REPO = Path(__file__).resolve().parents[2]


def _plugin(**hooks):
    from peftkit import hookimpl

    return type("P", (), {name: staticmethod(hookimpl(fn)) for name, fn in hooks.items()})()


def _renamed(name: str, new: str, **attrs):
    obj = copy.copy(get_registry().objectives[name])
    obj.name = new
    for k, v in attrs.items():
        setattr(obj, k, v)
    return obj


@pytest.mark.parametrize("name", objective_cases())
def test_every_registered_objective_passes_the_conformance_suite(name):
    reports = check_objective(name)
    objective = get_registry().objectives[name]
    ran = [r for r in reports.values() if not isinstance(r, str)]
    assert ran and all(r.loss > 0 and r.metrics["eval_loss"] > 0 and r.batch_shape[0] >= 1 for r in ran)
    if getattr(objective, "encoder_only", False):
        assert isinstance(reports["llama"], str)
    if getattr(objective, "decoder_only", False):
        assert isinstance(reports["bert"], str) and not isinstance(reports["llama"], str)


def test_objectives_register_like_methods_and_tasks():
    reg = get_registry()
    assert {"sequence-classification", "multiple-choice"} <= set(reg.objectives)  # beside other plugins' objectives
    assert "masked-lm" in reg.objectives and reg.default_objective == "sequence-classification"
    assert reg.plugins["classification"].objectives == ["sequence-classification", "multiple-choice"]
    assert reg.plugins["mlm"].objectives == ["masked-lm"] and reg.plugins["mlm"].tasks == ["mlm"]
    assert reg.objective_of(reg.tasks["text-classification"]).name == "sequence-classification"  # names none
    assert reg.objective_of(reg.tasks["fewclue/chid"]).name == "multiple-choice"  # the older `head` attribute
    assert reg.objective_of(reg.tasks["mlm"]).auto_class == "AutoModelForMaskedLM"


@pytest.mark.parametrize(
    "objective, error",
    [
        (
            lambda: _renamed("masked-lm", "masked-lm"),
            "objective name 'masked-lm' is already registered by plugin 'mlm'; rename it, or set "
            "PEFTKIT_DISABLE_PLUGINS=mlm to use this one instead",
        ),
        (
            lambda: _renamed("sequence-classification", "acme-cls"),
            "objective 'acme-cls' sets default = True, but 'sequence-classification' (plugin 'classification') "
            "already is the default objective",
        ),
        (lambda: type("O", (), {"name": "x", "summary": "s"})(), "without auto_class, labelled, check_rows"),
    ],
)
def test_an_objective_that_cannot_be_used_leaves_its_plugin_out(objective, error):
    reg = build_registry(extra_plugins={"bad": _plugin(peftkit_register_objectives=lambda: [objective()])})
    assert error in reg.broken["bad"], reg.broken
    assert "bad" not in reg.plugins and reg.owners[("objectives", "masked-lm")] == "mlm"


def test_a_task_may_name_an_objective_its_own_plugin_registers_and_no_other(tiny_bert, tiny_data, tmp_path):
    from peftkit.kit.tiny import tiny_recipe
    from peftkit.recipe import validate
    from peftkit.train.loop import run

    reg0 = get_registry()
    task = copy.copy(reg0.tasks["text-classification"])
    task.name, task.objective = "acme/cls", "acme-cls"
    objective = _renamed("sequence-classification", "acme-cls", default=False)
    scored = []
    score = objective.score
    objective.score = lambda outputs, data, t: scored.append(len(data)) or score(outputs, data, t)
    lone = build_registry(extra_plugins={"lone": _plugin(peftkit_register_tasks=lambda: [task])})
    assert "objective 'acme-cls', which is not one of " in lone.broken["lone"]
    assert "sequence-classification, multiple-choice" in lone.broken["lone"]
    reg = build_registry(
        extra_plugins={
            "acme": _plugin(peftkit_register_objectives=lambda: [objective], peftkit_register_tasks=lambda: [task])
        }
    )
    assert reg.plugins["acme"].objectives == ["acme-cls"] and reg.objective_of(reg.tasks["acme/cls"]) is objective
    data = tiny_recipe(tiny_bert, tiny_data, tmp_path / "run", max_steps=4)
    data["task"]["name"] = "acme/cls"
    summary = run(validate(data, registry=reg), registry=reg)
    assert scored and set(scored) == {48} and "accuracy" in summary["final"]  # the core scored through it


def test_the_core_names_no_objective():
    names = re.compile(r"sequence-classification|multiple-choice|SEQUENCE_CLASSIFICATION|MULTIPLE_CHOICE")
    layers = ("plugin", "recipe", "build", "evaluation", "train")  # kit names the built-ins for plugins
    hits = [
        f"{p.relative_to(REPO)}:{i}"
        for layer in layers
        for p in sorted((REPO / "peftkit" / layer).rglob("*.py"))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if names.search(line)
    ]
    assert hits == [], hits
