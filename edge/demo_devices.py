"""The demo's devices that speak the real wire protocols, the people who use them, and the controls
that let a person at the demo do the same (web page, `linli sim ...`).

Two OSDP readers (libosdp PeripheralDevice) sit on one pseudo-terminal in the demo's data folder,
with secure channel keys the demo generates there; the daemon drives them exactly as it would real
readers. The fence's Modbus RTU I/O module (pymodbus's server) sits on a second pseudo-terminal;
Li Wei's Zigbee sensors and siren live on the Zigbee service's simulated network (`radio:
simulated`), reached through `controller.zigbee.sim_device`. The gate's intercom door panel, the
residents' indoor units and the guard desk (drivers.intercom.simulator) sit on a third pseudo-terminal
and speak the Linli panel protocol. Nothing here emits events: everything the journal shows comes
from the daemon's own drivers and rules; the people here arm and disarm through the alarm panel with
their codes, as at a keypad, and visitor passes are issued through access control's pass desk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import osdp_sys

from drivers.intercom.protocol import CallState
from drivers.intercom.simulator import SimIndoorUnit, SimIntercomBus, SimPanel
from drivers.modbus.simulator import SimBus as ModbusBus
from drivers.modbus.simulator import SimModule
from drivers.osdp.keys import KeyStore
from drivers.osdp.simulator import INPUT_DPS, INPUT_REX, OUTPUT_LOCK, SimBus, SimReader
from drivers.zigbee.driver import ZigbeeCommandError
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
from rules.access.passes import PassError, PassKind, PassOrder

if TYPE_CHECKING:
    from edge.daemon import Controller

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
MODBUS_PORT_NAME = "modbus-bus"
FENCE_UNIT = 1  # the fence I/O module's Modbus unit id (edge/demo_site.yaml)

# The intercom bus (intercom_section): the gate's door panel opens the north gate through access
# control; every resident's apartment has an indoor unit; the guard desk takes unanswered calls.
INTERCOM_PORT_NAME = "intercom-bus"
PANEL = "gate-panel"
PANEL_ADDRESS = 1
GATE = "north-gate"  # the access door the panel opens (its `remote_unlock` lists `intercom`)
GUARD_DESK = "guard"  # the guard desk's name in the sim verbs
GUARD_DESK_ADDRESS = 20
UNITS = {r.apartment: 10 + i for i, r in enumerate(RESIDENTS)}  # apartment -> indoor unit address
# Li Wei's visitor pass, issued at the first start (seed_visitor_pass): a demo PIN, printed like the codes.
VISITOR_PIN = "482916"


def intercom_section(port: str) -> str:
    """The demo site's `intercom:` section (short rings, so a missed call reaches the guard soon)."""
    units = "\n".join(
        f'        - {{id: unit-{apt}, name: "{apt} indoor unit", address: {addr}, apartment: "{apt}"}}'
        for apt, addr in UNITS.items()
    )
    directory = ", ".join(f'{i}: "{apt}"' for i, apt in enumerate(UNITS, 1))
    return (
        "# The gate's intercom door panel, the residents' indoor units and the guard desk: simulated\n"
        "# devices speaking the Linli panel protocol (docs/intercom-protocol.md) on a third pty bus.\n"
        "# Dial with `linli sim call 3-201`, answer with `linli sim answer 3-201`.\n"
        "intercom:\n"
        "  buses:\n"
        f'    - port: "{port}"\n'
        "      baudrate: 115200\n"
        "      panels:\n"
        f'        - {{id: {PANEL}, name: "North gate panel", address: {PANEL_ADDRESS}, door: {GATE}, '
        f"directory: {{{directory}}}}}\n"
        "      indoor_units:\n"
        f"{units}\n"
        f'        - {{id: guard-desk, name: "Guard desk", address: {GUARD_DESK_ADDRESS}, guard: true}}\n'
        "  timeouts: {unit_ring_s: 15, app_ring_s: 10, guard_ring_s: 20, talk_s: 90, unlock_grace_s: 10}\n"
    )


@dataclass(frozen=True)
class DemoZone:
    """An alarm zone of the demo site (edge/demo_site.yaml) and where its simulated sensor is."""

    id: str
    name: str
    partition: str
    input: int | None = None  # the fence module's discrete input
    zigbee: str | None = None  # the Zigbee sensor's device id


ZONES = [
    DemoZone("fence-north", "North fence beam", "perimeter", input=0),
    DemoZone("fence-east", "East fence beam", "perimeter", input=1),
    DemoZone("plant-room", "Plant-room door", "perimeter", input=2),
    DemoZone("fence-tamper", "I/O module lid (tamper)", "perimeter", input=3),
    DemoZone("3-201-door", "3-201 front door", "home-3-201", zigbee="apt-3-201-door"),
    DemoZone("3-201-motion", "3-201 hall motion", "home-3-201", zigbee="apt-3-201-motion"),
    DemoZone("3-201-smoke", "3-201 kitchen smoke", "home-3-201", zigbee="apt-3-201-smoke"),
]
BEAMS = {"north": "fence-north", "east": "fence-east"}
SIRENS = {"yard-siren": 0, "yard-strobe": 1}  # siren id -> the fence module's coil
ZIGBEE_SIRENS = {"3-201-siren": "apt-3-201-siren"}


@dataclass(frozen=True)
class AlarmCode:
    user: str
    code: str
    partitions: tuple[str, ...]
    duress: bool = False


# The demo's alarm codes (printed in the README and on the web page: this is a demo). The site file
# gets their keyed hashes under the box's PIN key, never the digits.
GUARD_CODE = AlarmCode("guard-zhao", "1234", ("perimeter",))
RESIDENT_CODE = AlarmCode("li-wei", "3201", ("home-3-201",))
ALARM_CODES = [GUARD_CODE, RESIDENT_CODE, AlarmCode("li-wei", "3209", ("home-3-201",), duress=True)]

USAGE = (
    "card READER NUMBER [FACILITY] | pin READER DIGITS | keys READER *1CODE# | door READER open|close | "
    "exit READER | "
    "tamper READER on|off   (READER: " + ", ".join(READERS) + ") | "
    "zone ZONE on|off   (ZONE: " + ", ".join(z.id for z in ZONES) + ") | beam north|east on|off | sirens | "
    "call APARTMENT | answer|unlock|hangup APARTMENT|guard | code DIGITS | qr TOKEN   (APARTMENT: "
    + ", ".join(UNITS) + ")"
)


class DemoDevices:
    """The simulated readers on their pty bus, and the verbs a person (or `linli sim`) uses on them."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.controller: Controller | None = None  # for the Zigbee network, which the daemon runs
        self.person_at = -1e9  # loop time a person last tripped a zone (the passers-by leave them alone)
        self.modbus = ModbusBus([SimModule(FENCE_UNIT, inputs=8, analog=0, coils=len(SIRENS))],
                                directory=data_dir, name=MODBUS_PORT_NAME)
        osdp_sys.set_loglevel(osdp_sys.LOG_ERROR)  # the readers' own chatter would drown the banner
        keys = KeyStore(data_dir / "osdp-keys.json")
        for reader_id in READERS:
            if reader_id not in keys:
                keys.generate(reader_id)  # mode 0600; the daemon reads the same file
        self.bus = SimBus(
            [SimReader(address, key=keys.get(reader_id), inputs=2) for reader_id, address in READERS.items()],
            directory=data_dir,
        )
        units = [SimIndoorUnit(address) for address in [*UNITS.values(), GUARD_DESK_ADDRESS]]
        self.intercom = SimIntercomBus([SimPanel(PANEL_ADDRESS), *units], directory=data_dir)
        self.intercom_person_at = -1e9  # loop time a person last used the intercom
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def port(self) -> str:
        return self.bus.port

    @property
    def modbus_port(self) -> str:
        return self.modbus.port

    @property
    def intercom_port(self) -> str:
        return self.intercom.port

    def attach(self, controller: Controller) -> None:
        """The daemon whose simulated Zigbee network the home's sensors are on."""
        self.controller = controller

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.bus.start()
        await self.modbus.start()
        await self.intercom.start()
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
        await self.intercom.stop()
        await self.modbus.stop()
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

    @property
    def fence(self) -> SimModule:
        return self.modbus.module(FENCE_UNIT)

    def _zigbee(self, device_id: str) -> Any:
        zigbee = self.controller.zigbee if self.controller is not None else None
        if zigbee is None:
            raise ValueError("the Zigbee network is not running (yet)")
        try:
            return zigbee.sim_device(device_id)
        except ZigbeeCommandError as exc:  # the network is (re)starting
            raise ValueError(str(exc)) from None

    def zone(self, zone_id: str) -> DemoZone:
        zone = next((z for z in ZONES if z.id == zone_id), None)
        if zone is None:
            raise ValueError(f"no demo zone {zone_id!r}; the zones are {', '.join(z.id for z in ZONES)}")
        return zone

    def set_zone(self, zone_id: str, active: bool) -> None:
        """Trip (beam broken, door open, motion, smoke) or restore a zone's simulated sensor."""
        zone = self.zone(zone_id)
        if zone.input is not None:
            self.fence.set_input(zone.input, active)
        else:
            assert zone.zigbee is not None
            self._zigbee(zone.zigbee).set_zone(alarm=active)

    def zone_active(self, zone_id: str) -> bool | None:
        """The simulated sensor's state; None while the Zigbee network is not up."""
        zone = self.zone(zone_id)
        if zone.input is not None:
            return self.fence.input(zone.input)
        try:
            return bool(self._zigbee(str(zone.zigbee)).zone_status & 1)
        except ValueError:  # the network is starting or restarting
            return None

    def sirens(self) -> dict[str, bool | None]:
        """What the sirens are doing, as the simulated devices saw the daemon's commands."""
        out: dict[str, bool | None] = {sid: self.fence.coil(coil) for sid, coil in SIRENS.items()}
        for sid, device_id in ZIGBEE_SIRENS.items():
            try:
                warnings = self._zigbee(device_id).commands("start_warning")
            except ValueError:
                out[sid] = None
                continue
            out[sid] = bool(warnings) and warnings[-1].args.get("warning_duration", 0) > 0
        return out

    def _alarm_command(self, words: list[str]) -> str | None:
        """The alarm verbs; None if `words` is not one of them."""
        match words:
            case ["sirens"]:
                return ", ".join(f"{sid} {'?' if on is None else 'on' if on else 'off'}"
                                 for sid, on in self.sirens().items())
            case ["zone", zone_id, ("on" | "off") as state]:
                self.set_zone(zone_id, state == "on")
                self._person()
                return f"zone {zone_id} {'tripped' if state == 'on' else 'restored'}"
            case ["beam", name, ("on" | "off") as state] if name in BEAMS:
                self.set_zone(BEAMS[name], state == "on")
                self._person()
                return f"{name} fence beam {'broken' if state == 'on' else 'clear'}"
            case ["beam", *_]:
                raise ValueError(f"the beams are {', '.join(BEAMS)}; on (broken) or off")
        return None

    def _person(self) -> None:
        if self._loop is not None:
            self.person_at = self._loop.time()

    # ---- the intercom ------------------------------------------------------------------------------

    @property
    def panel(self) -> SimPanel:
        return self.intercom.device(PANEL_ADDRESS)  # type: ignore[no-any-return]

    def unit(self, apartment: str) -> SimIndoorUnit:
        """An apartment's indoor unit, or the guard desk's (`guard`)."""
        address = GUARD_DESK_ADDRESS if apartment == GUARD_DESK else UNITS.get(apartment)
        if address is None:
            raise ValueError(f"no indoor unit for {apartment!r}; the apartments are {', '.join(UNITS)} "
                             f"(and {GUARD_DESK})")
        return self.intercom.device(address)  # type: ignore[no-any-return]

    def panel_busy(self) -> bool:
        """A call is running at the gate panel (as the panel was told)."""
        state = self.panel.call_state
        return state is not None and state[1] in (CallState.RINGING, CallState.ANSWERED)

    def _intercom_command(self, words: list[str]) -> str | None:
        """The intercom verbs; None if `words` is not one of them."""
        match words:
            case ["call", apartment] if re.fullmatch(r"[0-9A-Za-z-]{1,16}", apartment):
                self.panel.call(apartment)
                done = f"{apartment} dialled at the gate panel"
            case ["answer", apartment]:
                self.unit(apartment).answer()
                done = f"answered at {apartment}'s indoor unit"
            case ["unlock", apartment]:
                self.unit(apartment).unlock()
                done = f"unlock pressed at {apartment}'s indoor unit"
            case ["hangup", apartment]:
                self.unit(apartment).hang_up()
                done = f"hung up at {apartment}'s indoor unit"
            case ["code", digits] if re.fullmatch(r"[0-9]{1,12}", digits):
                self.panel.enter_code(digits)
                done = f"{len(digits)} digits entered at the gate panel"
            case ["qr", token] if re.fullmatch(r"[A-Za-z0-9_-]{1,128}", token):
                self.panel.scan_qr(token.encode())
                done = "QR code scanned at the gate panel"
            case ["call" | "answer" | "unlock" | "hangup" | "code" | "qr", *_]:
                raise ValueError(f"not understood: {' '.join(words)[:80]!r}")
            case _:
                return None
        if self._loop is not None:
            self.intercom_person_at = self._loop.time()
        return done

    def intercom_info(self) -> dict[str, Any]:
        """The panel and the indoor units as the simulated devices see them (the page's intercom card)."""
        names = {r.apartment: r.name for r in RESIDENTS}
        units = []
        for apartment in [*UNITS, GUARD_DESK]:
            unit = self.unit(apartment)
            units.append({"apartment": apartment, "name": names.get(apartment, "Guard desk"),
                          "ringing": unit.ringing is not None, "in_call": unit.in_call is not None, "dnd": unit.dnd})
        call = self.panel.call_state
        return {
            "panel": PANEL,
            "display": self.panel.display_lines.get(0, ""),
            "call_state": call[1].name.lower() if call is not None else None,
            "units": units,
            "visitor_pin": VISITOR_PIN,
        }

    def info(self) -> dict[str, Any]:
        """What the web page's simulator panel offers (GET /api/sim)."""
        zones = [{"id": z.id, "name": z.name, "partition": z.partition, "active": self.zone_active(z.id)}
                 for z in ZONES]
        codes = [{"user": c.user, "code": c.code, "partitions": list(c.partitions), "duress": c.duress}
                 for c in ALARM_CODES]
        return {**demo_info(), "zones": zones, "sirens": self.sirens(), "codes": codes,
                "intercom": self.intercom_info()}

    def command(self, line: str) -> str:
        """One command line (the web page's and `linli sim`'s); returns what was done. ValueError
        with the usage for anything else."""
        words = line.split()
        try:
            done = self._alarm_command(words) or self._intercom_command(words)
            if done is not None:
                return done
            if len(words) < 2:
                raise ValueError(f"not understood: {line[:80]!r}")
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
            if verb == "keys" and len(rest) == 1 and re.fullmatch(r"[0-9*#]{1,16}", rest[0]):
                self.reader(reader_id).press_keys(rest[0])  # e.g. *1 CODE # arms the gate's partition
                return f"{len(rest[0])} keys pressed at {reader_id}"
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


class AlarmPassersby:
    """Life around the alarm, through the simulators and the panel only: the guard arms the perimeter
    at start; now and then a fox breaks a fence beam (a real alarm: the yard siren's coil switches
    on); Li Wei goes out (arms her home with her code) and comes home (the door opens, the entry
    delay runs, she disarms). Scenarios start at roughly `rate` per second, at least `MIN_GAP_S`
    apart, none in the first `QUIET_START_S` or while a person has tripped a zone in the last
    `PERSON_PAUSE_S`. The guard answers a perimeter alarm after `GUARD_RESPONSE_S` (disarms with
    his code) and re-arms a perimeter left disarmed for `REARM_S`; Li Wei silences an alarm at home
    the same way, so the demo never stays in alarm."""

    QUIET_START_S = 45.0
    MIN_GAP_S = 20.0
    PERSON_PAUSE_S = 120.0
    GUARD_RESPONSE_S = 45.0
    REARM_S = 120.0
    TICK_S = 1.0  # how often the guard looks and a scenario may start

    def __init__(self, devices: DemoDevices, controller: Controller, rate: float, seed: int | None = None) -> None:
        self.devices = devices
        self.controller = controller
        self.rate = rate
        self.random = random.Random(seed)
        self._since: dict[str, tuple[str, float]] = {}  # partition -> (state, loop time it was entered)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _state(self, partition: str) -> str | None:
        alarm = self.controller.alarm
        if alarm is None or not alarm.ready.is_set() or alarm.panel is None:
            return None
        return str(alarm.panel.partitions[partition].state)

    async def _request(self, action: str, code: AlarmCode, partition: str, mode: str = "away") -> None:
        alarm = self.controller.alarm
        if alarm is None or not alarm.ready.is_set():
            return
        origin = f"demo:{code.user}"
        if action == "arm":
            result = await alarm.arm(partition, mode, code.code, origin=origin)
        else:
            result = await alarm.disarm(partition, code.code, origin=origin)
        if not result.ok:
            log.info("demo: %s %s refused: %s %s", action, partition, result.reason, result.detail)

    async def run(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        started: float | None = None
        while True:
            await asyncio.sleep(self.TICK_S)
            now = self._now()
            if started is None:  # the panel is starting
                if self._state("perimeter") is None:
                    continue
                started = now
                if self._state("perimeter") == "disarmed":
                    await self._request("arm", GUARD_CODE, "perimeter")  # the guard's round starts armed
            await self._guard(now)
            if (now - started < self.QUIET_START_S or now - self.devices.person_at < self.PERSON_PAUSE_S
                    or tasks or self.random.random() > 1 - math.exp(-self.rate * self.TICK_S)):  # `rate`/s
                continue
            scenario = self.random.choices([self._fox, self._li_wei_goes_out, self._li_wei_comes_home],
                                           [2, 3, 3])[0]
            task = asyncio.create_task(self._then_pause(scenario()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def _then_pause(self, scenario: Any) -> None:
        """One scenario at a time, with a pause after it, so the page stays readable."""
        await scenario
        await asyncio.sleep(self.MIN_GAP_S)

    async def _guard(self, now: float) -> None:
        """Answer alarms and re-arm, from how long each partition has been in its state."""
        for partition, code in (("perimeter", GUARD_CODE), ("home-3-201", RESIDENT_CODE)):
            state = self._state(partition)
            if state is None:
                continue
            if self._since.get(partition, ("",))[0] != state:
                self._since[partition] = (state, now)
            held = now - self._since[partition][1]
            if state == "triggered" and held >= self.GUARD_RESPONSE_S:
                await self._request("disarm", code, partition)
            elif (partition == "perimeter" and state == "disarmed" and held >= self.REARM_S
                  and now - self.devices.person_at >= self.PERSON_PAUSE_S):
                await self._request("arm", code, partition)
            else:
                continue
            self._since[partition] = (state, now)  # refused (zones open?): try again after as long

    async def _closed(self, zone: str, within_s: float = 5.0) -> None:
        """Until the panel has heard that `zone` closed (the report crosses the radio and the bus)."""
        alarm = self.controller.alarm
        for _ in range(int(within_s / 0.1)):
            if alarm is None or alarm.panel is None or alarm.panel.zones[zone].state == "normal":
                return
            await asyncio.sleep(0.1)

    async def _fox(self) -> None:
        """Something crosses the fence: a beam is broken for a moment."""
        zone = self.random.choice(list(BEAMS.values()))
        self.devices.set_zone(zone, True)
        await asyncio.sleep(self.random.uniform(0.3, 1.0))
        self.devices.set_zone(zone, False)

    async def _li_wei_goes_out(self) -> None:
        if self._state("home-3-201") != "disarmed":
            return
        self.devices.set_zone("3-201-motion", True)  # the hall sensor sees her to the door
        await asyncio.sleep(2)
        self.devices.set_zone("3-201-motion", False)
        await self._closed("3-201-motion")  # the panel refuses to arm with a zone open
        await self._request("arm", RESIDENT_CODE, "home-3-201")
        await asyncio.sleep(self.random.uniform(0.5, 1.5))
        self.devices.set_zone("3-201-door", True)  # out within the exit delay
        await asyncio.sleep(self.random.uniform(0.5, 1.5))
        self.devices.set_zone("3-201-door", False)

    async def _li_wei_comes_home(self) -> None:
        if self._state("home-3-201") in ("pending", "triggered"):
            return
        self.devices.set_zone("3-201-door", True)
        await asyncio.sleep(self.random.uniform(2, 5))  # to the keypad, within the entry delay
        if self._state("home-3-201") != "disarmed":
            await self._request("disarm", RESIDENT_CODE, "home-3-201")
        self.devices.set_zone("3-201-door", False)
        await asyncio.sleep(1)
        self.devices.set_zone("3-201-motion", True)
        await asyncio.sleep(self.random.uniform(2, 4))
        self.devices.set_zone("3-201-motion", False)


async def _access_ready(controller: Controller) -> Any:
    """Access control once it has taken over the doors (it starts with the daemon)."""
    while True:
        access = controller.access
        if access is not None:
            await access.ready.wait()
            return access
        await asyncio.sleep(0.2)  # the daemon has not made its access service yet


async def seed_visitor_pass(controller: Controller) -> bool:
    """At the first start, Li Wei has a visitor pass for the gate: PIN `VISITOR_PIN` (typed at the gate
    panel: `linli sim code ...`). Issued through the pass desk like a resident's; True if issued now."""
    access = await _access_ready(controller)
    li_wei = RESIDENTS[0]
    if access.passes.visible(li_wei.apartment):  # issued before (or she made her own): keep what is there
        return False
    order = PassOrder(visitor="Li Wei's guest", kind=PassKind.PIN, doors=(GATE,), max_uses=50,
                      valid_until=datetime.now(UTC) + timedelta(days=30), pin=VISITOR_PIN)
    try:
        await access.passes.issue(order, apartment=li_wei.apartment, issued_by=f"demo:{li_wei.id}")
    except PassError as exc:  # e.g. the access data was edited so that she has no gate access
        log.info("demo: no visitor pass for Li Wei: %s", exc)
        return False
    return True


class IntercomPassersby:
    """Visitors at the gate's intercom panel, at roughly `rate` scenarios per second (one at a time,
    `MIN_GAP_S` apart, none while a person used the intercom in the last `PERSON_PAUSE_S`): a visitor
    dials an apartment and the resident answers on the indoor unit and opens the gate (access control
    unlocks it); nobody is home, so the call goes on to the app and then the guard desk, where the
    guard sometimes answers and lets them in; a visitor scans the QR code of a pass the resident
    has just issued (through access control's pass desk). First it seeds Li Wei's visitor PIN."""

    QUIET_START_S = 60.0
    MIN_GAP_S = 30.0
    PERSON_PAUSE_S = 120.0
    TICK_S = 1.0

    def __init__(self, devices: DemoDevices, controller: Controller, rate: float, seed: int | None = None) -> None:
        self.devices = devices
        self.controller = controller
        self.rate = rate
        self.random = random.Random(seed)
        self.pace = 1.0  # the people's pauses are multiplied by this (tests hurry them)

    async def _pause(self, low: float, high: float) -> None:
        await asyncio.sleep(self.random.uniform(low, high) * self.pace)

    async def run(self) -> None:
        await seed_visitor_pass(self.controller)
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            await asyncio.sleep(self.TICK_S)
            now = loop.time()
            if (now - started < self.QUIET_START_S or now - self.devices.intercom_person_at < self.PERSON_PAUSE_S
                    or self.devices.panel_busy() or self.random.random() > 1 - math.exp(-self.rate * self.TICK_S)):
                continue
            scenario = self.random.choices([self.visitor_let_in, self.nobody_home, self.visitor_with_pass],
                                           [4, 2, 2])[0]
            try:
                await scenario()
            except TimeoutError:  # the daemon did not ring (restarting, or a person got there first)
                log.info("demo: intercom scenario %s gave up", scenario.__name__)
            except Exception:  # one visitor's mishap must not end the demo's visitors
                log.exception("demo: intercom scenario %s failed", scenario.__name__)
            await asyncio.sleep(self.MIN_GAP_S)

    def _resident(self) -> Resident:
        return self.random.choice(RESIDENTS)

    async def _walk_in(self) -> None:
        """Through the gate once it unlocks (the gate reader's lock output), closing it behind."""
        for _ in range(50):
            if self.devices.unlocked("gate-reader", fail_safe=False):
                await self._pause(0.5, 1.5)
                self.devices.set_door("gate-reader", True)
                await self._pause(1.5, 3)
                self.devices.set_door("gate-reader", False)
                return
            await asyncio.sleep(0.1)

    async def visitor_let_in(self) -> None:
        """The resident answers, talks, presses unlock; the visitor walks in; the resident hangs up."""
        unit = self.devices.unit(self._resident().apartment)
        self.devices.panel.call(self._called(unit))
        await unit.wait_ringing(within=5)
        await self._pause(2, 5)
        unit.answer()
        await self._pause(2, 4)
        unit.unlock()
        await self._walk_in()
        unit.hang_up()

    async def nobody_home(self) -> None:
        """Nobody answers: the units, then the app, then the guard desk ring; the guard answers
        and opens now and then, or the call times out."""
        unit = self.devices.unit(self._resident().apartment)
        self.devices.panel.call(self._called(unit))
        await unit.wait_ringing(within=5)
        if self.random.random() < 0.5:
            return  # the call goes on to the app and the guard, and times out there
        guard = self.devices.unit(GUARD_DESK)
        await guard.wait_ringing(within=60)
        await self._pause(2, 6)
        guard.answer()
        await self._pause(2, 4)
        guard.unlock()
        await self._walk_in()
        guard.hang_up()

    def _called(self, unit: SimIndoorUnit) -> str:
        return next(apt for apt, address in UNITS.items() if address == unit.address)

    async def visitor_with_pass(self) -> None:
        """A resident issues a one-use QR pass; a while later the visitor scans it at the panel."""
        who = self._resident()
        access = await _access_ready(self.controller)
        order = PassOrder(visitor="A visitor", kind=PassKind.QR, doors=(GATE,), max_uses=1,
                          valid_until=datetime.now(UTC) + timedelta(hours=2))
        try:
            _, token = await access.passes.issue(order, apartment=who.apartment, issued_by=f"demo:{who.id}")
        except PassError as exc:  # too many live passes, the access data changed...
            log.info("demo: no pass for %s: %s", who.apartment, exc)
            return
        await self._pause(3, 8)
        self.devices.panel.scan_qr(token.encode())
        await self._walk_in()


def demo_info(residents: list[Resident] = RESIDENTS, guard: Resident = GUARD) -> dict[str, Any]:
    """What the web page's simulator panel offers."""

    people = [{"name": r.name, "apartment": r.apartment, "card": r.card, "pin": r.pin} for r in residents]
    people.append({"name": guard.name, "apartment": None, "card": guard.card, "pin": None})
    return {"readers": list(READERS), "facility": FACILITY, "people": people, "usage": USAGE}
