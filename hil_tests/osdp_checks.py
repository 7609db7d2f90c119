"""Commissioning checks for one OSDP reader, each comparing what the reader does with its profile.

Against the simulator a check plays the person's part itself (presents the card, types the code,
opens the housing); against a real reader it asks the installer and waits for the reader to report
it. A check returns (message, details) when it passes and raises CheckFailed / CheckSkipped.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from drivers.osdp import LedColor, OsdpDriver
from drivers.osdp.simulator import SimReader
from drivers.osdp.testing import EventRecorder, Reported
from drivers.osdp.wiegand import RAW
from hil_tests.installer import Installer
from hil_tests.osdp_profile import CheckName, OsdpReaderProfile, PlannedCheck
from hil_tests.report import CheckFailed, CheckSkipped

T = TypeVar("T")
SIM_FACILITY, SIM_CARD = 123, 4567  # fit every supported format's fields
SIM_RAW_BITS = 40  # a length no named format uses, so it decodes as raw
SIM_WAIT = 3.0  # s: the simulator answers within a poll or two
LED_COLORS = {"red": LedColor.RED, "green": LedColor.GREEN, "amber": LedColor.AMBER}
MAX_LEDS_TESTED = 4


@dataclass
class CheckContext:
    driver: OsdpDriver
    reader_id: str
    events: EventRecorder
    profile: OsdpReaderProfile
    installer: Installer
    pins: asyncio.Queue[str]
    connection: dict[str, Any]
    sim: SimReader | None = None  # set when the reader is the simulator: checks act for the person
    key: bytes | None = field(default=None, repr=False)  # the configured key, to compare with the simulator's

    @property
    def reported_id(self) -> dict[str, Any]:
        online = self.events.of("device.online", self.reader_id)
        return dict(online[-1].data.get("id", {})) if online else {}

    def reported(self) -> dict[str, Any]:
        """The reader's capability report, in the profile's terms."""
        caps = self.driver.capabilities(self.reader_id)

        def items(name: str) -> int:
            cap = caps.get(name)
            return cap.items if cap is not None and cap.compliance > 0 else 0

        def present(name: str) -> bool:
            cap = caps.get(name)
            return cap is not None and cap.compliance > 0

        return {
            "card_data": present("card_format"),
            "leds": items("led"),
            "buzzer": present("audible"),
            "display": present("text"),
            "inputs": items("contact_status"),
            "outputs": items("output_control"),
            "secure_channel": present("security"),
        }


Check = Callable[[CheckContext, PlannedCheck], Awaitable[tuple[str, dict[str, Any]]]]


def format_id(pd_id: dict[str, Any]) -> dict[str, Any]:
    """The ID report (osdp_PDID) as an installer reads it off a label or a vendor's manual."""
    if not pd_id:
        return {}
    fw = int(pd_id.get("firmware_version", 0))
    return {
        "vendor_code": f"0x{int(pd_id.get('vendor_code', 0)):06X}",
        "model": pd_id.get("model"),
        "version": pd_id.get("version"),
        "serial_number": pd_id.get("serial_number"),
        "firmware": f"{fw >> 16 & 0xFF}.{fw >> 8 & 0xFF}.{fw & 0xFF}",
    }


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


# -- ID and capabilities --------------------------------------------------------------------------


async def check_capabilities(ctx: CheckContext, plan: PlannedCheck) -> tuple[str, dict[str, Any]]:
    expected = ctx.profile.capabilities
    got = ctx.reported()
    ident = format_id(ctx.reported_id)
    mismatches: list[str] = []
    notes: list[str] = []

    for name, spec in (("leds", expected.leds), ("inputs", expected.inputs), ("outputs", expected.outputs)):
        if not spec.allows(got[name]):
            mismatches.append(f"{name}: the profile expects {spec}, the reader reports {got[name]}")
    for name, want in (("buzzer", expected.buzzer), ("display", expected.display)):
        if want is True and not got[name]:
            mismatches.append(f"{name}: the profile expects a {name}, the reader reports none")
        elif want is False and got[name]:
            mismatches.append(f"{name}: the profile expects no {name}, the reader reports one")
    if ctx.profile.secure_channel.required and not got["secure_channel"]:
        mismatches.append("secure_channel: the profile requires it, the reader does not offer it")
    if expected.card_formats and not got["card_data"]:
        # The driver does not depend on this entry and some readers leave it out; the card check
        # shows whether cards really arrive.
        notes.append("the reader's capability report has no card data format entry")

    wanted = ctx.profile.identity
    if ident:
        if wanted.vendor_code is not None and ident["vendor_code"] != f"0x{wanted.vendor_code:06X}":
            mismatches.append(
                f"vendor_code: the profile expects 0x{wanted.vendor_code:06X}, the reader reports "
                f"{ident['vendor_code']}"
            )
        if wanted.model is not None and ident["model"] != wanted.model:
            mismatches.append(f"model: the profile expects {wanted.model}, the reader reports {ident['model']}")
        if wanted.firmware_min is not None and _version(ident["firmware"]) < _version(wanted.firmware_min):
            mismatches.append(
                f"firmware: the profile needs {wanted.firmware_min} or later, the reader runs "
                f"{ident['firmware']}: update it first"
            )
        images = [i.version for i in ctx.profile.firmware.images]
        if images and ident["firmware"] not in images:
            notes.append(f"firmware {ident['firmware']} is not one of the profile's images ({', '.join(images)})")
    else:
        mismatches.append("id: the reader sent no ID report")

    details = {
        "id": ident,
        "reported": got,
        "expected": expected.model_dump(mode="json"),
        "mismatches": mismatches,
        "notes": notes,
    }
    if mismatches:
        raise CheckFailed("; ".join(mismatches), details)
    summary = (
        f"firmware {ident['firmware']}, {got['leds']} LED(s), {got['inputs']} input(s), {got['outputs']} output(s)"
    )
    if got["display"]:
        summary += ", display"
    return summary, details


# -- secure channel -------------------------------------------------------------------------------


async def check_secure_channel(ctx: CheckContext, plan: PlannedCheck) -> tuple[str, dict[str, Any]]:
    conn = ctx.connection
    required = ctx.profile.secure_channel.required
    details = {
        "required": required,
        "active": False,
        "key": conn.get("key"),
        "enforced": conn.get("enforced", False),
        "commissioned_in_this_run": conn.get("commissioned", False),
    }
    if not conn.get("online"):
        raise CheckFailed(conn.get("reason", "the reader is not online"), {**details, "hint": conn.get("hint")})
    state = ctx.driver.reader_state(ctx.reader_id)
    details["active"] = bool(state["secure"])
    if not required:
        return ("active" if state["secure"] else "plaintext: this profile does not require it"), details
    if not state["secure"]:
        raise CheckFailed("the secure channel is not active", details)
    if not conn.get("enforced"):
        raise CheckFailed("the reader's own key was not enforced on this connection", details)
    if ctx.sim is not None:
        # The simulator can show what a real reader cannot: that it holds exactly our key.
        details["reader_holds_key"] = ctx.sim.key is not None and ctx.sim.key == ctx.key
        if not details["reader_holds_key"]:
            raise CheckFailed("the simulated reader does not hold the configured key", details)
    how = "commissioned in this run, then " if conn.get("commissioned") else ""
    return f"active; {how}the reader proved its own key ({conn.get('key')})", details


# -- LED, buzzer, display -------------------------------------------------------------------------


async def _pause_for_a_person(ctx: CheckContext) -> None:
    if ctx.sim is None:
        await asyncio.sleep(0.4)  # long enough to see each colour on a real reader


async def check_led(ctx: CheckContext, plan: PlannedCheck) -> tuple[str, dict[str, Any]]:
    leds = ctx.reported()["leds"]
    if leds == 0:
        raise CheckFailed("the reader reports no LED", {"leds": 0})
    acknowledged: list[str] = []
    for number in range(min(leds, MAX_LEDS_TESTED)):
        for name, color in LED_COLORS.items():
            if not await ctx.driver.led(ctx.reader_id, color, duration_ms=1000, led_number=number):
                raise CheckFailed(
                    f"LED {number}: the {name} command was not acknowledged", {"acknowledged": acknowledged}
                )
            if ctx.sim is not None and ctx.sim.leds.get(number, {}).get("on_color") != color:
                raise CheckFailed(f"LED {number}: the reader acknowledged {name} but shows something else")
            acknowledged.append(f"{number}:{name}")
            await _pause_for_a_person(ctx)
    return f"{len(acknowledged)} LED commands acknowledged", {"acknowledged": acknowledged, "leds": leds}


async def check_buzzer(ctx: CheckContext, plan: PlannedCheck) -> tuple[str, dict[str, Any]]:
    if not ctx.reported()["buzzer"]:
        raise CheckFailed("the reader reports no buzzer")
    before = len(ctx.sim.buzzes) if ctx.sim is not None else 0
    if not await ctx.driver.buzzer(ctx.reader_id, on_ms=200, off_ms=100, repeat=2):
        raise CheckFailed("the buzzer command was not acknowledged")
    if ctx.sim is not None and len(ctx.sim.buzzes) <= before:
        raise CheckFailed("the reader acknowledged the buzzer command but did not sound")
    return "buzzer command acknowledged", {"repeat": 2, "on_ms": 200}


async def check_display(ctx: CheckContext, plan: PlannedCheck) -> tuple[str, dict[str, Any]]:
    text = "LINLI TEST"
    if not ctx.reported()["display"]:
        if ctx.profile.capabilities.display is True:
            raise CheckFailed("the profile expects a display, the reader reports none")
        raise CheckSkipped("the reader has no display")
    if not await ctx.driver.text(ctx.reader_id, text, duration_s=3):
        raise CheckFailed("the text command was not acknowledged")
    if ctx.sim is not None and text not in ctx.sim.texts:
        raise CheckFailed("the reader acknowledged the text but did not show it")
    return f"{text!r} acknowledged", {"text": text}


# -- things a person does at the reader -------------------------------------------------------------


def _needs_person(ctx: CheckContext) -> None:
    if ctx.sim is None and ctx.installer.absent_reason is not None:
        raise CheckSkipped(f"needs a person at the reader: {ctx.installer.absent_reason}")


async def _next_event(
    ctx: CheckContext, types: tuple[str, ...], since: int, where: Callable[[Reported], bool]
) -> Reported:
    """The first event of one of `types` from this reader at or after index `since`."""
    while True:
        for e in ctx.events.events[since:]:
            if e.type in types and e.source == ctx.reader_id and where(e):
                return e
        await asyncio.sleep(0.01)


def _card_details(e: Reported) -> dict[str, Any]:
    return {k: e.data.get(k) for k in ("format", "bits", "facility", "card", "raw_hex", "error")}


async def check_card(ctx: CheckContext, plan: PlannedCheck) -> tuple[str, dict[str, Any]]:
    formats = ctx.profile.capabilities.card_formats
    if ctx.sim is not None:
        reads: list[dict[str, Any]] = []
        for fmt in formats:
            mark = ctx.events.mark()
            if fmt == RAW:
                value = (1 << (SIM_RAW_BITS - 1)) | SIM_CARD
                ctx.sim.present_bits(value, SIM_RAW_BITS)
                want = {"format": RAW, "facility": None, "card": value}
            else:
                ctx.sim.present_card(SIM_CARD, SIM_FACILITY, fmt)
                want = {"format": fmt, "facility": SIM_FACILITY, "card": SIM_CARD}
            try:
                async with asyncio.timeout(SIM_WAIT):
                    e = await _next_event(ctx, ("reader.card", "reader.card_error"), mark, lambda e: True)
            except TimeoutError:
                raise CheckFailed(f"{fmt}: no card read arrived within {SIM_WAIT:g} s", {"reads": reads}) from None
            got = _card_details(e)
            reads.append(got)
            if any(got[k] != v for k, v in want.items()):
                raise CheckFailed(f"{fmt}: presented {want}, decoded {got}", {"reads": reads})
        return f"{len(reads)} format(s) decoded: {', '.join(formats)}", {"reads": reads}

    _needs_person(ctx)
    mark = ctx.events.mark()
    started = time.monotonic()
    e = await _ask(
        ctx,
        plan,
        "Present a card at the reader",
        _next_event(ctx, ("reader.card", "reader.card_error"), mark, lambda e: True),
        "no card read arrived",
    )
    got = {**_card_details(e), "seconds": round(time.monotonic() - started, 1)}
    if e.type == "reader.card_error":
        raise CheckFailed(
            f"the reader sent a {got['bits']}-bit read that does not decode ({got['error']}): "
            "check the card and the reader's output format",
            {"read": got},
        )
    if got["format"] not in formats:
        raise CheckFailed(
            f"the reader sent a {got['bits']}-bit card ({got['format']}); the profile expects {', '.join(formats)}",
            {"read": got},
        )
    return f"{got['format']} card {got['facility']}/{got['card']} decoded", {"read": got}


async def check_keypad(ctx: CheckContext, plan: PlannedCheck) -> tuple[str, dict[str, Any]]:
    # A fresh code each run: only the right digits, in order, match it.
    code = f"{secrets.randbelow(10_000):04d}"
    while not ctx.pins.empty():
        ctx.pins.get_nowait()  # anything typed earlier is not this test's answer
    mark = ctx.events.mark()
    if ctx.sim is not None:
        ctx.sim.press_keys(code + "#")
        try:
            async with asyncio.timeout(SIM_WAIT):
                pin = await ctx.pins.get()
        except TimeoutError:
            raise CheckFailed(f"the code typed at the simulator did not arrive within {SIM_WAIT:g} s") from None
    else:
        _needs_person(ctx)
        pin = await _ask(
            ctx,
            plan,
            f"Type {code} then # on the reader's keypad",
            ctx.pins.get(),
            "no code arrived",
            "finish the code with #; digits without a key press for 5 s are dropped",
        )
    abandoned = [
        e.data for e in ctx.events.events[mark:] if e.type == "reader.keypad_abandoned" and e.source == ctx.reader_id
    ]
    details = {"code_length": len(code), "abandoned_entries": abandoned}
    if pin != code:
        # The digits themselves stay out of the report: a person may have typed a real PIN.
        raise CheckFailed(f"the code arrived as {len(pin)} digits that differ from {code}: check the keypad", details)
    return f"code {code} arrived intact", details


async def check_tamper(ctx: CheckContext, plan: PlannedCheck) -> tuple[str, dict[str, Any]]:
    seen: list[bool] = []

    def tamper(active: bool) -> Coroutine[Any, Any, Reported]:
        # Marked now, before the person (or the simulator) acts: the report may come back at once.
        mark = ctx.events.mark()
        return _next_event(ctx, ("reader.tamper",), mark, lambda e: e.data.get("active") is active)

    if ctx.sim is not None:
        for active in (True, False):
            waiting = tamper(active)
            ctx.sim.set_tamper(active)
            try:
                async with asyncio.timeout(SIM_WAIT):
                    await waiting
            except TimeoutError:
                state = "opened" if active else "closed"
                raise CheckFailed(f"housing {state} at the simulator, no tamper report", {"seen": seen}) from None
            seen.append(active)
        return "opening and closing the housing reported", {"seen": seen}

    _needs_person(ctx)
    if ctx.driver.reader_state(ctx.reader_id)["tamper"]:
        await _ask(ctx, plan, "The reader reports its housing open: close it", tamper(False), "it was still open")
    await _ask(
        ctx,
        plan,
        "Open the reader's housing or lift it off its mounting plate",
        tamper(True),
        "no tamper report arrived",
        "the reader may not report tamper, or its tamper switch is not fitted or wired",
    )
    seen.append(True)
    await _ask(ctx, plan, "Close the housing again", tamper(False), "the reader still reports its housing open")
    seen.append(False)
    return "opening and closing the housing reported", {"seen": seen}


async def _ask(
    ctx: CheckContext,
    plan: PlannedCheck,
    instruction: str,
    until: Coroutine[Any, Any, T],
    on_timeout: str,
    hint: str | None = None,
) -> T:
    try:
        return await ctx.installer.ask(instruction, until, plan.timeout_s)
    except TimeoutError:
        raise CheckFailed(f"{on_timeout} within {plan.timeout_s:g} s", {"hint": hint} if hint else {}) from None


# -- the registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckSpec:
    title: str
    run: Check
    needs_online: bool = True


CHECKS: dict[CheckName, CheckSpec] = {
    "capabilities": CheckSpec("ID and capability report", check_capabilities),
    "secure_channel": CheckSpec("secure channel with the reader's own key", check_secure_channel, needs_online=False),
    "led": CheckSpec("LED commands", check_led),
    "buzzer": CheckSpec("buzzer command", check_buzzer),
    "display": CheckSpec("text on the display", check_display),
    "card": CheckSpec("card read round trip", check_card),
    "keypad": CheckSpec("keypad round trip", check_keypad),
    "tamper": CheckSpec("tamper switch", check_tamper),
}
