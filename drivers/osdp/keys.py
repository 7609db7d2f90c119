"""Secure Channel Base Keys (SCBK), one per reader, kept in a file only the daemon's user can read.

The file is JSON: `{"version": 1, "keys": {"<reader id>": "<32 hex digits>"}}`. It is refused when
group or others have any access to it (like ssh does with private keys), and it is written
atomically with mode 0600. Keys never appear in reprs, exceptions or logs: messages name the
reader and the file, never the key.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path

KEY_BYTES = 16


class KeyFileError(Exception):
    """The key file is unsafe or malformed; the message says which and how to fix it."""


class KeyStore:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._keys: dict[str, bytes] = {}
        if self.path.exists():
            self._load()

    def __repr__(self) -> str:
        return f"KeyStore({str(self.path)!r}, readers={sorted(self._keys)})"

    def _load(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise KeyFileError(f"cannot open key file {self.path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            # fstat on the open file, not stat on the path: nothing can swap the file in between.
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise KeyFileError(f"key file {self.path} is not a regular file")
            if st.st_mode & 0o077:
                raise KeyFileError(
                    f"key file {self.path} is accessible by group or others "
                    f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {self.path}"
                )
            if st.st_uid != os.geteuid():
                raise KeyFileError(f"key file {self.path} is owned by uid {st.st_uid}, not by this user")
            raw = f.read()
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            # The parser's message may quote the file's content: keep only where it failed.
            where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise KeyFileError(f"key file {self.path} is not valid JSON{where}") from None
        keys = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(keys, dict):
            raise KeyFileError(f'key file {self.path} has no "keys" object')
        for reader, text in keys.items():
            self._keys[str(reader)] = _parse_key(text, reader, self.path)

    def get(self, reader: str) -> bytes | None:
        return self._keys.get(reader)

    def __contains__(self, reader: object) -> bool:
        return reader in self._keys

    def set(self, reader: str, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise KeyFileError(f"the key for reader {reader!r} must be {KEY_BYTES} bytes")
        self._keys[reader] = bytes(key)
        self._save()

    def generate(self, reader: str) -> None:
        """Give `reader` a fresh random key (for commissioning a reader in install mode)."""
        self.set(reader, secrets.token_bytes(KEY_BYTES))

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        doc = {"version": 1, "keys": {r: k.hex() for r, k in sorted(self._keys.items())}}
        # O_EXCL + 0600 at creation: the key is never readable by others, not even for a moment.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _parse_key(text: object, reader: object, path: Path) -> bytes:
    try:
        key = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"key file {path}: the key for reader {reader!r} is not {KEY_BYTES * 2} hex digits")
    return key
