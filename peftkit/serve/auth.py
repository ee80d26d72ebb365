"""API keys: stored as sha256 hashes (a file or an environment variable), each allowed a set of models,
each with its own token-bucket rate limit. The file is re-read when it changes, so keys are added,
rotated and revoked without a restart. Keys themselves are never stored or logged; logs name the key.

Keys file (JSON)::

    {"keys": [{"name": "crm-bot", "sha256": "<hex of sha256(key)>", "models": ["intent"], "rate": 20, "burst": 40}]}

``models`` may hold ``"*"`` (every model). The same JSON in ``PEFTKIT_API_KEYS`` works without a file.

With ``--workers N`` the buckets live in a folder the workers share (:class:`SharedBuckets`: one 16-byte file a
key, read and updated under an exclusive ``flock``), so a key's rate is its rate across the whole service.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftkit.errors import PeftkitError

log = logging.getLogger("peftkit.serve")
ENV = "PEFTKIT_API_KEYS"


class AuthError(Exception):
    """A request is refused: ``status`` 401 (no or unknown key), 403 (model not allowed), 429 (rate)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass
class KeyEntry:
    name: str
    models: frozenset[str]
    rate: float
    burst: int

    def allows(self, model: str) -> bool:
        return "*" in self.models or model in self.models


@dataclass
class _Bucket:
    tokens: float
    stamp: float = field(default_factory=time.monotonic)


def parse_keys(text: str, where: str) -> dict[str, KeyEntry]:
    """``{sha256: KeyEntry}`` from the keys JSON; PeftkitError naming the entry and field otherwise."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PeftkitError(f'{where}: not JSON ({exc}); expected {{"keys": [{{"name", "sha256", ...}}]}}') from None
    items = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise PeftkitError(f'{where}: expected an object with a "keys" list')
    out: dict[str, KeyEntry] = {}
    for i, item in enumerate(items):
        digest = item.get("sha256") if isinstance(item, dict) else None
        if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
            raise PeftkitError(f"{where}: keys[{i}].sha256 must be 64 hex digits (sha256 of the key)")
        models = item.get("models", ["*"])
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise PeftkitError(f'{where}: keys[{i}].models must be a list of model names (or ["*"])')
        rate, burst = item.get("rate", 20.0), item.get("burst", 40)
        if not isinstance(rate, (int, float)) or rate <= 0 or not isinstance(burst, int) or burst < 1:
            raise PeftkitError(f"{where}: keys[{i}]: rate must be > 0 and burst a whole number >= 1")
        out[digest.lower()] = KeyEntry(str(item.get("name", f"key{i}")), frozenset(models), float(rate), burst)
    return out


class LocalBuckets:
    """Token buckets in this process's memory (one worker)."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}

    def take(self, entry: KeyEntry) -> float:
        """Take one token from ``entry``'s bucket; 0.0 when taken, else the seconds until one is there."""
        now = time.monotonic()
        b = self._buckets.setdefault(entry.name, _Bucket(float(entry.burst), now))
        b.tokens, b.stamp, wait = take_token(b.tokens, b.stamp, now, entry)
        return wait


class SharedBuckets:
    """Token buckets shared by the worker processes of one service: a file per key (its name hashed) in
    ``folder`` holding the tokens left and when they were counted (``time.monotonic``, one clock for the whole
    machine on Linux), read and rewritten under an exclusive ``flock``, so concurrent workers take turns."""

    RECORD = struct.Struct("<dd")

    def __init__(self, folder: str | Path) -> None:
        import fcntl  # POSIX; serve() keeps per-worker buckets where it is missing

        self.folder, self._flock = Path(folder), fcntl
        self.folder.mkdir(parents=True, exist_ok=True)

    def take(self, entry: KeyEntry) -> float:
        path = self.folder / hashlib.sha256(entry.name.encode("utf-8")).hexdigest()[:32]
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            self._flock.flock(fd, self._flock.LOCK_EX)
            raw = os.pread(fd, self.RECORD.size, 0)
            now = time.monotonic()
            tokens, stamp = self.RECORD.unpack(raw) if len(raw) == self.RECORD.size else (float(entry.burst), now)
            tokens, stamp, wait = take_token(tokens, stamp, now, entry)
            os.pwrite(fd, self.RECORD.pack(tokens, stamp), 0)
            return wait
        finally:
            os.close(fd)  # closing releases the lock


def take_token(tokens: float, stamp: float, now: float, entry: KeyEntry) -> tuple[float, float, float]:
    """The token bucket's step: refilled at ``rate`` a second since ``stamp`` (up to ``burst``), then one token
    taken if there is one. ``(tokens left, now, 0.0)``, or with no token ``(tokens, now, seconds until one)``."""
    tokens = min(float(entry.burst), tokens + max(now - stamp, 0.0) * entry.rate)
    if tokens < 1:
        return tokens, now, (1 - tokens) / entry.rate
    return tokens - 1, now, 0.0


def buckets(folder: str | None) -> LocalBuckets | SharedBuckets:
    """Shared buckets in ``folder`` (several workers), else this process's own."""
    if folder is None:
        return LocalBuckets()
    try:
        return SharedBuckets(folder)
    except ImportError:
        log.warning("no fcntl on this system: each worker keeps its own rate-limit buckets")
        return LocalBuckets()


class KeyStore:
    """The keys in force; ``check`` authenticates, authorizes and rate-limits one request."""

    def __init__(
        self, path: str | Path | None = None, env_text: str | None = None, *, rate_dir: str | None = None
    ) -> None:
        self.path = Path(path) if path else None
        self.env_text = env_text if env_text is not None else os.environ.get(ENV)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._buckets = buckets(rate_dir)
        self.keys: dict[str, KeyEntry] = {}
        self._load(initial=True)

    @property
    def enabled(self) -> bool:
        return self.path is not None or bool(self.env_text)

    def _load(self, initial: bool = False) -> None:
        keys = parse_keys(self.env_text, ENV) if self.env_text else {}
        if self.path is not None:
            try:
                st = self.path.stat()
                text = self.path.read_text(encoding="utf-8")
            except OSError as exc:
                if initial:
                    raise PeftkitError(
                        f"--keys {self.path}: cannot read it ({exc}); create it with `peftkit api-key`"
                    ) from None
                return  # mid-rotation (file being replaced): keep the keys in force
            self._stamp = (st.st_mtime_ns, st.st_size)
            try:
                keys.update(parse_keys(text, str(self.path)))
            except PeftkitError as exc:
                if initial:
                    raise
                log.error("keys file not reloaded, the previous keys stay in force: %s", exc)
                return
        self.keys = keys
        if not initial:
            log.info("keys file changed: %d keys in force", len(keys))

    def _maybe_reload(self) -> None:
        if self.path is None:
            return
        try:
            st = self.path.stat()
        except OSError:
            return
        if (st.st_mtime_ns, st.st_size) != self._stamp:
            self._load()

    def authenticate(self, key: str | None) -> KeyEntry | None:
        """The key's entry, AuthError 401 for no or an unknown key; ``None`` when no keys are configured (open
        service). Routes call it before they read the body: a caller without a key learns nothing about it."""
        if not self.enabled:
            return None
        with self._lock:
            self._maybe_reload()
            if not key:
                raise AuthError(401, "missing API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key'")
            entry = self.keys.get(hash_key(key))
            if entry is None:
                raise AuthError(401, "unknown API key (revoked, or mistyped)")
            return entry

    def authorize(self, entry: KeyEntry | None, model: str | None) -> None:
        """AuthError 403 when ``entry`` may not use ``model``, 429 over its rate; else the request's token is taken."""
        if entry is None:
            return
        if model is not None and not entry.allows(model):
            raise AuthError(403, f"this API key ({entry.name}) may not use model {model!r}")
        with self._lock:
            self._take(entry)

    def check(self, key: str | None, model: str | None) -> KeyEntry | None:
        """:meth:`authenticate` then :meth:`authorize`: the key's entry; AuthError 401/403/429."""
        entry = self.authenticate(key)
        self.authorize(entry, model)
        return entry

    def _take(self, entry: KeyEntry) -> None:
        """Token bucket: ``rate`` tokens a second up to ``burst``; each request takes one."""
        wait = self._buckets.take(entry)
        if wait:
            raise AuthError(429, f"rate limit of {entry.rate:g} requests/s for key {entry.name} exceeded",
                            retry_after=wait)  # fmt: skip


def add_key(path: Path, name: str, models: list[str], *, rate: float = 20.0, burst: int = 40) -> str:
    """Create a random key, append its hash to ``path`` (atomically), and return the key."""
    from peftkit.run_dir import atomic_write

    data: dict[str, Any] = {"keys": []}
    if path.is_file():
        parse_keys(path.read_text(encoding="utf-8"), str(path))  # refuse to extend a broken file
        data = json.loads(path.read_text(encoding="utf-8"))
    if any(k.get("name") == name for k in data["keys"]):
        raise PeftkitError(f"--name {name!r} already has a key in {path}; remove it there to rotate, or pick a name")
    key = "pk-" + secrets.token_urlsafe(24)
    data["keys"].append(
        {"name": name, "sha256": hash_key(key), "models": models or ["*"], "rate": rate, "burst": burst}
    )
    atomic_write(path, json.dumps(data, indent=2) + "\n")
    return key
