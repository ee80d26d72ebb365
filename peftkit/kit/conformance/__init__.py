"""The conformance suites: what every Method (``check_method``) and Task (``check_task``) must satisfy,
for built-in and third-party plugins alike.

One line in a plugin's tests runs it on a tiny BERT (without a pooler, so the pooler is part of the
task head), a tiny Llama, and the tiny BERT with a multiple-choice head (two choices per row)::

    from peftkit.kit.conformance import check_method

    def test_my_method(tmp_path):
        check_method(MyMethod(), tmp_path)          # or check_method("my-method", tmp_path)

For each model it checks that: the method applies; exactly the intended parameters train (what the
method adds, the task head, and the base parameters its ``trains_base_params`` regex names); the
reported trainable count (:func:`peftkit.kit.peft_method.count_parameters`) equals the true count; forward
and backward run and every trainable parameter gets a gradient; a few optimizer steps (firing the
method plugin's own ``peftkit_on_step_end`` hook, as the runner does, when the method is registered
through an entry point) lower the loss on a fixed batch;
save → load into a *differently seeded* fresh base gives identical logits (so a head that is not
saved fails); merged equals unmerged where ``can_merge``, and ``merge`` refuses with an explanation
otherwise. A method raising :class:`peftkit.kit.peft_method.MethodNotApplicable` for a model is skipped for it
with its message. Failures raise :class:`ConformanceError` naming the method, the model and the fix.
"""

from peftkit.kit.conformance.common import INIT_STD, LABELS, MODELS, ConformanceError
from peftkit.kit.conformance.method import ConformanceReport, cases, check_method, run_conformance
from peftkit.kit.conformance.objective import ObjectiveReport, check_objective, objective_cases
from peftkit.kit.conformance.task import check_task

__all__ = [
    "INIT_STD",
    "LABELS",
    "MODELS",
    "ConformanceError",
    "ConformanceReport",
    "ObjectiveReport",
    "cases",
    "check_method",
    "check_objective",
    "check_task",
    "objective_cases",
    "run_conformance",
]
