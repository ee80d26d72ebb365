"""What plugin authors import: the peft-method helper, architectures, data files, metrics, weights, conformance.

Built-in plugins use exactly this and the top-level :mod:`peftkit` API, nothing else of the core, so a
third-party plugin can do everything a built-in does. The conformance suite (:mod:`peftkit.kit.conformance`),
the tiny models it runs on (:mod:`peftkit.kit.tiny`) and the scaffold (:mod:`peftkit.kit.scaffold`) are
imported from their modules: they pull in torch, this package does not.
"""

from __future__ import annotations

from peftkit.build.model import quiet_transformers
from peftkit.evaluation.metrics import classification_metrics
from peftkit.kit import trackers
from peftkit.kit.datafiles import field, missing_files, read_rows
from peftkit.kit.peft_method import MethodNotApplicable, PeftMethod, count_parameters, linear_names
from peftkit.kit.trackers import plugin_settings
from peftkit.kit.weights import load_safetensors_into
from peftkit.plugin.architectures import FAMILIES, Family, family, resolve_targets
from peftkit.plugin.contracts import MULTIPLE_CHOICE, SEQUENCE_CLASSIFICATION, ConfigSection
from peftkit.recipe import selection_metric

__all__ = [
    "ConfigSection",
    "FAMILIES",
    "MULTIPLE_CHOICE",
    "SEQUENCE_CLASSIFICATION",
    "Family",
    "MethodNotApplicable",
    "PeftMethod",
    "classification_metrics",
    "count_parameters",
    "family",
    "field",
    "linear_names",
    "load_safetensors_into",
    "missing_files",
    "plugin_settings",
    "quiet_transformers",
    "read_rows",
    "resolve_targets",
    "selection_metric",
    "trackers",
]
