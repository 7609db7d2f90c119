"""Commissioning checks for intercom devices (hil_tests/intercom.py) against the simulators, the
firmware profiles' schema, and a device whose firmware breaks the cached-reply rule."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from drivers.intercom import Timing
from drivers.intercom.profile import IntercomProfile
from drivers.intercom.simulator import SimPanel
from hil_tests import intercom as hil

PROFILES = Path(__file__).resolve().parents[1] / "firmware_profiles"
PANEL = PROFILES / "intercom-generic-panel.yaml"
UNIT = PROFILES / "intercom-generic-indoor-unit.yaml"


@pytest.mark.parametrize("path", [PANEL, UNIT])
async def test_every_check_passes_against_the_simulator(path: Path) -> None:
    profile = hil.load_profile(path)
    assert profile.id == path.stem
    report = await hil.run(profile, out=io.StringIO())
    assert report["result"] == "pass", report
    assert [c["id"] for c in report["checks"]] == [c.check for c in profile.checks]
    retry = next(c for c in report["checks"] if c["id"] == "retry")
    assert retry["details"]["acted"] == 1


class ForgetfulPanel(SimPanel):
    """Firmware that handles every frame afresh: a retried UNLOCK pulses the relay again."""

    def on_bytes(self, data: bytes) -> bytes:
        self.endpoint.reset()
        return super().on_bytes(data)


async def test_the_retry_check_catches_firmware_without_the_cached_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hil, "SimPanel", ForgetfulPanel)
    report = await hil.run(hil.load_profile(PANEL), out=io.StringIO())
    retry = next(c for c in report["checks"] if c["id"] == "retry")
    assert retry["status"] == "fail" and "acted 2 times" in retry["message"]
    assert report["result"] == "fail"


async def test_an_absent_device_fails_with_advice(tmp_path: Path) -> None:
    out = io.StringIO()
    fast = Timing(reply_timeout_s=0.05, offline_probe_s=0.05, reconnect_s=0.05)
    report = await hil.run(hil.load_profile(PANEL), port=str(tmp_path / "no-such-port"), out=out, timing=fast,
                          online_within_s=0.5)
    assert report["result"] == "fail" and report["connection"] == {"online": False}
    assert "check wiring, address and baud" in out.getvalue()


def test_profiles_refuse_plans_that_do_not_fit_the_device() -> None:
    doc = yaml.safe_load(PANEL.read_text())
    IntercomProfile.model_validate(doc)
    bad = [
        {**doc, "colour": "red"},  # unknown key
        {**doc, "checks": [{"check": "answer"}]},  # an indoor-unit check in a panel's plan
        {**doc, "capabilities": {**doc["capabilities"], "keypad": False}},  # plan tests the keypad
        {**doc, "transport": {**doc["transport"], "baud": 9600, "allowed_bauds": [115200]}},
        {**doc, "protocol": {"name": "osdp"}},
    ]
    for item in bad:
        with pytest.raises(ValidationError):
            IntercomProfile.model_validate(item)

