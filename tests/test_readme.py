"""The README's site-file examples validate: a user copying one gets a file Linli accepts.

Each section example is checked with just enough around it (site, controller, and the doors or
readers it refers to); the hashes shown as `...` are filled in with real ones.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge.config import SiteConfig, parse_config
from rules.access import PinHasher
from tests.controller_helpers import hash_password

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```yaml\n(.*?)```", README, re.DOTALL)
BASE = "site: {id: maple-court}\ncontroller: {id: gate-1}\n"
# What the examples refer to without defining it.
CONTEXT = {
    "doors:": "",
    "modbus:": "users:\n  - {name: manager, role: manager, password_hash: \"PW\"}\n",
    "intercom:": "doors:\n  - {id: gate, remote_unlock: [intercom]}\n",
    "vision:": "doors:\n  - {id: gate}\nosdp:\n  buses:\n    - port: /dev/ttyS0\n"
    "      readers: [{id: garage-r, address: 1, door: gate}]\n",
}


def filled(block: str) -> str:
    code_hash = PinHasher(b"k" * 32).pin_only("1234")
    return block.replace('"$argon2id$..."', '"PW"').replace("hs256$...", code_hash).replace(
        '"PW"', f'"{hash_password("example-password")}"'
    )


def test_there_is_an_example_per_section() -> None:
    firsts = {block.split(":", 1)[0] for block in BLOCKS}
    assert {"site", "doors", "modbus", "intercom", "vision"} <= firsts


@pytest.mark.parametrize("block", BLOCKS, ids=[b.split(":", 1)[0] for b in BLOCKS])
def test_example_validates(block: str) -> None:
    if block.startswith("site:"):
        text = block
    else:
        context = next(c for key, c in CONTEXT.items() if block.startswith(key))
        text = BASE + context + block
    config = parse_config(filled(text), "README.md")
    # Every section the example shows was read into the config, not left at its default.
    sections = re.findall(r"^([a-z_]+):", block, re.MULTILINE)
    assert sections
    defaults = SiteConfig.model_fields
    for section in sections:
        value = getattr(config, section)
        assert value and value != defaults[section].default, section
