"""The method conformance suite: what every Method must satisfy (``check_method``), on each tiny model."""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftkit.errors import PeftkitError
from peftkit.kit import MULTIPLE_CHOICE
from peftkit.kit.conformance.checks import ce, check_backward, check_count, check_trainable, logits
from peftkit.kit.conformance.common import MODELS, Bench, ConformanceError, bench
from peftkit.kit.conformance.common import base as fresh_base
from peftkit.kit.peft_method import MethodNotApplicable
from peftkit.plugin.contracts import ApplyContext, heads_note, method_objectives

_UNSET: Any = object()


@dataclass
class ConformanceReport:
    """What one conformance run measured (for a test to assert more, or to print)."""

    method: str
    model: str
    trainable: int
    total: int
    loss_before: float
    loss_after: float
    reload_max_diff: float
    merge_max_diff: float | None
    facts: dict[str, Any] = field(default_factory=dict)


def _resolve(method: Any) -> tuple[Any, Any]:
    """(Method, the plugin object that registered it or None)."""
    from peftkit.plugin.registry import get_registry

    reg = get_registry()
    if isinstance(method, str):
        if method not in reg.methods:
            raise ConformanceError(f"no method {method!r} is registered (registered: {', '.join(sorted(reg.methods))})")
        method = reg.methods[method]
    for pname, info in reg.plugins.items():
        if reg.methods.get(method.name) is method and method.name in info.methods:
            return method, reg.pm.get_plugin(pname)
    return method, None


def run_conformance(
    method: Any,
    tmp_path: str | Path,
    *,
    params: dict | None = None,
    model: str = "bert",
    steps: int | None = None,
    lr: float | None = None,
    trains_base: Any = _UNSET,
    atol: float = 1e-5,
    bits: int | None = None,
) -> ConformanceReport:
    """Run every check for one method on one tiny model.

    Args:
        method: a Method object or a registered method name.
        tmp_path: a writable folder (saved models go under it).
        params: ``method.params`` (validated by the method's params_model); None = its defaults.
        model: ``bert``, ``llama`` or ``bert-multiple-choice`` (a multiple-choice head on the tiny BERT; a method
            whose ``task_heads`` leave that head out raises MethodNotApplicable).
        steps: optimizer steps on the fixed batch (also the ``total_steps`` the method is told); None = 8, or 16 on
            the multiple-choice model (its head must learn how text and choice interact, not a class: IA3 at its
            default rate needs more than 8 steps there).
        lr: learning rate; None = the method's default_lr, at least 1e-3 so a few steps move a tiny model.
        trains_base: regex of base parameters the method trains; default = its ``trains_base_params``.
        atol: largest logit difference accepted for save → load and merge.
        bits: load the base bitsandbytes-quantized (4 or 8; the method must list it in quantized_bits).
            The merge check is skipped then (merging into a quantized base is refused by design).

    Raises:
        ConformanceError: a check failed. MethodNotApplicable: the method refuses this model.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is ~5x faster than several contending ones
    try:
        steps = steps or (16 if model == "bert-multiple-choice" else 8)
        return _run(method, Path(tmp_path), params, model, steps, lr, trains_base, atol, bits)
    finally:
        torch.set_num_threads(threads)


def _run(
    method: Any,
    tmp_path: Path,
    params: dict | None,
    model: str,
    steps: int,
    lr: float | None,
    trains_base: Any,
    atol: float,
    bits: int | None,
) -> ConformanceReport:
    m, owner = _resolve(method)
    tag = f"[{m.name} on tiny {model}{f' ({bits}-bit)' if bits else ''}]"
    if bits and bits not in m.quantized_bits:
        raise ConformanceError(f"{tag} the method does not list {bits} in quantized_bits; nothing to check")
    heads = method_objectives(m)
    if model == "bert-multiple-choice" and heads is not None and MULTIPLE_CHOICE not in heads:
        raise MethodNotApplicable(heads_note(m, MULTIPLE_CHOICE))
    p = m.params_model.model_validate(params or {})
    b = bench(model)
    base, heads = fresh_base(b, 0, bits)
    base_names = {id(t): n for n, t in base.named_parameters()}
    ctx = ApplyContext(head_modules=heads, model_type=base.config.model_type, total_steps=steps, quantization_bits=bits)
    trained = m.apply(base, p, ctx)
    regex = getattr(m, "trains_base_params", None) if trains_base is _UNSET else trains_base
    check_trainable(trained, base_names, heads, regex, tag)
    counts = check_count(trained, tag)
    check_backward(trained, b.batch, tag)
    before, after = _train(m, owner, trained, b.batch, steps, lr or max(m.default_lr, 1e-3), tag)
    ref = logits(trained, b.batch)
    loaded, reload_diff = _reload(m, trained, b, tmp_path / f"{m.name}-{model}", heads, ref, atol, tag, bits)
    merge_diff = None if bits else _check_merge(m, loaded, b.batch, ref, atol, tag)
    facts = m.facts(trained)
    try:
        json.dumps(facts)
    except (TypeError, ValueError) as exc:
        raise ConformanceError(f"{tag} facts() must return JSON-serialisable data for metrics.json: {exc}") from exc
    return ConformanceReport(
        m.name, model, counts["trainable"], counts["total"], before, after, reload_diff, merge_diff, facts
    )


def _train(
    m: Any, owner: Any, model: Any, batch: dict[str, Any], steps: int, lr: float, tag: str
) -> tuple[float, float]:
    """A few AdamW steps on one batch, firing the method plugin's own step hook like the runner does."""
    import torch

    from peftkit.plugin.registry import get_registry
    from peftkit.plugin.state import RunState

    reg = get_registry()
    hook = None
    if owner is not None:
        others = [p for p in reg.pm.get_plugins() if p is not owner]
        hook = reg.pm.subset_hook_caller("peftkit_on_step_end", remove_plugins=others)
    before = ce(model, batch)
    opt = torch.optim.AdamW([t for t in model.parameters() if t.requires_grad], lr=lr, weight_decay=0.0)
    state = RunState(recipe=None, method=m, task=None, model=model, optimizer=opt, total_steps=steps)
    for step in range(1, steps + 1):
        model.train()
        model(**batch).loss.backward()
        opt.step()
        state.step = step
        if hook is not None:
            hook(state=state)  # after step, before zero_grad: where the runner fires it
        opt.zero_grad(set_to_none=True)
    after = ce(model, batch)
    if not after < before:
        raise ConformanceError(
            f"{tag} {steps} steps at lr {lr:g} did not lower the loss on a fixed batch ({before:.5f} → {after:.5f})"
        )
    return before, after


def _reload(
    m: Any,
    model: Any,
    b: Bench,
    directory: Path,
    heads: list[str],
    ref: Any,
    atol: float,
    tag: str,
    bits: int | None = None,
) -> tuple[Any, float]:
    if directory.exists():
        shutil.rmtree(directory)
    m.save(model, directory)
    if not any(directory.iterdir()):
        raise ConformanceError(f"{tag} save() wrote nothing to {directory}")
    fresh, _ = fresh_base(b, 1234, bits)
    loaded = m.load(fresh, directory)
    diff = float((logits(loaded, b.batch) - ref).abs().max())
    if diff > atol:
        raise ConformanceError(
            f"{tag} save → load changed the logits by {diff:.3g} (> {atol:g}): something that trained "
            f"was not saved or not restored (the task head {heads}?)"
        )
    return loaded, diff


def _check_merge(m: Any, loaded: Any, batch: dict[str, Any], ref: Any, atol: float, tag: str) -> float | None:
    if not m.can_merge:
        try:
            m.merge(loaded)
        except PeftkitError as exc:
            if "merge" not in str(exc).lower() or len(str(exc)) < 40:
                raise ConformanceError(
                    f"{tag} merge() refusal should explain why it cannot merge; got {exc!r}"
                ) from exc
            return None
        raise ConformanceError(f"{tag} can_merge is False but merge() did not raise PeftkitError")
    merged = m.merge(loaded)
    if hasattr(merged, "peft_config"):
        raise ConformanceError(f"{tag} merge() returned a model that still carries peft layers")
    diff = float((logits(merged, batch) - ref).abs().max())
    if diff > atol:
        raise ConformanceError(f"{tag} merged logits differ from unmerged by {diff:.3g} (> {atol:g})")
    return diff


def check_method(
    method: Any, tmp_path: str | Path, *, params: dict | None = None, models: tuple[str, ...] = MODELS, **kwargs: Any
) -> dict[str, ConformanceReport | str]:
    """Run the suite on every tiny model; the one-line entry point for plugin tests.

    Returns:
        ``{model: report}``, or ``{model: reason}`` for a model the method refuses (also warned about).

    Raises:
        ConformanceError: a check failed, or the method refuses every model.
    """
    out: dict[str, ConformanceReport | str] = {}
    for kind in models:
        try:
            out[kind] = run_conformance(method, Path(tmp_path) / kind, params=params, model=kind, **kwargs)
        except MethodNotApplicable as exc:
            out[kind] = str(exc)
            warnings.warn(f"conformance: skipped tiny {kind}: {exc}", stacklevel=2)
    if all(isinstance(v, str) for v in out.values()):
        raise ConformanceError(f"method refuses every conformance model ({', '.join(models)}): {out}")
    return out


def cases() -> list[tuple[str, str]]:
    """``(method name, model)`` for every registered method × tiny model, for ``pytest.mark.parametrize``."""
    from peftkit.plugin.registry import get_registry

    return [(name, kind) for name in sorted(get_registry().methods) for kind in MODELS]
