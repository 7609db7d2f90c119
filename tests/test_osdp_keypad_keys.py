"""PIN collection from keypad presses, and the SCBK key file's safety rules."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from drivers.osdp import KeyFileError, KeyStore, OsdpDriver, ReaderConfig
from drivers.osdp.keypad import PinCollector

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")


def test_pin_until_enter_with_osdp_and_ascii_key_codes() -> None:
    pins = PinCollector(timeout=5.0)
    assert pins.feed(b"12", 0.0) == []
    assert pins.feed(b"34\x0d", 1.0) == [("pin", "1234")]
    assert pins.feed(b"9876#", 2.0) == [("pin", "9876")]
    assert pins.feed(b"#", 3.0) == []  # Enter alone is nothing


def test_clear_timeout_and_overflow_abandon_the_entry() -> None:
    pins = PinCollector(timeout=5.0, max_digits=4)
    assert pins.feed(b"12\x7f", 0.0) == [("abandoned", "cleared", 2)]
    assert pins.feed(b"55*", 0.0) == [("abandoned", "cleared", 2)]
    pins.feed(b"7", 10.0)
    assert pins.expire(14.9) is None
    assert pins.expire(15.0) == ("abandoned", "timeout", 1)
    assert pins.feed(b"123456#", 20.0) == [("abandoned", "too_long", 5)]
    assert pins.feed(b"42#", 21.0) == [("pin", "42")]


def test_star_first_starts_a_function_entry() -> None:
    pins = PinCollector(timeout=5.0)
    assert pins.feed(b"*11234#", 0.0) == [("function", "11234")]
    assert pins.feed(b"\x7f02468\x0d", 1.0) == [("function", "02468")]  # OSDP key codes too
    assert pins.feed(b"4711#", 2.0) == [("pin", "4711")]  # the next entry is a PIN again
    assert pins.feed(b"**4711#", 3.0) == [("pin", "4711")]  # a second '*' cancels the function
    assert pins.feed(b"*12*", 4.0) == [("abandoned", "cleared", 2)]
    assert pins.feed(b"34#", 4.5) == [("pin", "34")]
    pins.feed(b"*", 10.0)
    assert pins.expire(15.0) is None  # nothing typed after '*': nothing to report, but it ends
    assert pins.feed(b"99#", 16.0) == [("pin", "99")]


def write_keys(path: Path, keys: dict[str, str], mode: int) -> None:
    path.write_text(json.dumps({"version": 1, "keys": keys}))
    path.chmod(mode)


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "osdp-keys.json"
    write_keys(path, {"gate": KEY.hex()}, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600") as err:
        KeyStore(path)
    assert KEY.hex() not in str(err.value)
    path.chmod(0o600)
    assert KeyStore(path).get("gate") == KEY


def test_malformed_key_is_named_but_never_shown(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    secret = KEY.hex()[:-2]  # 15 bytes
    write_keys(path, {"gate": secret}, 0o600)
    with pytest.raises(KeyFileError, match="'gate'") as err:
        KeyStore(path)
    assert secret not in str(err.value)


def test_written_key_file_is_private_and_repr_shows_no_key(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "keys.json"
    store = KeyStore(path)
    store.generate("lobby")
    store.set("gate", KEY)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = KeyStore(path)
    assert again.get("gate") == KEY and len(again.get("lobby") or b"") == 16
    assert KEY.hex() not in repr(again) and "gate" in repr(again)


def noop(*_: object) -> None:
    return None


def test_secure_reader_without_key_is_a_config_error(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    with pytest.raises(ValueError, match="no key"):
        OsdpDriver("/dev/null", [ReaderConfig("gate", 1)], noop, keys=store)
    with pytest.raises(ValueError, match="no key store"):
        OsdpDriver("/dev/null", [ReaderConfig("gate", 1)], noop)
    # In install mode the driver makes the key it will give the reader at commissioning.
    OsdpDriver("/dev/null", [ReaderConfig("gate", 1, install_mode=True)], noop, keys=store)
    assert len(store.get("gate") or b"") == 16


def test_bus_configuration_errors() -> None:
    with pytest.raises(ValueError, match="outside 0-126"):
        ReaderConfig("x", 127)
    with pytest.raises(ValueError, match="duplicate reader address"):
        OsdpDriver("/dev/null", [ReaderConfig("a", 1, secure=False), ReaderConfig("b", 1, secure=False)], noop)
    with pytest.raises(ValueError, match="at most 32"):
        OsdpDriver("/dev/null", [ReaderConfig(f"r{i}", i, secure=False) for i in range(33)], noop)
