"""Commissioning checks for an intercom door panel or indoor unit (Linli intercom protocol v1).

    python -m hil_tests.intercom --profile firmware_profiles/intercom-generic-panel.yaml \\
        [--port /dev/ttyUSB1 --address 1 --baud 115200] [--report report.json]

Without `--port` the checks run against a simulated device (drivers.intercom.simulator) on a
pseudo-terminal, which also plays the installer's part (typing a code, dialling, answering):
that is how CI proves the checks themselves work. With `--port` they run against the real device
and ask the installer, on the console, to do each step within the check's `timeout_s`.

Checks (the profile's `checks` say which, in which order):
- heartbeat: STATUS answers, with the profile's kind and at least its firmware version;
- retry: the identical command frame twice (same sequence) gets byte-identical replies, and the
  device acts once (the simulator's relay / ring count shows it; on hardware, listen);
- display, unlock, ring, dnd: the command is acknowledged;
- keypad, qr, call, tamper, answer, unlock_request: the installer's action arrives as its message
  (a call also gets CALL_STATE ringing shown on the panel).

Exit status 0 when every required check passed; the JSON report says what each did.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

from drivers.intercom import DeviceKind, DeviceOnline, DeviceSpec, IntercomBus, Timing
from drivers.intercom.profile import IntercomProfile
from drivers.intercom.protocol import (
    Ack,
    Answer,
    CallRequest,
    CallState,
    Display,
    KeypadCode,
    Message,
    QrToken,
    Ring,
    SetDnd,
    Tamper,
    Unlock,
    UnlockRequest,
)
from drivers.intercom.simulator import SimDevice, SimIndoorUnit, SimIntercomBus, SimPanel
from hil_tests.report import utc_now

DEVICE = "dut"  # the device under test
TEST_CALL = 4242


@dataclass
class CheckOutcome:
    id: str
    required: bool
    status: str  # pass | fail | skipped
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0


@dataclass
class Session:
    profile: IntercomProfile
    driver: IntercomBus
    inbox: asyncio.Queue[Message]
    out: TextIO
    sim: SimDevice | None = None  # set when running against the simulator

    def ask(self, text: str) -> None:
        if self.sim is None:
            self.out.write(f"  -> {text}\n")
            self.out.flush()

    async def next(self, kind: type[Message], within: float) -> Message:
        async with asyncio.timeout(within):
            while True:
                msg = await self.inbox.get()
                if isinstance(msg, kind):
                    return msg


Check = Callable[[Session, float], Awaitable[tuple[str, dict[str, Any]]]]


class CheckFailed(Exception):
    pass


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise CheckFailed(message)


async def check_heartbeat(s: Session, wait_s: float) -> tuple[str, dict[str, Any]]:
    status = s.driver.status(DEVICE)
    _need(status is not None, "no STATUS reply")
    assert status is not None
    want = DeviceKind.PANEL if s.profile.kind == "intercom_panel" else DeviceKind.INDOOR_UNIT
    _need(status.kind is want, f"device says it is a {status.kind.name.lower()}, the profile a {want.name.lower()}")
    version = f"{status.version[0]}.{status.version[1]}"
    minimum = s.profile.firmware.version_min
    if minimum is not None:
        _need(status.version >= tuple(int(p) for p in minimum.split(".")), f"firmware {version} < {minimum}")
    return f"{want.name.lower()}, firmware {version}", {"firmware": version, "uptime_s": status.uptime_s}


async def check_retry(s: Session, wait_s: float) -> tuple[str, dict[str, Any]]:
    msg: Message = Unlock(0, 10) if s.profile.kind == "intercom_panel" else Ring(TEST_CALL, 0)
    before = _acted(s)
    replies = await s.driver.send_twice(DEVICE, msg)
    _need(replies is not None, "no reply to the command or to its retry")
    assert replies is not None
    first, second = (f.encode() for f in replies)
    _need(first == second, f"the retry got a different reply ({first.hex()} then {second.hex()}): no cached reply")
    details: dict[str, Any] = {"reply": first.hex()}
    if s.sim is not None:
        acted = _acted(s) - before
        details["acted"] = acted
        _need(acted == 1, f"the device acted {acted} times on one command and its retry")
    else:
        s.ask("the lock / ring should have sounded exactly once")
    if s.profile.kind == "intercom_indoor_unit":
        await s.driver.ring_stop(DEVICE, TEST_CALL, CallState.ENDED)
    return "identical reply to the retry" + (", acted once" if s.sim is not None else ""), details


def _acted(s: Session) -> int:
    if isinstance(s.sim, SimPanel):
        return s.sim.relay_activations
    if isinstance(s.sim, SimIndoorUnit):
        return s.sim.rings
    return 0


async def _acked(s: Session, msg: Message, what: str) -> tuple[str, dict[str, Any]]:
    reply = await s.driver.send(DEVICE, msg)
    _need(isinstance(reply, Ack), f"{what}: expected ACK, got {type(reply).__name__ if reply else 'no reply'}")
    return f"{what} acknowledged", {}


async def check_display(s: Session, wait_s: float) -> tuple[str, dict[str, Any]]:
    s.ask("the display should read 'Linli test'")
    return await _acked(s, Display("Linli test", 0), "DISPLAY")


async def check_unlock(s: Session, wait_s: float) -> tuple[str, dict[str, Any]]:
    s.ask("listen: the lock should click for 1 s")
    return await _acked(s, Unlock(0, 10), "UNLOCK")


async def check_ring(s: Session, wait_s: float) -> tuple[str, dict[str, Any]]:
    s.ask("the unit should ring now")
    return await _acked(s, Ring(TEST_CALL, 1), "RING")


async def check_dnd(s: Session, wait_s: float) -> tuple[str, dict[str, Any]]:
    await _acked(s, SetDnd(True), "SET_DND on")
    return await _acked(s, SetDnd(False), "SET_DND off")


async def check_keypad(s: Session, wait_s: float) -> tuple[str, dict[str, Any]]:
    s.ask("type 1357 and confirm with # at the panel")
    if isinstance(s.sim, SimPanel):
        s.sim.enter_code("1357")
    msg = await s.next(KeypadCode, wait_s)
    assert isinstance(msg, KeypadCode)
    _need(msg.digits == "1357", f"the panel sent a code of {len(msg.digits)} digits, not 1357")
    return "code arrived intact", {}


async def check_qr(s: Session, wait_s: float) -> tuple[str, dict[str, Any]]:
    s.ask("show the test QR code 'LINLI-TEST' to the scanner")
    if isinstance(s.sim, SimPanel):
        s.sim.scan_qr(b"LINLI-TEST")
    msg = await s.next(QrToken, wait_s)
    assert isinstance(msg, QrToken)
    _need(msg.token == b"LINLI-TEST", "the token arrived altered")
    return "token arrived intact", {}


async def check_call(s: Session, wait_s: float) -> tuple[str, dict[str, Any]]:
    s.ask("dial apartment 101 (or press a call button)")
    if isinstance(s.sim, SimPanel):
        s.sim.call("101")
    msg = await s.next(CallRequest, wait_s)
    assert isinstance(msg, CallRequest)
    _need(await s.driver.call_state(DEVICE, TEST_CALL, CallState.RINGING), "CALL_STATE ringing not acknowledged")
    await s.driver.call_state(DEVICE, TEST_CALL, CallState.ENDED)
    dialled = msg.apartment if msg.apartment is not None else f"entry {msg.entry}"
    return f"call for {dialled} arrived; ringing shown", {"dialled": dialled}


async def check_tamper(s: Session, wait_s: float) -> tuple[str, dict[str, Any]]:
    s.ask("open the housing, then close it")
    if s.sim is not None:
        s.sim.set_tamper(True)
        s.sim.set_tamper(False)
    opened = await s.next(Tamper, wait_s)
    closed = await s.next(Tamper, wait_s)
    _need(opened == Tamper(True) and closed == Tamper(False), "tamper open/close not reported in order")
    return "opening and closing reported", {}


async def check_answer(s: Session, wait_s: float) -> tuple[str, dict[str, Any]]:
    _need(await s.driver.ring(DEVICE, TEST_CALL, 1), "RING not acknowledged")
    s.ask("the unit rings: answer it")
    if isinstance(s.sim, SimIndoorUnit):
        s.sim.answer()
    msg = await s.next(Answer, wait_s)
    assert isinstance(msg, Answer)
    _need(msg.call == TEST_CALL, f"ANSWER names call {msg.call}, not the one that rang ({TEST_CALL})")
    return "answer names the ringing call", {}


async def check_unlock_request(s: Session, wait_s: float) -> tuple[str, dict[str, Any]]:
    s.ask("press the door key")
    if isinstance(s.sim, SimIndoorUnit):
        s.sim.unlock()
    msg = await s.next(UnlockRequest, wait_s)
    assert isinstance(msg, UnlockRequest)
    _need(msg.call == TEST_CALL, f"UNLOCK_REQUEST names call {msg.call}, not {TEST_CALL}")
    await s.driver.ring_stop(DEVICE, TEST_CALL, CallState.ENDED)
    return "unlock request names the call", {}


CHECKS: dict[str, Check] = {
    "heartbeat": check_heartbeat,
    "retry": check_retry,
    "display": check_display,
    "unlock": check_unlock,
    "ring": check_ring,
    "dnd": check_dnd,
    "keypad": check_keypad,
    "qr": check_qr,
    "call": check_call,
    "tamper": check_tamper,
    "answer": check_answer,
    "unlock_request": check_unlock_request,
}


def load_profile(path: Path) -> IntercomProfile:
    try:
        return IntercomProfile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise SystemExit(f"{path}: {exc}") from None


async def run(
    profile: IntercomProfile, *, port: str | None = None, address: int | None = None, baud: int | None = None,
    out: TextIO = sys.stdout, timing: Timing | None = None, online_within_s: float = 5.0,
) -> dict[str, Any]:
    address = profile.transport.addresses.default if address is None else address
    kind = DeviceKind.PANEL if profile.kind == "intercom_panel" else DeviceKind.INDOOR_UNIT
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    sim_bus: SimIntercomBus | None = None
    sim: SimDevice | None = None
    if port is None:
        sim = SimPanel(address) if kind is DeviceKind.PANEL else SimIndoorUnit(address)
        sim_bus = SimIntercomBus([sim])
        await sim_bus.start()
        port = sim_bus.port
    driver = IntercomBus(port, [DeviceSpec(DEVICE, address, kind)], lambda d, m: inbox.put_nowait(m),
                         baudrate=baud or profile.transport.baud, timing=timing)
    report: dict[str, Any] = {
        "report": "linli.commissioning.intercom",
        "format": 1,
        "started_at": utc_now(),
        "target": {"port": port if sim is None else "simulator", "address": address, "kind": profile.kind},
        "profile": {"id": profile.id, "vendor": profile.vendor, "model": profile.model},
    }
    outcomes: list[CheckOutcome] = []
    await driver.start()
    try:
        try:
            online = await Session(profile, driver, inbox, out).next(DeviceOnline, online_within_s)
        except TimeoutError:
            report["connection"] = {"online": False}
            out.write(f"no answer from address {address} on {port}: check wiring, address and baud\n")
        else:
            report["connection"] = {"online": True}
            assert isinstance(online, DeviceOnline)
            session = Session(profile, driver, inbox, out, sim)
            for planned in profile.checks:
                outcomes.append(await _one(session, planned.check, planned.required, planned.timeout_s, out))
    finally:
        await driver.stop()
        if sim_bus is not None:
            await sim_bus.stop()
    report["finished_at"] = utc_now()
    report["checks"] = [asdict(o) for o in outcomes]
    failed = not report["connection"]["online"] or any(o.required and o.status != "pass" for o in outcomes)
    report["result"] = "fail" if failed else "pass"
    return report


async def _one(s: Session, name: str, required: bool, wait_s: float, out: TextIO) -> CheckOutcome:
    started = time.monotonic()
    out.write(f"{name} ...\n")
    try:
        message, details = await CHECKS[name](s, wait_s)
        status = "pass"
    except CheckFailed as exc:
        status, message, details = "fail", str(exc), {}
    except TimeoutError:
        status, message, details = ("fail" if required else "skipped"), f"nothing within {wait_s:g} s", {}
    outcome = CheckOutcome(name, required, status, message, details, round(time.monotonic() - started, 3))
    out.write(f"{name}: {status} - {message}\n")
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil_tests.intercom", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, required=True)
    parser.add_argument("--port", help="the bus (serial path or socket://host:port); default: a simulated device")
    parser.add_argument("--address", type=int, help="the device's bus address (default: the profile's)")
    parser.add_argument("--baud", type=int)
    parser.add_argument("--report", type=Path, help="write the JSON report here")
    args = parser.parse_args(argv)
    profile = load_profile(args.profile)
    report = asyncio.run(run(profile, port=args.port, address=args.address, baud=args.baud))
    text = json.dumps(report, indent=2)
    if args.report is not None:
        args.report.write_text(text + "\n", encoding="utf-8")
    print(f"result: {report['result']}")
    return 0 if report["result"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
