"""The demo's devices that speak the real wire protocols, the people who use them, and the controls
that let a person at the demo do the same (web page, `linli sim ...`).

Two OSDP readers (libosdp PeripheralDevice) sit on one pseudo-terminal in the demo's data folder,
with secure channel keys the demo generates there; the daemon drives them exactly as it would real
readers. Nothing here emits events: everything the journal shows comes from the daemon's own
drivers and rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import osdp_sys

from drivers.osdp.keys import KeyStore
from drivers.osdp.simulator import INPUT_DPS, INPUT_REX, OUTPUT_LOCK, SimBus, SimReader
from edge.access_store import AccessStore
from rules.access import (
    AccessLevel,
    Credential,
    CredentialKind,
    Door,
    DoorGroup,
    DoorMode,
    Holder,
    HolderKind,
    LevelGrant,
    PinHasher,
    Schedule,
    ScheduleInterval,
    SiteSettings,
    Snapshot,
)
from rules.access.model import ALL_DAYS, Card, CardFormat

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resident:
    id: str
    name: str
    apartment: str
    card: int
    pin: str


FACILITY = 42
RESIDENTS = [
    Resident("li-wei", "Li Wei", "3-201", 10231, "2580"),
    Resident("zhang-min", "Zhang Min", "3-402", 10544, "1397"),
    Resident("wang-fang", "Wang Fang", "5-101", 11002, "8642"),
    Resident("chen-jie", "Chen Jie", "7-1203", 11871, "5150"),
]
GUARD = Resident("guard-zhao", "Zhao (guard)", "", 20001, "9911")

READERS = {"gate-reader": 1, "lobby-reader": 2}  # reader id -> OSDP address (edge/demo_site.yaml)
SOCKET_NAME = "sim.sock"
USAGE = (
    "card READER NUMBER [FACILITY] | pin READER DIGITS | door READER open|close | exit READER | "
    "tamper READER on|off   (READER: " + ", ".join(READERS) + ")"
)


class DemoDevices:
    """The simulated readers on their pty bus, and the verbs a person (or `linli sim`) uses on them."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        osdp_sys.set_loglevel(osdp_sys.LOG_ERROR)  # the readers' own chatter would drown the banner
        keys = KeyStore(data_dir / "osdp-keys.json")
        for reader_id in READERS:
            if reader_id not in keys:
                keys.generate(reader_id)  # mode 0600; the daemon reads the same file
        self.bus = SimBus(
            [SimReader(address, key=keys.get(reader_id), inputs=2) for reader_id, address in READERS.items()],
            directory=data_dir,
        )
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def port(self) -> str:
        return self.bus.port

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.bus.start()
        path = self.data_dir / SOCKET_NAME
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(path))
        path.chmod(0o600)  # only the demo's user may play with its doors

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / SOCKET_NAME).unlink()
        await self.bus.stop()

    def reader(self, reader_id: str) -> SimReader:
        if reader_id not in READERS:
            raise ValueError(f"no simulated reader {reader_id!r}; the readers are {', '.join(READERS)}")
        return self.bus.reader(READERS[reader_id])

    # ---- what people do -----------------------------------------------------------------------------

    def present_card(self, reader_id: str, number: int, facility: int) -> None:
        self.reader(reader_id).present_card(number, facility)

    def type_pin(self, reader_id: str, digits: str) -> None:
        self.reader(reader_id).press_keys(digits + "#")

    def set_door(self, reader_id: str, open_: bool) -> None:
        self.reader(reader_id).set_input(INPUT_DPS, open_)

    def press_exit(self, reader_id: str) -> None:
        reader = self.reader(reader_id)
        reader.set_input(INPUT_REX, True)
        assert self._loop is not None
        self._loop.call_later(0.3, reader.set_input, INPUT_REX, False)

    def set_tamper(self, reader_id: str, active: bool) -> None:
        self.reader(reader_id).set_tamper(active)

    def unlocked(self, reader_id: str, fail_safe: bool) -> bool:
        on = self.reader(reader_id).outputs[OUTPUT_LOCK].on
        return not on if fail_safe else on

    def command(self, line: str) -> str:
        """One command line (the web page's and `linli sim`'s); returns what was done. ValueError
        with the usage for anything else."""
        words = line.split()
        try:
            verb, reader_id, *rest = words
            if verb == "card" and 1 <= len(rest) <= 2:
                number = int(rest[0])
                facility = int(rest[1]) if len(rest) == 2 else FACILITY
                if not (0 <= number < 1 << 16 and 0 <= facility < 1 << 8):
                    raise ValueError("a 26-bit card has facility 0-255 and number 0-65535")
                self.present_card(reader_id, number, facility)
                return f"card {facility}:{number} presented at {reader_id}"
            if verb == "pin" and len(rest) == 1 and rest[0].isdigit() and 1 <= len(rest[0]) <= 12:
                self.type_pin(reader_id, rest[0])
                return f"{len(rest[0])} digits and # typed at {reader_id}"
            if verb == "door" and rest in (["open"], ["close"]):
                self.set_door(reader_id, rest[0] == "open")
                return f"door at {reader_id} {'opened' if rest[0] == 'open' else 'closed'}"
            if verb == "exit" and not rest:
                self.press_exit(reader_id)
                return f"exit button pressed at {reader_id}"
            if verb == "tamper" and rest in (["on"], ["off"]):
                self.set_tamper(reader_id, rest[0] == "on")
                return f"tamper {rest[0]} at {reader_id}"
        except ValueError as exc:
            raise ValueError(f"{exc}. Commands: {USAGE}") from None
        raise ValueError(f"not understood: {line[:80]!r}. Commands: {USAGE}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await asyncio.wait_for(reader.readline(), 5)).decode("utf-8", "replace").strip()
            try:
                reply = "ok " + self.command(line)
            except ValueError as exc:
                reply = f"error {exc}"
            writer.write(reply.encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


async def send_command(data_dir: Path, line: str) -> str:
    """`linli sim ...`: one command to a running demo's simulated devices; its reply line."""
    path = data_dir / SOCKET_NAME
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        raise ConnectionError(f"no demo running with data folder {data_dir} (start `linli demo` first)") from None
    try:
        writer.write(line.encode() + b"\n")
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), 5)).decode().strip()
    finally:
        writer.close()


# ---- the access data the demo starts with ------------------------------------------------------------


async def seed_access_data(data_dir: Path, timezone: str) -> None:
    """Residents, a guard and the two doors, the first time the demo runs (later runs keep what
    the person changed)."""
    store = AccessStore(data_dir)
    await store.open()
    try:
        if store.version == 0:
            assert store.pin_hasher is not None
            await store.replace_snapshot(demo_snapshot(store.pin_hasher, RESIDENTS, GUARD, timezone))
    finally:
        await store.close()


def demo_snapshot(hasher: PinHasher, residents: list[Resident], guard: Resident, timezone: str) -> Snapshot:
    holders: list[Holder] = []
    credentials: list[Credential] = []
    for r in residents:
        holders.append(
            Holder(id=r.id, name=r.name, kind=HolderKind.RESIDENT, apartment=r.apartment, access_levels=("resident",))
        )
        credentials.append(_card(r))
        credentials.append(
            Credential(id=f"{r.id}.pin", holder_id=r.id, kind=CredentialKind.PIN, pin_hash=hasher.pin_only(r.pin))
        )
    holders.append(
        Holder(id=guard.id, name=guard.name, kind=HolderKind.STAFF, access_levels=("staff",), lockdown_override=True)
    )
    credentials.append(_card(guard))
    all_day = ScheduleInterval(days=ALL_DAYS, start="00:00", end="24:00")
    always = Schedule(id="always", name="Always", intervals=(all_day,))
    return Snapshot(
        version=1,
        site=SiteSettings(timezone=timezone),
        holders=tuple(holders),
        credentials=tuple(credentials),
        doors=(
            Door(id="north-gate", name="North gate", mode=DoorMode.CARD),
            Door(id="lobby-3", name="Building 3 lobby", mode=DoorMode.CARD_OR_PIN),
        ),
        door_groups=(DoorGroup(id="all", name="All doors", doors=("north-gate", "lobby-3")),),
        schedules=(always,),
        access_levels=(
            AccessLevel(id="resident", name="Resident", grants=(LevelGrant(door_group="all", schedule="always"),)),
            AccessLevel(id="staff", name="Staff", grants=(LevelGrant(door_group="all", schedule="always"),)),
        ),
    )


def _card(r: Resident) -> Credential:
    return Credential(
        id=f"{r.id}.card",
        holder_id=r.id,
        kind=CredentialKind.CARD,
        card=Card(format=CardFormat.H10301, facility=FACILITY, number=r.card),
    )


# ---- people coming and going ---------------------------------------------------------------------------


class Passersby:
    """Residents and visitors using the simulated readers at roughly `rate` scenarios per second:
    cards, PINs, the exit button, the odd unknown card and a door left open too long."""

    def __init__(self, devices: DemoDevices, residents: list[Resident], rate: float, seed: int | None = None) -> None:
        self.devices = devices
        self.residents = residents
        self.rate = rate
        self.random = random.Random(seed)
        self.busy: set[str] = set()  # readers someone is using now

    async def run(self) -> None:
        scenarios = [
            (30, self._resident_at_gate),
            (15, self._pin_at_lobby),
            (10, self._leaving_by_the_exit_button),
            (8, self._unknown_card),
            (4, self._wrong_pin),
            (1, self._door_left_open),
        ]
        weights = [w for w, _ in scenarios]
        tasks: set[asyncio.Task[None]] = set()
        while True:
            await asyncio.sleep(self.random.expovariate(self.rate))
            scenario = self.random.choices([s for _, s in scenarios], weights)[0]
            task = asyncio.create_task(scenario())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def _use(self, reader_id: str) -> bool:
        if reader_id in self.busy:
            return False
        self.busy.add(reader_id)
        return True

    async def _walk_through(self, reader_id: str, fail_safe: bool, held_s: float) -> None:
        """Open the door if it unlocked within a few seconds, then close it after `held_s`."""
        for _ in range(30):
            if self.devices.unlocked(reader_id, fail_safe):
                await asyncio.sleep(self.random.uniform(0.5, 1.5))
                self.devices.set_door(reader_id, True)
                await asyncio.sleep(held_s)
                self.devices.set_door(reader_id, False)
                return
            await asyncio.sleep(0.1)

    async def _resident_at_gate(self) -> None:
        if await self._use("gate-reader"):
            try:
                who = self.random.choice(self.residents)
                self.devices.present_card("gate-reader", who.card, FACILITY)
                await self._walk_through("gate-reader", False, self.random.uniform(1.5, 4))
            finally:
                self.busy.discard("gate-reader")

    async def _pin_at_lobby(self) -> None:
        if await self._use("lobby-reader"):
            try:
                self.devices.type_pin("lobby-reader", self.random.choice(self.residents).pin)
                await self._walk_through("lobby-reader", True, self.random.uniform(1.5, 3))
            finally:
                self.busy.discard("lobby-reader")

    async def _leaving_by_the_exit_button(self) -> None:
        reader_id = self.random.choice(list(READERS))
        if await self._use(reader_id):
            try:
                self.devices.press_exit(reader_id)
                await asyncio.sleep(self.random.uniform(0.5, 1.5))
                self.devices.set_door(reader_id, True)
                await asyncio.sleep(self.random.uniform(1, 3))
                self.devices.set_door(reader_id, False)
            finally:
                self.busy.discard(reader_id)

    async def _unknown_card(self) -> None:
        if await self._use("gate-reader"):
            try:
                self.devices.present_card("gate-reader", self.random.randint(30000, 65535), FACILITY)
                await asyncio.sleep(2)
            finally:
                self.busy.discard("gate-reader")

    async def _wrong_pin(self) -> None:
        if await self._use("lobby-reader"):
            try:
                self.devices.type_pin("lobby-reader", f"{self.random.randint(0, 9999):04d}")
                await asyncio.sleep(2)
            finally:
                self.busy.discard("lobby-reader")

    async def _door_left_open(self) -> None:
        """Someone props the gate open past its held-open time (pre-alarm, then alarm)."""
        if await self._use("gate-reader"):
            try:
                who = self.random.choice(self.residents)
                self.devices.present_card("gate-reader", who.card, FACILITY)
                await self._walk_through("gate-reader", False, 30)
            finally:
                self.busy.discard("gate-reader")


def demo_info(residents: list[Resident] = RESIDENTS, guard: Resident = GUARD) -> dict[str, Any]:
    """What the web page's simulator panel offers."""

    people = [{"name": r.name, "apartment": r.apartment, "card": r.card, "pin": r.pin} for r in residents]
    people.append({"name": guard.name, "apartment": None, "card": guard.card, "pin": None})
    return {"readers": list(READERS), "facility": FACILITY, "people": people, "usage": USAGE}
