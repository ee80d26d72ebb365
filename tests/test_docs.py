"""The documentation: builds with ``mkdocs build --strict`` offline, documents every hook, command and
recipe key, and the commands and code it shows really run and print what it says.

Runnable blocks are marked in the Markdown with a comment on the line before the fence:

- ``<!-- test: run [cwd=NAME] [setup=A,B] -->`` — run the block. A ``python`` block runs as a script
  in an empty folder. A ``console`` block runs each ``$ command`` with bash; the lines after it are
  its expected output: each must match an output line (``...`` inside a line matches anything; a
  line of just ``...`` skips any number of lines). ``cwd`` is a folder under docs/examples copied
  to a temporary folder (``empty``: an empty one; default: the repository root, read-only use).
- ``<!-- test: validate -->`` — each ``$ peftkit run ARGS`` is checked as ``peftkit validate ARGS``.
- ``<!-- test: skip (reason) -->`` — not run here; the reason says what covers it instead.

Every console block that calls ``peftkit`` must carry one of these marks.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
BIN = Path(sys.executable).parent
FENCE = re.compile(
    r"^(?:<!-- test: (?P<mode>run|validate|skip)(?P<args>[^\n]*?) -->\n)?```(?P<lang>console|python)[^\n]*\n(?P<body>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)


def env(**extra: str) -> dict[str, str]:
    out = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", COLUMNS="100")
    out["PATH"] = f"{BIN}{os.pathsep}{out.get('PATH', '')}"
    out.update(extra)
    return out


def generator():
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "hooks" / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env(NO_MKDOCS_2_WARNING="1"),
        timeout=600,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-4000:]}"
    return out


def page_text(site: Path, page: str) -> str:
    """The visible text of a built page's article, whitespace collapsed."""
    raw = (site / page / "index.html").read_text(encoding="utf-8")
    article = raw[raw.index("<article") : raw.index("</article>")]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", article)).split())


def bare(text: str) -> str:
    """Text without Markdown/RST code marks and whitespace, to compare source help with rendered pages."""
    return re.sub(r"[\s`*]+", "", text)


def squash(text: str) -> str:
    """Drop the spaces that HTML highlighting puts around punctuation, for signature comparison."""
    return re.sub(r"\s*([().\[\],:=>|-])\s*", r"\1", text)


# ------------------------------------------------------------------------------------- the built site


def test_built_site_fetches_nothing_from_the_network(site):
    external = re.compile(r"<(?:link|script|img)[^>]+(?:href|src)=\"(https?:)?//", re.IGNORECASE)
    for page in site.rglob("*.html"):
        hits = external.findall(page.read_text(encoding="utf-8"))
        assert not hits, f"{page.relative_to(site)} loads a resource from the network"


def test_every_hook_is_documented_with_its_exact_signature(site):
    from peftkit.plugin import hookspecs

    text = squash(page_text(site, "hooks"))
    specs = [f for name, f in vars(hookspecs).items() if name.startswith("peftkit_") and callable(f)]
    assert len(specs) >= 10
    for f in specs:
        ann = dict(f.__annotations__)  # strings, exactly as written (the module uses postponed annotations)
        ret = ann.pop("return")
        args = ", ".join(f"{k}: {v}" for k, v in ann.items())
        signature = f"{f.__name__}({args}) -> {ret}"
        assert squash(signature) in text, f"hooks reference lacks `{signature}`"
        first_line = f.__doc__.strip().splitlines()[0]
        assert bare(first_line) in bare(page_text(site, "hooks")), f"hooks reference lacks the docs of {f.__name__}"


def test_every_cli_command_and_option_is_documented(site):
    from peftkit.cli import build_parser

    gen = generator()
    text = page_text(site, "cli")
    subs = gen._subcommands(build_parser())
    assert {"run", "validate", "schema", "plugins", "predict", "new-plugin"} <= set(subs)
    for name, parser in subs.items():
        assert f"peftkit {name}" in text, f"command {name!r} is not in the CLI reference"
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in text, f"option {flag} of `peftkit {name}` is not in the CLI reference"


def test_recipe_reference_lists_every_key_with_its_help(site):
    from peftkit.plugin.registry import get_registry
    from peftkit.recipe import json_schema

    gen = generator()
    schema = json_schema()
    text = page_text(site, "recipes")
    flat = bare(text)
    for section in gen.SECTIONS:
        prop = schema["properties"][section]
        target = gen._deref(prop, schema["$defs"])
        entries = (
            gen.rows(target, schema["$defs"], prefix=f"{section}.")
            if "properties" in target
            else [(section, "", "", prop.get("description", ""))]
        )
        for key, _, _, help_text in entries:
            assert key in text and bare(help_text) in flat, f"recipes reference lacks {key} or its help"
    for name, method in get_registry().methods.items():
        for field in method.params_model.model_fields:
            assert f"method.params.{field}" in text, f"recipes reference lacks method.params.{field} of {name}"


def test_every_builtin_method_has_a_page_with_generated_params(site):
    from peftkit.plugin.registry import get_registry

    reg = get_registry()
    builtin = [n for n, info in reg.plugins.items() if info.distribution == "peftkit"]
    methods = sorted(m for p in builtin for m in reg.plugins[p].methods)
    assert methods, "no built-in methods registered"
    for name in methods:
        page = DOCS / "methods" / f"{name}.md"
        assert page.is_file(), f"method {name!r} has no page docs/methods/{name}.md"
        assert f"<!-- gen:method-params {name} -->" in page.read_text(), f"{page} does not generate its params table"
        assert "## Measured" in page.read_text(), f"{page} has no Measured section"
        for field in reg.methods[name].params_model.model_fields:
            assert f"method.params.{field}" in page_text(site, f"methods/{name}")
        prose, method = page.read_text(), reg.methods[name]  # hand-written claims must agree with the object
        if "Not mergeable" in prose or "- Mergeable" in prose:
            assert ("- Mergeable" in prose) == method.can_merge, f"{page}: what it says about merging is wrong"
        if "Not on quantized bases" in prose:
            assert not method.quantized_bits, f"{page} says it cannot train a quantized base, but it can"


def test_a_page_about_an_unregistered_method_fails_the_build():
    gen = generator()
    with pytest.raises(gen.GenerationError, match="no-such-method"):
        gen.expand("# x\n\n<!-- gen:method-params no-such-method -->\n")
    with pytest.raises(gen.GenerationError, match="unknown docs marker"):
        gen.expand("<!-- gen:recipe-referense -->\n")


# every file the plugin tutorial includes, and the test that runs it
TUTORIAL_FILES = {
    **{
        f"docs/examples/peftkit-hello/{rel}": "tests/test_example_plugin.py (installed in a fresh virtual environment)"
        for rel in (
            "pyproject.toml",
            "peftkit_hello/__init__.py",
            "peftkit_hello/lnfit.py",
            "peftkit_hello/keywords.py",
            "tests/test_hello.py",
            "recipes/keywords-e5.yaml",
        )
    },
    "docs/examples/loha/loha.py": "test_the_tutorials_loha_method_passes_the_conformance_suite",
    "docs/examples/keep-end/keep_end.py": "test_the_tutorials_keep_end_objective_passes_and_keeps_the_end",
}
SNIPPET = re.compile(r'^--8<-- "(?P<path>[^"]+)"$')
CODE_FENCE = re.compile(r"^```(?P<lang>\w*)[^\n]*\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)


def test_the_plugin_tutorial_shows_the_tested_example_files_verbatim():
    page = (DOCS / "writing-a-plugin.md").read_text()
    for rel in TUTORIAL_FILES:
        assert f'--8<-- "{rel}"' in page, f"the tutorial does not include {rel}"
        assert (ROOT / rel).is_file(), f"the tutorial includes {rel}, which is not there"


def test_every_code_block_of_the_plugin_tutorial_is_a_tested_file():
    """Code on the page is included from files a test runs, so what a reader copies is known to work.
    Console blocks are commands (marked and run, see above); ``text`` blocks are folder trees."""
    page = (DOCS / "writing-a-plugin.md").read_text()
    code = [m for m in CODE_FENCE.finditer(page) if m["lang"] not in ("console", "text")]
    assert len(code) >= len(TUTORIAL_FILES)
    for m in code:
        line = page.count("\n", 0, m.start()) + 1
        included = SNIPPET.match(m["body"].strip())
        assert included, f"writing-a-plugin.md:{line}: a {m['lang']} block written inline; move it into a tested file"
        assert included["path"] in TUTORIAL_FILES, f"writing-a-plugin.md:{line}: {included['path']} is run by no test"


def tutorial_loha():
    spec = importlib.util.spec_from_file_location("tutorial_loha", EXAMPLES / "loha" / "loha.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tutorials_keep_end_objective_passes_and_keeps_the_end(tmp_path):
    from transformers import AutoTokenizer

    from peftkit import EncodeContext, Example
    from peftkit.kit.conformance import check_objective
    from peftkit.kit.tiny import make_tiny_bert

    spec = importlib.util.spec_from_file_location("tutorial_keep_end", EXAMPLES / "keep-end" / "keep_end.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    objective = module.peftkit_register_objectives()[0]
    reports = check_objective(objective)  # raises ConformanceError naming what is wrong
    assert set(reports) == {"bert", "llama"}
    tok = AutoTokenizer.from_pretrained(make_tiny_bert(tmp_path / "tiny-bert"))
    row = Example("the food was good the day was fine the movie was very bad", label=0)  # the tiny vocabulary
    ids = objective.encode([row], tok, EncodeContext(max_length=8)).input_ids[0]
    assert tok.decode(ids) == "[CLS] fine the movie was very bad [SEP]"  # its end, not its start
    assert tok.truncation_side == "right"  # the tokenizer is left as it was


def test_the_tutorials_loha_method_passes_the_conformance_suite(tmp_path):
    from peftkit.kit.conformance import check_method

    reports = check_method(tutorial_loha().METHOD, tmp_path)  # tiny BERT, tiny Llama, multiple choice
    assert set(reports) == {"bert", "llama", "bert-multiple-choice"}
    assert all(r.trainable < r.total and r.loss_after < r.loss_before for r in reports.values())


def test_the_tutorials_loha_with_hard_coded_bert_targets_fails_on_the_tiny_llama(tmp_path):
    """Why the tutorial uses resolve_targets: the names it replaced are BERT's, and a Llama has none of them."""
    from peftkit.errors import PeftkitError
    from peftkit.kit.conformance import check_method

    with pytest.raises(PeftkitError, match="matches no layer of this llama model"):
        check_method(tutorial_loha().METHOD, tmp_path, params={"target_modules": ["query", "value"]}, models=("llama",))


def test_the_documented_fields_of_load_runs_setup_exist():
    """docs/api.md's table of what ``load_run`` returns names only real fields, and every public one."""
    import dataclasses

    from peftkit.build.setup import Setup

    page = (DOCS / "api.md").read_text()
    section = page[page.index("## Reload a finished run") : page.index("## Top-level package")]
    named = set(re.findall(r"`setup\.(\w+)", section))
    fields = {f.name for f in dataclasses.fields(Setup)} - {"registry", "use_token_types"}  # internal
    assert named == fields, f"documented but not fields: {named - fields}; undocumented: {fields - named}"


def test_every_recipe_in_recipes_validates():
    from peftkit.recipe import load_recipe

    files = sorted((ROOT / "recipes").rglob("*.yaml"))
    assert files, "recipes/ holds no recipes"
    grids = [p for p in files if "compare" in p.relative_to(ROOT / "recipes").parts]
    # raises RecipeError naming every problem; a grid may start from a run (`run:`) a shipped recipe writes
    made = {str(load_recipe(path).output_dir) for path in files if path not in grids}
    for path in grids:
        from peftkit.compare.grid import expand, load_compare
        from peftkit.errors import RecipeError

        try:
            assert expand(load_compare(path)), f"{path} expands to no cells"
        except RecipeError as exc:
            # the one problem allowed: a `run:` base that a shipped recipe makes and that was not run here
            missing = [re.match(r"model\.source: run folder '([^']+)' does not exist", p) for p in exc.problems]
            if not all(m and m.group(1) in made for m in missing):
                raise


# ------------------------------------------------------------------------------------ runnable blocks


@dataclass
class Block:
    page: str
    line: int
    lang: str
    mode: str | None
    args: str
    body: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def blocks() -> list[Block]:
    out = []
    for page in sorted(DOCS.rglob("*.md")):
        if EXAMPLES in page.parents:
            continue  # not site pages; tests/test_example_plugin.py runs the example package
        text = page.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            out.append(
                Block(
                    str(page.relative_to(DOCS)),
                    text.count("\n", 0, m.start()) + 1,
                    m["lang"],
                    m["mode"],
                    (m["args"] or "").strip(),
                    m["body"],
                )
            )
    return out


def test_every_console_block_that_calls_peftkit_is_marked():
    unmarked = [b.id for b in blocks() if b.lang == "console" and "$ peftkit" in b.body and b.mode is None]
    assert not unmarked, f"mark these blocks with <!-- test: run|validate|skip (why) -->: {unmarked}"


def commands(body: str) -> list[tuple[str, list[str]]]:
    """``(command, expected output lines)`` of a console block."""
    out: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif out:
            out[-1][1].append(line)
    return out


def mismatch(expected: list[str], actual: str) -> str | None:
    """None if ``actual`` shows the expected lines (see the module docstring), else what is missing."""
    lines = [ln.strip() for ln in actual.splitlines()]
    pos, anywhere = 0, True
    for exp in (e.strip() for e in expected if e.strip()):
        if exp == "...":
            anywhere = True
            continue
        pattern = re.compile(".*?".join(re.escape(part) for part in exp.split("...")))
        found = next(
            (
                i
                for i in range(pos, len(lines) if anywhere else min(pos + 1, len(lines)))
                if pattern.fullmatch(lines[i])
            ),
            None,
        )
        if found is None:
            return f"expected {'' if anywhere else 'next '}line not found: {exp}"
        pos, anywhere = found + 1, False
    return None


def setup_tiny_models(cwd: Path) -> dict[str, str]:
    import torch
    from safetensors.torch import load_file

    from peftkit.kit.tiny import make_text_dataset, make_tiny_bert

    make_tiny_bert(cwd / "models" / "my-bert")
    make_text_dataset(cwd / "data")
    old = make_tiny_bert(cwd / "models" / "old-bert")
    torch.save(load_file(str(old / "model.safetensors")), old / "pytorch_model.bin")  # an old pickle-only checkpoint
    (old / "model.safetensors").unlink()
    return {}


def setup_broken_plugin(cwd: Path) -> dict[str, str]:
    """An installed distribution whose peftkit entry point fails to import."""
    extra = cwd / "site-extra"
    info = extra / "broken_example-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-example\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[peftkit]\nbroken-example = broken_example_plugin\n")
    (extra / "broken_example_plugin.py").write_text("import scipy_not_installed\n")
    return {"PYTHONPATH": str(extra)}


SETUPS = {"tiny-models": setup_tiny_models, "broken-plugin": setup_broken_plugin}


def prepare(block: Block, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    opts = dict(kv.split("=", 1) for kv in block.args.split() if "=" in kv)
    cwd = ROOT
    if block.lang == "python" or opts.get("cwd") == "empty":
        cwd = tmp_path
    elif "cwd" in opts:
        cwd = tmp_path / opts["cwd"]
        shutil.copytree(EXAMPLES / opts["cwd"], cwd)
    extra: dict[str, str] = {}
    for name in filter(None, opts.get("setup", "").split(",")):
        extra.update(SETUPS[name](cwd))
    return cwd, extra


def trains(block: Block) -> bool:
    """Blocks that train a model (tiny, but seconds each): run with the integration tests."""
    if block.mode != "run":
        return False
    if block.lang == "python":
        return True
    return any(
        "peftkit run" in cmd and not any(e.startswith("error:") for e in out) for cmd, out in commands(block.body)
    )


RUNNABLE = [
    pytest.param(b, id=b.id, marks=[pytest.mark.integration] if trains(b) else [])
    for b in blocks()
    if b.mode in ("run", "validate")
]


@pytest.mark.parametrize("block", RUNNABLE)
def test_doc_block_runs_as_shown(block: Block, tmp_path: Path):
    cwd, extra = prepare(block, tmp_path)
    if block.lang == "python":
        script = cwd / "block.py"
        script.write_text(block.body)
        proc = subprocess.run(
            [sys.executable, str(script)], cwd=cwd, env=env(**extra), capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, f"{block.id} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        return
    checked = 0
    for command, expected in commands(block.body):
        if block.mode == "validate":
            words = shlex.split(command, comments=True)
            at = next((i for i in range(len(words) - 1) if words[i : i + 2] == ["peftkit", "run"]), None)
            if at is None:
                continue  # e.g. `pip install`: only the peftkit runs are checked
            argv = [a for a in words[at + 2 :] if a not in ("--overwrite", "--resume")]
            command = shlex.join([*words[:at], "peftkit", "validate", *argv])
        checked += 1
        proc = subprocess.run(
            ["bash", "-c", command],
            cwd=cwd,
            env=env(**extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
        )
        wants_error = any(e.startswith("error:") for e in expected)
        assert (proc.returncode != 0) == wants_error, (
            f"{block.id}: `{command}` exited {proc.returncode}:\n{proc.stdout[-3000:]}"
        )
        problem = mismatch(expected, proc.stdout)
        assert problem is None, f"{block.id}: `{command}`: {problem}\nactual output:\n{proc.stdout[-3000:]}"
    assert checked, f"{block.id} is marked runnable but has no command to run"


def test_output_matching_rules():
    out = "noise\nerror: bad\n  - a: x (f.yaml:3)\n  - b: y\ntail"
    assert mismatch(["error: bad", "- a: ... (f.yaml:3)"], out) is None
    assert mismatch(["error: bad", "- b: y"], out) is not None  # not the next line
    assert mismatch(["error: bad", "...", "- b: y"], out) is None
    assert mismatch(["error: worse"], out) is not None
    assert json.loads(json.dumps(commands("$ a\nx\n$ b\n"))) == [["a", ["x"]], ["b", []]]
