"""Hostile recipes, generated: every class of bad input (issue 22.1–22.3, 22.6) gets a RecipeError — one line
per problem, naming the key or file:line — never another exception, and in bounded time and memory.

Each property runs ``max_examples`` generated cases (see the settings on each test); all of them together
cost a few seconds of the fast suite.
"""

from __future__ import annotations

import codecs
import gzip
import math
import time
import tracemalloc

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peftkit.errors import RecipeError
from peftkit.kit.tiny import tiny_recipe
from peftkit.recipe import Recipe, apply_overrides, override_keys, parse_yaml, validate
from peftkit.recipe.yaml import MAX_DEPTH, decode

SECONDS = 10.0  # per case, generous for a busy 2-core machine (typical: under 1 s); unbounded ones took minutes
FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def base(tiny_bert, tiny_data, tmp_path_factory) -> dict:
    """A valid recipe (tiny BERT, tiny data files) as data."""
    return tiny_recipe(tiny_bert, tiny_data, tmp_path_factory.mktemp("fuzz") / "out", max_steps=2)


def outcome(text: str, overrides: list[str] = (), source: str = "fuzz.yaml") -> Recipe | RecipeError:
    """Load ``text`` as a recipe file would be (parse, override, validate); the Recipe or the RecipeError —
    any other exception fails the test. Also checks the time bound and the shape of every problem line."""
    start = time.perf_counter()
    try:
        data = parse_yaml(text, source)
        data = apply_overrides(data, list(overrides))
        result: Recipe | RecipeError = validate(
            data, source=source, text=text, overridden=override_keys(list(overrides))
        )
    except RecipeError as exc:
        result = exc
    assert time.perf_counter() - start < SECONDS
    if isinstance(result, RecipeError):
        assert result.problems
        for line in result.problems:
            assert isinstance(line, str) and line and "\n" not in line, line
            assert len(line) < 1500, line[:300]  # values are cut, never echoed whole
    return result


def problems_of(text: str, overrides: list[str] = ()) -> list[str]:
    result = outcome(text, overrides)
    assert isinstance(result, RecipeError), "accepted"
    return result.problems


def with_section(base: dict, where: str, yaml_value: str) -> str:
    """The base recipe as YAML text with ``yaml_value`` (flow YAML) as ``method.params.x`` or ``plugins_config.x``."""
    rest = {k: v for k, v in base.items() if k != "method"}
    text = yaml.safe_dump(rest, sort_keys=False)
    if where == "method.params":
        return text + f"method:\n  name: lora\n  params: {{x: {yaml_value}}}\n"
    return text + f"method: {{name: lora}}\nplugins_config: {{x: {yaml_value}}}\n"


# ------------------------------------------------------------------------------------------- 22.1 aliases


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depth=st.integers(1, 12), width=st.integers(2, 12), where=st.sampled_from(["plugins_config", "method.params"]))
def test_alias_bombs_are_refused_in_bounded_time_and_memory(base, depth, width, where):
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, depth + 1)]
    text = with_section(base, where, "{" + ", ".join(lines) + "}")
    tracemalloc.start()
    try:
        ps = problems_of(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, peak
    if width ** (depth + 1) > 100_000:
        assert any("expands to more than 100,000 values" in p for p in ps), ps


def _wrap(inner: str, shape: list[str]) -> str:
    for kind in shape:
        inner = f"[x, {inner}]" if kind == "list" else f"{{k: {inner}}}"
    return inner


@FAST
@given(shape=st.lists(st.sampled_from(["list", "map"]), max_size=6), kind=st.sampled_from(["list", "map"]))
def test_recursive_aliases_are_refused_never_walked(base, shape, kind):
    inner = _wrap("*loop", shape)
    value = f"&loop [1, {inner}]" if kind == "list" else f"&loop {{a: {inner}}}"
    (p,) = problems_of(with_section(base, "plugins_config", value))
    assert "fuzz.yaml:" in p and "alias *loop is used inside its own anchor &loop" in p, p


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depth=st.integers(MAX_DEPTH - 5, 1200), kinds=st.lists(st.sampled_from("[{"), min_size=1, max_size=3))
def test_deep_nesting_is_a_clear_error(base, depth, kinds):
    opening = "".join(kinds[i % len(kinds)] for i in range(depth))
    closing = "".join("]" if c == "[" else "}" for c in reversed(opening))
    value = opening.replace("{", "{k: ") + "1" + closing
    ps = problems_of(with_section(base, "plugins_config", value))
    if depth + 2 > MAX_DEPTH:
        assert any(f"nested more than {MAX_DEPTH} levels deep" in p for p in ps), ps


# ----------------------------------------------------------------------------------- 22.2 bytes and values


@settings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=300))
def test_random_bytes_are_text_or_one_clear_line(raw):
    try:
        text = decode(raw, "fuzz.yaml")
    except RecipeError as exc:
        (p,) = exc.problems
        assert p.startswith("fuzz.yaml") and ("UTF-8" in p or "gunzip" in p), p
        return
    outcome(text)


@FAST
@given(
    encoding=st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252", "gb18030", "gzip"]),
    comment=st.text(alphabet="éüñ中文ß€", min_size=1, max_size=5),
)
def test_recipes_in_other_encodings_say_save_as_utf8(base, encoding, comment):
    text = f"# {comment}\n" + yaml.safe_dump(base, sort_keys=False)
    if encoding == "gzip":
        raw = gzip.compress(text.encode())
    else:
        try:
            raw = codecs.encode(text, encoding)
        except UnicodeEncodeError:
            return  # latin-1 cannot hold 中文: nothing to test
    if raw == text.encode("utf-8"):
        return
    try:
        decoded = decode(raw, "fuzz.yaml")
    except RecipeError as exc:
        (p,) = exc.problems
        assert "save" in p and "UTF-8" in p or "gunzip" in p, p
        return
    outcome(decoded)  # some byte strings happen to be UTF-8 (gb18030 of ASCII-only parts): then a normal check


_NOT_STRINGS = st.one_of(
    st.integers(-(10**30), 10**30),
    st.floats(),
    st.booleans(),
    st.none(),
    st.lists(st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2)), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
_NAME_FIELDS = [
    ("method", "name"),
    ("task", "name"),
    ("model", "source"),
    ("eval", "metric"),
    ("output_dir",),
    ("plugins",),
    ("plugins_config",),
    ("model", "revision"),
]


@settings(max_examples=100, deadline=None)
@given(field=st.sampled_from(_NAME_FIELDS), value=_NOT_STRINGS, in_list=st.booleans())
def test_non_strings_where_names_belong_are_recipe_errors(base, field, value, in_list):
    data = yaml.safe_load(yaml.safe_dump(base))
    node = data
    for part in field[:-1]:
        node = node.setdefault(part, {})
    node[field[-1]] = [value, "lora"] if in_list else value
    try:
        validate(data)
    except RecipeError as exc:
        assert all("\n" not in p for p in exc.problems)


_MALFORMED = st.one_of(
    st.sampled_from(["0x_", "0b", "0b_", "0o", "-0x", "0x", "1__0", "1:2:3", "2024-13-45", "2024-02-30", "+.inf"]),
    st.sampled_from(["1e309", "-1e309", ".inf", "-.inf", ".nan", ".NaN", "1_000_", "0b12", "0x1g", "0o9"]),
    st.integers(4000, 8000).map(lambda n: "9" * n),
    st.integers(20, 4000).map(lambda n: "1" + "0" * n),
    st.from_regex(r"\A[-+]?(0x|0b|0o)?[0-9_a-f]{0,6}(\.[0-9_]*)?([eE][-+]?[0-9]{1,4})?\Z"),
)
_NUMERIC_KEYS = ["train.seed", "train.lr", "train.epochs", "train.batch_size", "eval.batch_size", "data.max_length"]


@settings(max_examples=100, deadline=None)
@given(
    literal=_MALFORMED,
    key=st.sampled_from([*_NUMERIC_KEYS, "method.params.r", "method.params.alpha"]),
    in_file=st.booleans(),
)
def test_huge_integers_and_malformed_literals_never_escape(base, literal, key, in_file):
    if in_file:  # the literal written in the file, where PyYAML's int() and float() meet it
        data = yaml.safe_load(yaml.safe_dump(base))
        section, name = key.rsplit(".", 1)
        node = data
        for part in section.split("."):
            node = node.setdefault(part, {})
        node[name] = "__LITERAL__"
        result = outcome(yaml.safe_dump(data, sort_keys=False).replace("__LITERAL__", literal))
    else:
        result = outcome(yaml.safe_dump(base, sort_keys=False), [f"{key}={literal}"])
    if isinstance(result, Recipe):  # a literal that is a fine number (``1_0`` is 10 in YAML 1.1): finite then
        value = result.model_dump()
        for part in key.split("."):
            value = value[part]
        assert value is None or (isinstance(value, (int, float)) and math.isfinite(value))  # `lr:` is null
        assert value is None or isinstance(value, float) or abs(value) < 2**63


# ------------------------------------------------------------------------------ 22.3 finite numbers everywhere


def _numeric_fields(model) -> list[str]:
    return [
        name
        for name, f in model.model_fields.items()
        if any(t in str(f.annotation) for t in ("int", "float")) and "bool" != str(f.annotation)
    ]


def _numeric_keys() -> list[str]:
    from peftkit.plugin.registry import get_registry
    from peftkit.recipe import DataConfig, EvalConfig, TrainConfig

    keys = [
        f"{s}.{n}"
        for s, m in (("train", TrainConfig), ("eval", EvalConfig), ("data", DataConfig))
        for n in _numeric_fields(m)
    ]
    for name, method in sorted(get_registry().methods.items()):
        keys += [f"method.params.{n}@{name}" for n in _numeric_fields(method.params_model)]
    return keys


@settings(max_examples=200, deadline=None)
@given(key=st.sampled_from(_numeric_keys()), value=st.sampled_from([".inf", "-.inf", ".nan", "1e309", "-1e400"]))
def test_no_numeric_field_takes_an_infinity_or_nan(base, key, value):
    key, _, method = key.partition("@")
    overrides = [f"method.name={method}", "method.params={}"] if method else []
    if key == "train.adam_betas":
        value = f"[{value}, 0.9]"
    ps = problems_of(yaml.safe_dump(base, sort_keys=False), [*overrides, f"{key}={value}"])
    said = ("finite", "got inf", "got -inf", "got nan")  # `every` says "'epoch' or a number of steps, got inf"
    assert any(p.startswith(key) and any(s in p for s in said) and "command-line override" in p for p in ps), ps


# -------------------------------------------------------------------------------------- 22.6 junk overrides


@settings(max_examples=100, deadline=None)
@given(
    overrides=st.lists(
        st.one_of(
            st.text(max_size=30),
            st.tuples(
                st.sampled_from(_NUMERIC_KEYS + ["method.params", "x", "", "a..b", "train.lr.x"]), st.text(max_size=30)
            ).map("=".join),
            st.sampled_from(["x=!!python/object/apply:os.system [echo]", "y=*nope", "z=&a [*a]", "train=[1]"]),
        ),
        max_size=4,
    )
)
def test_junk_overrides_are_blamed_on_the_command_line(base, overrides):
    result = outcome(yaml.safe_dump(base, sort_keys=False), overrides)
    if isinstance(result, RecipeError):
        assert all("override" in p or "fuzz.yaml" not in p for p in result.problems), result.problems


def test_a_tag_in_an_override_is_refused_like_one_in_a_file(base):
    (p,) = problems_of(yaml.safe_dump(base), ["x=!!python/object/apply:os.system ['touch /tmp/pwned']"])
    assert "is not allowed: a recipe is data and cannot run code" in p and p.startswith("override ")
