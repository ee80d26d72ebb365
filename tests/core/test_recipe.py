"""Recipe loading and validation: every problem at once, with dotted paths, lines and hints."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from peftkit.errors import RecipeError
from peftkit.kit.tiny import tiny_recipe
from peftkit.recipe import apply_overrides, json_schema, load_recipe, validate


@pytest.fixture
def recipe_file(tmp_path, tiny_bert, tiny_data):
    def write(mutate=None, text=None):
        data = tiny_recipe(tiny_bert, tiny_data, tmp_path / "out")
        if mutate:
            mutate(data)
        path = tmp_path / "recipe.yaml"
        path.write_text(text if text is not None else yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def problems(path, overrides=()):
    with pytest.raises(RecipeError) as info:
        load_recipe(path, list(overrides))
    return info.value.problems


def test_valid_recipe_loads_with_defaults(recipe_file):
    r = load_recipe(recipe_file())
    assert r.method.name == "lora" and r.train.scheduler == "linear" and r.eval.every == "epoch"


def test_yaml_syntax_error_names_line(recipe_file):
    path = recipe_file(text="model:\n  source: x\ntrain: [1, 2\n")
    (p,) = problems(path)
    assert p.startswith(f"{path}:4:") and "YAML syntax error" in p, p


def test_unknown_key_suggests_nearest(recipe_file):
    def typo(d):
        d["trian"] = d.pop("train")

    ps = problems(recipe_file(typo))
    assert any(p.startswith("trian: unknown key — did you mean 'train'?") for p in ps), ps


def test_nested_unknown_key_and_line_number(recipe_file):
    def typo(d):
        d["train"]["batchsize"] = 4

    path = recipe_file(typo)
    ps = problems(path)
    hit = [p for p in ps if p.startswith("train.batchsize")]
    assert hit and "did you mean 'batch_size'" in hit[0] and f"{path}:" in hit[0]


def test_range_error_has_dotted_path_and_value(recipe_file):
    ps = problems(recipe_file(), ["train.lr=-1"])
    assert ps == ["train.lr: must be greater than 0, got -1"] or any(
        "train.lr: must be greater than 0, got -1" in p for p in ps
    )


def test_all_problems_reported_at_once(recipe_file):
    def many(d):
        d["train"]["lr"] = -1
        d["train"]["epochs"] = "three"
        d["method"]["params"] = {"r": 0, "alpah": 2}
        d["task"]["name"] = "text-clasification"

    ps = problems(recipe_file(many))
    joined = "\n".join(ps)
    assert "train.lr" in joined and "train.epochs" in joined
    assert "method.params.r: must be greater than 0, got 0" in joined
    assert "method.params.alpah: unknown key — did you mean 'alpha'?" in joined
    assert "task.name: unknown task 'text-clasification' — did you mean 'text-classification'?" in joined
    assert len(ps) == 5, ps


def test_unknown_method_lists_available(recipe_file):
    ps = problems(recipe_file(), ["method.name=nope"])
    assert "unknown method 'nope'" in ps[0] and "available:" in ps[0] and "lora" in ps[0]


def test_unknown_source_scheme(recipe_file):
    ps = problems(recipe_file(), ["model.source=zzz:thing"])
    assert ps[0].startswith("model.source: unknown model source scheme 'zzz'") and "local" in ps[0]


def test_missing_local_model_folder(recipe_file, tmp_path):
    ps = problems(recipe_file(), [f"model.source=local:{tmp_path}/nope"])
    assert "does not exist" in ps[0]


def test_overrides_are_typed():
    d = apply_overrides({"train": {}}, ["train.lr=3e-4", "train.epochs=2", "eval.every=50", "x.y.z=true"])
    assert (
        d["train"]["lr"] == 3e-4 and d["train"]["epochs"] == 2 and d["eval"]["every"] == 50 and d["x"]["y"]["z"] is True
    )


def test_mixed_precision_no_survives_yaml(recipe_file):
    path = recipe_file()  # YAML 1.1 reads a bare `no` as false, in the file and on the command line
    assert load_recipe(path, ["train.mixed_precision=no"]).train.mixed_precision == "no"
    path.write_text(path.read_text().replace("train:\n", "train:\n  mixed_precision: no\n"))
    assert "mixed_precision: no" in path.read_text() and load_recipe(path).train.mixed_precision == "no"
    assert problems(path, ["train.mixed_precision=yes"])[0].startswith("train.mixed_precision")


def test_bad_override_syntax():
    with pytest.raises(RecipeError, match="expected key=value"):
        apply_overrides({}, ["train.lr"])


def test_recipe_is_data_not_code(recipe_file):
    path = recipe_file(text="!!python/object/apply:os.system ['echo pwned']\n")
    (p,) = problems(path)
    assert "YAML syntax error" in p  # safe_load refuses python tags


def test_plugins_allow_list(recipe_file):
    ps = problems(recipe_file(), ["plugins=[textcls, sources]"])
    assert "method 'lora' comes from plugin 'lora', which is not in `plugins:`" in ps[0]
    (p,) = problems(recipe_file(), ["plugins=[lora, textcls, sources, lorra]"])
    assert p.startswith("plugins.3: unknown plugin 'lorra' — did you mean 'lora'? (installed: ")
    (p,) = problems(recipe_file(), ["plugins=[lora, textcls]"])  # local: comes from the `sources` plugin
    assert p.startswith("model.source: model source 'local:' comes from plugin 'sources', which is not in `plugins:`")
    assert load_recipe(recipe_file(), ["plugins=[lora, textcls, sources]"]).plugins == ["lora", "textcls", "sources"]


def test_plugins_allow_list_limits_hooks_too(tmp_path, tiny_bert, tiny_data):
    """Only listed plugins' hooks run: without `tensorboard` in the list a run writes no TensorBoard events."""
    from peftkit.recipe import validate
    from peftkit.train.loop import run

    recipe = tiny_recipe(tiny_bert, tiny_data, tmp_path / "out", max_steps=2, batch_size=16)
    recipe["plugins"] = ["lora", "textcls", "sources"]
    run(validate(recipe))
    assert (tmp_path / "out" / "metrics.json").is_file() and not (tmp_path / "out" / "tensorboard").exists()


def test_disabled_plugin_is_named_not_taken_for_a_typo(recipe_file, monkeypatch):
    monkeypatch.setenv("PEFTKIT_DISABLE_PLUGINS", "lora")
    (p,) = problems(recipe_file())
    assert p.startswith("method.name: unknown method 'lora'") and "disabled by PEFTKIT_DISABLE_PLUGINS: lora" in p


def test_errors_in_overrides_point_at_the_command_line_not_the_file(recipe_file):
    ps = problems(recipe_file(), ["train.lr=-1", "train.epoch=2"])
    assert ps == [
        "train.lr: must be greater than 0, got -1 (command-line override train.lr=-1)",
        "train.epoch: unknown key — did you mean 'epochs'? (command-line override train.epoch=2)",
    ]
    (p,) = problems(recipe_file(lambda d: d["train"].update(lr=-1)))
    assert p.startswith("train.lr: must be greater than 0, got -1 (") and p.endswith(
        "recipe.yaml:22)"
    )  # the file's lr line


def test_duplicate_keys_are_refused_with_both_lines(recipe_file):
    (p,) = problems(recipe_file(text="train:\n  lr: 5.0e-4\n  epochs: 3\noutput_dir: x\ntrain:\n  batch_size: 8\n"))
    assert "recipe.yaml:5:1" in p and "duplicate key 'train' (first on line 1)" in p


def test_exponent_floats_read_as_numbers_as_in_yaml_1_2(recipe_file):
    from peftkit.recipe import parse_yaml

    assert parse_yaml("a: 1e-3\nb: 2E+2\nc: 3.0e-4\nd: 12\ne: 1e\nf: x1e3\n") == {
        "a": 0.001,
        "b": 200.0,
        "c": 0.0003,
        "d": 12,
        "e": "1e",
        "f": "x1e3",
    }


@pytest.mark.parametrize(
    "override, message",
    [
        ("eval.every=sometimes", "eval.every: must be 'epoch' or a number of steps > 0, got 'sometimes'"),
        ("eval.every=1.5", "eval.every: must be 'epoch' or a number of steps > 0, got 1.5"),
        ("model.quantization=4", "model.quantization: must be a mapping such as {bits: 4} (or null for none), got 4"),
        (
            "train.adam_betas=[0.9]",
            "train.adam_betas: must be two numbers [beta1, beta2], e.g. [0.9, 0.999], got [0.9]",
        ),
        ("output_dir=", "output_dir: must name a folder, e.g. runs/my-run"),
    ],
)
def test_one_plain_message_per_bad_value(recipe_file, override, message):
    (p,) = problems(recipe_file(), [override])
    assert p.startswith(message)


def test_numeric_output_dir_is_a_folder_name(recipe_file):
    assert load_recipe(recipe_file(), ["output_dir=2024"]).output_dir == "2024"


def test_a_folder_is_not_a_recipe(tmp_path):
    (p,) = problems(tmp_path)
    assert p == f"{tmp_path}: is a folder, not a recipe file"


def test_json_schema_covers_plugin_params():
    schema = json_schema()
    assert "lora" in schema["$defs"]["MethodConfig"]["properties"]["name"]["enum"]
    lora = schema["$defs"]["method_lora"]
    assert lora["properties"]["r"]["default"] == 8 and lora["additionalProperties"] is False
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(schema)


def test_json_schema_accepts_valid_and_rejects_bad_params(tiny_bert, tiny_data, tmp_path):
    import jsonschema

    v = jsonschema.Draft202012Validator(json_schema())
    good = tiny_recipe(tiny_bert, tiny_data, tmp_path)
    assert not list(v.iter_errors(good))
    good["method"]["params"] = {"r": "big"}
    assert any("'big'" in e.message for e in v.iter_errors(good))


def test_cli_validate_exit_code_and_no_traceback(recipe_file):
    path = recipe_file()
    ok = subprocess.run([sys.executable, "-m", "peftkit", "validate", str(path)], capture_output=True, text=True)
    assert ok.returncode == 0 and "OK" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "peftkit", "validate", str(path), "train.lr=-1", "trian.x=1"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert (
        "Traceback" not in bad.stderr
        and "train.lr: must be greater than 0" in bad.stderr
        and "2 problems" in bad.stderr
    )


def test_schema_cli_prints_json():
    out = subprocess.run([sys.executable, "-m", "peftkit", "schema"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["title"] == "peftkit recipe"


def test_validate_dict_directly(tiny_bert, tiny_data, tmp_path):
    r = validate(tiny_recipe(tiny_bert, tiny_data, tmp_path))
    assert r.output_dir == str(tmp_path)


def test_plugins_config_sections_are_checked_by_their_plugin(recipe_file):
    def sections(d):
        d["plugins_config"] = {"early_stoping": {"patience": 2}, "early_stopping": {"patience": 0, "pateince": 1}}

    path = recipe_file(sections)
    ps = problems(path)
    unknown = [p for p in ps if p.startswith("plugins_config.early_stoping")]
    assert unknown and "did you mean 'early_stopping'" in unknown[0] and "mlflow" in unknown[0], ps
    assert any(p.startswith("plugins_config.early_stopping.patience") and "greater than or equal to 1" in p for p in ps)
    typo = [p for p in ps if p.startswith("plugins_config.early_stopping.pateince")]
    assert typo and "did you mean 'patience'" in typo[0] and f"{path}:" in typo[0], ps


def test_plugins_config_resolves_defaults_and_shows_in_the_schema(recipe_file):
    from peftkit.plugin.registry import get_registry
    from peftkit.recipe import resolved_dict

    recipe = load_recipe(recipe_file(lambda d: d.update(plugins_config={"early_stopping": {"patience": 2}})))
    resolved = resolved_dict(recipe, get_registry())
    assert resolved["plugins_config"] == {"early_stopping": {"patience": 2, "min_delta": 0.0, "metric": None}}
    section = json_schema()["properties"]["plugins_config"]
    assert {"early_stopping", "mlflow", "wandb"} <= set(section["properties"])
    assert section["properties"]["early_stopping"]["properties"]["patience"]["minimum"] == 1


def test_a_plugins_config_section_outside_the_allow_list_is_refused(recipe_file):
    def allow(d):
        d["plugins"] = ["lora", "textcls"]
        d["plugins_config"] = {"mlflow": {}}

    ps = problems(recipe_file(allow))
    assert any(p.startswith("plugins_config.mlflow") and "not in `plugins:`" in p for p in ps), ps


# ------------------------------------------------------------------ issue 22: each class of bad recipe, once


def _bomb(levels: int, width: int = 9) -> str:
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "{" + ", ".join(lines) + "}"


def test_a_nine_level_alias_bomb_is_refused_at_once(recipe_file):
    import time

    path = recipe_file()
    path.write_text(path.read_text().replace("  params: {}\n", f"  params: {{bomb: {_bomb(9)}}}\n", 1))
    start = time.perf_counter()
    (p,) = problems(path)
    assert time.perf_counter() - start < 2  # was: 2 GB and 25 s, then out of memory
    assert p.startswith(f"{path}:") and "expands to more than 100,000 values" in p, p


def test_recursive_alias_and_deep_nesting_are_refused(recipe_file):
    path = recipe_file()
    text = path.read_text()
    path.write_text(text + "plugins_config: {x: {loop: &l [1, *l]}}\n")
    (p,) = problems(path)  # was: RecursionError in the line index
    assert "alias *l is used inside its own anchor &l" in p and f"{path}:" in p
    path.write_text(text + "plugins_config: {x: " + "[" * 600 + "]" * 600 + "}\n")
    (p,) = problems(path)  # was: RecursionError in PyYAML's composer
    assert "nested more than 100 levels deep" in p


def test_ordinary_aliases_and_merge_keys_load(recipe_file):
    from peftkit.recipe import parse_yaml

    path = recipe_file()
    path.write_text(
        path.read_text().replace("train:\n", "train:\n  <<: [{grad_accum: 2}, {scheduler: cosine, seed: 5}]\n")
    )
    r = load_recipe(path)  # was: "could not determine a constructor for the tag 'tag:yaml.org,2002:merge'"
    assert (r.train.grad_accum, r.train.scheduler, r.train.seed) == (2, "cosine", 0)  # the mapping's own seed wins
    assert parse_yaml("d: &d {a: 1, b: 2}\nx:\n  <<: *d\n  b: 3\ny: *d\n") == {
        "d": {"a": 1, "b": 2},
        "x": {"a": 1, "b": 3},
        "y": {"a": 1, "b": 2},
    }


def test_literals_python_cannot_read_name_their_line(recipe_file):
    path = recipe_file()
    text = path.read_text()
    for literal, said in (("0x_", "'0x_' is not a valid int"), ("9" * 5000, "an integer of 5,000 digits")):
        path.write_text(text.replace("seed: 0", f"seed: {literal}"))
        (p,) = problems(path)  # was: ValueError traceback
        assert p.startswith(f"{path}:") and said in p and "quote it" in p, p
        assert len(p) < 400  # the 5,000 digits are cut


def test_yaml_11_booleans_as_keys_and_duplicate_anchors_get_lines(recipe_file):
    path = recipe_file()
    text = path.read_text()
    path.write_text(text + "yes: 1\n")
    (p,) = problems(path)  # was: "1: keys should be strings, got True", no line
    n = text.count("\n") + 1
    assert p.startswith(f"{path}:{n}:1: key 'yes' reads as True"), p
    path.write_text(text + "plugins_config:\n  a: &x {}\n  b: &x {}\n")
    (p,) = problems(path)  # was: "YAML syntax error: second occurrence"
    assert p.startswith(f"{path}:{n + 2}:") and f"anchor &x is defined twice (first on line {n + 1})" in p, p


def test_infinities_and_out_of_range_numbers_are_refused_at_validate_time(recipe_file):
    keys = ["train.lr=.inf", "train.epochs=.inf", "train.adam_eps=1e309", "train.weight_decay=.nan"]
    keys += ["train.warmup=.inf", "method.params.alpha=.inf", "train.seed=4294967296", "train.max_steps=1e400"]
    ps = problems(recipe_file(), keys)  # were all accepted; one run ended "successfully" with a NaN loss
    assert sorted(p.split(":")[0] for p in ps) == sorted(k.split("=")[0] for k in keys), ps
    assert all("command-line override" in p for p in ps)
    assert "train.seed: must be less than or equal to 4294967295, got 4294967296" in "\n".join(ps)


def test_empty_target_modules_and_ia3_feedforward_outside_targets_are_refused(recipe_file):
    (p,) = problems(recipe_file(), ["method.params.target_modules=[]"])
    assert p.startswith("method.params.target_modules: must name at least one module"), p
    (p,) = problems(
        recipe_file(), ["method.name=ia3", "method.params={target_modules: [key], feedforward_modules: [output.dense]}"]
    )
    assert "feedforward_modules ['output.dense'] are not among target_modules ['key']" in p, p


def test_output_dir_that_cannot_be_a_run_folder(recipe_file, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    (p,) = problems(recipe_file(), [f"output_dir={blocker}"])
    assert p.startswith("output_dir: is an existing file, so it cannot be a run folder"), p
    (p,) = problems(recipe_file(), [f"output_dir={blocker}/run"])
    assert p.startswith(f"output_dir: is under {blocker}, which is a file"), p
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if os.geteuid() != 0:  # root may write anywhere
        (p,) = problems(recipe_file(), [f"output_dir={locked}/run"])
        assert p.startswith(f"output_dir: would be created in {locked}, a folder this user may not write to"), p
    if os.statvfs("/proc/sys").f_flag & os.ST_RDONLY:  # as in most containers
        (p,) = problems(recipe_file(), ["output_dir=/proc/sys/x/y"])
        assert p.startswith("output_dir: is on a read-only file system (/proc/sys)"), p
    load_recipe(recipe_file(), [f"output_dir={tmp_path}/new/run"])  # a folder that can be made is fine


def test_messages_cut_long_values_and_name_the_users_key(recipe_file, tiny_bert, tiny_data, tmp_path):
    r = tiny_recipe(tiny_bert, tiny_data, tmp_path / "out")
    r["method"]["name"] = "x" * 3_000_000
    with pytest.raises(RecipeError) as info:
        validate(r)
    (p,) = info.value.problems
    assert p.startswith("method.name: unknown method 'xxxx") and len(p) < 1000, len(p)
    (p,) = problems(recipe_file(), ["method.params.target_modules=[1]"])
    assert p.startswith("method.params.target_modules.0: input should be a valid string"), p  # not list[str].0


def test_an_override_that_creates_a_section_is_blamed_for_its_problems(recipe_file):
    (p,) = problems(recipe_file(), ["model.quantization.type=fp4"])
    assert p == "model.quantization.bits: required key is missing (command-line override model.quantization.type=fp4)"


def test_a_tag_in_an_override_is_refused_and_runs_nothing(recipe_file, tmp_path):
    marker = tmp_path / "pwned"
    (p,) = problems(recipe_file(), [f"output_dir=!!python/object/apply:os.system ['touch {marker}']"])
    assert "is not allowed: a recipe is data and cannot run code" in p and p.startswith("override "), p
    assert not marker.exists()  # was: taken as the string "!!python/..."
