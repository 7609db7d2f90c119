"""Per-box secret keys in files only Linli's user can read (the PIN key, the plate key).

Created on first start with 32 random bytes, mode 0600, never replaced: a lost key makes every
keyed hash made with it useless, so a damaged one is an error that says to restore it.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

KEY_BYTES = 32
MIN_KEY_BYTES = 16


def load_or_create_key(path: Path, what: str, error: type[Exception]) -> bytes:
    """Read the key at `path`, creating it on first start. `what` names it in `error`'s messages
    (e.g. "PIN key"); the key itself never appears in one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_mode & 0o077:
            raise error(
                f"{what} {path} is accessible by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"run: chmod 600 {path}"
            )
        key = f.read()
    if len(key) < MIN_KEY_BYTES:
        raise error(f"{what} {path} is too short; restore it from a backup")
    return key
