"""Decoders first-class: the ``causal-lm`` objective with the ``lm/sft`` (instruction / chat data, answer-only
loss, generation metrics) and ``lm/text`` (continued pretraining) tasks, the ``label-likelihood`` objective
(any labelled task on a decoder, labels scored by their wording's likelihood), and the ``peftkit generate`` and
``peftkit chat`` commands."""

from peftkit import hookimpl
from peftkit_plugins.causal_lm.likelihood import LabelLikelihood
from peftkit_plugins.causal_lm.objective import CausalLM
from peftkit_plugins.causal_lm.tasks import SftTask, TextTask


@hookimpl
def peftkit_register_objectives():
    return [CausalLM(), LabelLikelihood()]


@hookimpl
def peftkit_register_tasks():
    return [SftTask(), TextTask()]


@hookimpl
def peftkit_add_commands(subparsers):
    from peftkit_plugins.causal_lm.commands import add_commands

    add_commands(subparsers)
