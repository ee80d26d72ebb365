"""What plugin authors import: the peft-method helper, architectures, data files, metrics, weights, objective
helpers (tokenising, padding, scoring rows), the model cache, conformance.

Built-in plugins use exactly this and the top-level :mod:`peftkit` API, nothing else of the core, so a
third-party plugin can do everything a built-in does. The conformance suite (:mod:`peftkit.kit.conformance`),
the tiny models it runs on (:mod:`peftkit.kit.tiny`) and the scaffold (:mod:`peftkit.kit.scaffold`) are
imported from their modules: they pull in torch, this package does not.
"""

from __future__ import annotations

from peftkit.build.batches import Encoded, encode, pad_batch
from peftkit.build.model import classifier_heads, quiet_transformers
from peftkit.evaluation.evaluate import forward_batches, row_logits, scores
from peftkit.evaluation.metrics import classification_metrics
from peftkit.kit import trackers
from peftkit.kit.datafiles import field, missing_files, read_rows
from peftkit.kit.objectives import check_labels, row_name
from peftkit.kit.peft_method import MethodNotApplicable, PeftMethod, count_parameters, linear_names
from peftkit.kit.trackers import plugin_settings
from peftkit.kit.weights import load_safetensors_into
from peftkit.plugin.architectures import FAMILIES, Family, family, resolve_targets
from peftkit.plugin.contracts import ConfigSection, EncodeContext, Objective
from peftkit.recipe import folder_model_type, selection_metric

# The names of the built-in objectives (plugins/classification), for plugins that refer to them (prefix tuning's
# task_heads, tasks' objective); the core itself names no objective.
SEQUENCE_CLASSIFICATION = "sequence-classification"
MULTIPLE_CHOICE = "multiple-choice"

__all__ = [
    "ConfigSection",
    "FAMILIES",
    "MULTIPLE_CHOICE",
    "SEQUENCE_CLASSIFICATION",
    "EncodeContext",
    "Encoded",
    "Family",
    "MethodNotApplicable",
    "Objective",
    "PeftMethod",
    "check_labels",
    "classification_metrics",
    "classifier_heads",
    "count_parameters",
    "encode",
    "family",
    "field",
    "folder_model_type",
    "forward_batches",
    "linear_names",
    "load_safetensors_into",
    "missing_files",
    "pad_batch",
    "plugin_settings",
    "quiet_transformers",
    "read_rows",
    "resolve_targets",
    "row_logits",
    "row_name",
    "scores",
    "selection_metric",
    "trackers",
]
