"""The `linli` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import logging
import os
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path

from edge import __version__


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(json_logs: bool, verbose: bool) -> None:
    handler = logging.StreamHandler()
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)


# ---- commands ---------------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    from edge.config import ConfigError, load_config, summary

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{args.file}: {len(exc.issues)} error(s); fix them and run check-config again", file=sys.stderr)
        return 2
    print(f"{args.file}: valid")
    print(summary(config))
    return 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    from edge.config import config_schema

    print(config_schema())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from edge.config import ConfigError, load_config
    from edge.daemon import Controller, StartupError, run_until_signalled

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 2
    try:
        asyncio.run(run_until_signalled(Controller(config, Path(args.config).resolve())))
    except StartupError as exc:
        print(f"linli run: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("zigpy") is None:
        # The demo's homes have Zigbee sensors (a simulated network, but zigpy's own stack).
        print("linli demo needs the zigbee extra: .venv/bin/pip install -e '.[zigbee]'", file=sys.stderr)
        return 2
    return asyncio.run(_demo(args))


async def _demo(args: argparse.Namespace) -> int:
    from edge.broker import EmbeddedBroker
    from edge.config import load_config
    from edge.daemon import Controller, StartupError, run_until_signalled
    from edge.demo import CAMERA, default_data_dir, write_demo_site
    from edge.demo_devices import (
        GUARD_CODE,
        RESIDENT_CODE,
        RESIDENTS,
        VISITOR_PIN,
        AlarmPassersby,
        DemoDevices,
        IntercomPassersby,
        Passersby,
        seed_access_data,
    )

    data_dir = (args.data_dir or default_data_dir()).absolute()
    logging.getLogger("zigpy").setLevel(logging.WARNING)  # its interviews of the demo's devices drown the banner
    password = args.admin_password or os.environ.get("LINLI_ADMIN_PASSWORD") or secrets.token_urlsafe(9)
    broker = None
    broker_url = args.broker
    if broker_url is None:
        broker = EmbeddedBroker()
        await broker.start()
        broker_url = broker.url
    data_dir.mkdir(parents=True, exist_ok=True)
    devices = DemoDevices(data_dir)  # OSDP readers, the fence's Modbus module and the intercom on ptys
    await devices.start()
    try:
        # The embedded broker speaks only MQTT 3.1.1: skip the MQTT 5 attempt.
        protocol = "3.1.1" if broker is not None else "auto"
        site = write_demo_site(
            data_dir, broker_url, args.http_port, password, not args.no_zeroconf, protocol, devices.port,
            devices.modbus_port, intercom_port=devices.intercom_port, camera=True,
        )
        config = load_config(site)
        await seed_access_data(data_dir, config.site.timezone)
        controller = Controller(config, site)
        controller.simulator = devices  # the web page's simulator panel drives it
        devices.attach(controller)  # Li Wei's Zigbee sensors are on the daemon's simulated network
        controller.extra_tasks["passersby"] = Passersby(devices, RESIDENTS, rate=args.rate / 2).run
        # An alarm scenario a minute or so at the default rate, a fence alarm every few minutes.
        controller.extra_tasks["alarm-passersby"] = AlarmPassersby(devices, controller, rate=args.rate / 60).run
        # A visitor at the gate's intercom every minute or two at the default rate; Li Wei's pass first.
        controller.extra_tasks["intercom-passersby"] = IntercomPassersby(devices, controller, rate=args.rate / 60).run
        url = f"http://127.0.0.1:{args.http_port}/"
        banner = [
            "",
            "Linli demo is running. Open the web page and log in:",
            f"  web page   {url}",
            f"  login      admin / {password}",
            f"  resident   li-wei / {password}  (apartment 3-201: her home's alarm)",
            f"  alarm      codes: perimeter {GUARD_CODE.code} (guard), home 3-201 {RESIDENT_CODE.code} (Li Wei)",
            f"  visitor    PIN {VISITOR_PIN} at the gate panel: Li Wei's pass for a guest (log in as li-wei "
            "to issue more)",
            f"  camera     {CAMERA}: a pedestrian clip at 2 fps, detections and the guard's patrol round on the page",
            f"  MQTT       {broker_url}  (topics linli/maple-court/gate-1/#)",
            f"  data       {data_dir}",
            f"  live feed  linli events tail --url {url} --user admin",
            f"  a card     linli sim --data-dir {data_dir} card --reader gate-reader --card {RESIDENTS[0].card}",
            f"  a beam     linli sim --data-dir {data_dir} beam north on    (the perimeter is armed)",
            f"  a visitor  linli sim --data-dir {data_dir} call 3-201   then   answer 3-201 / unlock 3-201",
            "Press Ctrl-C to stop.",
            "",
        ]
        await run_until_signalled(controller, on_started=lambda: print("\n".join(banner), flush=True))
    except StartupError as exc:
        print(f"linli demo: {exc}", file=sys.stderr)
        return 2
    finally:
        await devices.stop()
        if broker is not None:
            await broker.stop()
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    from edge.demo import default_data_dir
    from edge.demo_devices import send_command

    match args.sim_command:
        case "card":
            line = f"card {args.reader} {args.card}" + ("" if args.facility is None else f" {args.facility}")
        case "pin":
            line = f"pin {args.reader} {args.pin}"
        case "keys":
            line = f"keys {args.reader} {args.keys}"
        case "exit":
            line = f"exit {args.reader}"
        case "zone" | "beam":
            line = f"{args.sim_command} {args.name} {args.state}"
        case "sirens":
            line = "sirens"
        case "call" | "answer" | "unlock" | "hangup":
            line = f"{args.sim_command} {args.apartment}"
        case "code":
            line = f"code {args.digits}"
        case "qr":
            line = f"qr {args.token}"
        case _:  # door, tamper
            line = f"{args.sim_command} {args.reader} {args.state}"
    data_dir = (args.data_dir or default_data_dir()).absolute()
    try:
        reply = asyncio.run(send_command(data_dir, line))
    except ConnectionError as exc:
        print(f"linli sim: {exc}", file=sys.stderr)
        return 2
    status, _, text = reply.partition(" ")
    print(text, file=sys.stdout if status == "ok" else sys.stderr)
    return 0 if status == "ok" else 1


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from edge.audit import verify_file
    from edge.config import ConfigError, load_config

    if args.journal is not None:
        path = args.journal
    else:
        try:
            path = load_config(args.config).journal_path
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
    if not path.exists():
        print(f"no journal at {path}", file=sys.stderr)
        return 2
    report = verify_file(path)
    span = f"seq {report.first_seq}..{report.last_seq}" if report.first_seq is not None else "no entries yet"
    if report.ok:
        print(f"audit trail intact: {report.checked} entries re-hashed, {report.pruned} pruned by retention ({span})")
        print(f"head {report.head}")
        return 0
    print(f"audit trail BROKEN at seq {report.broken_seq} (event {report.broken_id or 'unknown'}): {report.reason}")
    print(f"{report.checked} entries before it verified; compare the head with the platform's audit.checkpoint events")
    return 1


def cmd_hash_password(args: argparse.Namespace) -> int:
    from argon2 import PasswordHasher

    password = os.environ.get("LINLI_PASSWORD") or getpass.getpass("password: ")
    if len(password) < 8:
        print("use at least 8 characters", file=sys.stderr)
        return 2
    print(PasswordHasher().hash(password))
    return 0


def cmd_hash_code(args: argparse.Namespace) -> int:
    """An alarm user code's code_hash, under the box's PIN key (in the site file's data_dir)."""
    from edge.alarm import hash_code
    from edge.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    code = os.environ.get("LINLI_CODE") or getpass.getpass("alarm code (4-8 digits): ")
    try:
        print(hash_code(config.data_dir, code))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


def cmd_events_tail(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_tail(args))
    except KeyboardInterrupt:
        return 0


def format_event(event: dict[str, object]) -> str:
    when = str(event.get("time", ""))[:19].replace("T", " ")
    data = json.dumps(event.get("data", {}), ensure_ascii=False, separators=(", ", ": "))
    severity = str(event.get("severity", "")).upper()
    return f"{when}  {severity:8} {event.get('type', ''):28} {event.get('source', ''):18} {data}"


async def _tail(args: argparse.Namespace) -> int:
    import aiohttp

    base = args.url.rstrip("/")
    headers = {}
    async with aiohttp.ClientSession() as session:
        token = args.token or os.environ.get("LINLI_TOKEN")
        if not token:
            password = os.environ.get("LINLI_PASSWORD") or getpass.getpass(f"password for {args.user}: ")
            async with session.post(f"{base}/api/login", json={"username": args.user, "password": password}) as r:
                if r.status != 200:
                    print(f"login failed ({r.status}): {await r.text()}", file=sys.stderr)
                    return 2
                token = (await r.json())["token"]
        headers["Authorization"] = f"Bearer {token}"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with session.get(f"{base}/api/events/stream", headers=headers, timeout=timeout) as resp:
            if resp.status != 200:
                print(f"cannot open the event stream ({resp.status}): {await resp.text()}", file=sys.stderr)
                return 2
            async for raw in resp.content:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line.startswith("data:"):
                    continue
                try:
                    event = json.loads(line[5:].strip())
                except json.JSONDecodeError:
                    continue
                if isinstance(event, dict) and "type" in event:
                    print(format_event(event), flush=True)
    return 0


# ---- parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="linli", description="Linli neighbourhood edge controller")
    parser.add_argument("--version", action="version", version=f"linli {__version__}")
    parser.add_argument("--log-json", action="store_true", help="log as JSON lines")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the daemon with a site file")
    p.add_argument("--config", "-c", required=True, type=Path, help="the site YAML file")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run the daemon with simulated devices, an embedded broker and the web page")
    p.add_argument("--broker", help="use this broker (mqtt://HOST:PORT) instead of the embedded one")
    p.add_argument("--http-port", type=int, default=8080, help="web page and API port (default 8080)")
    p.add_argument("--data-dir", type=Path, help="where the demo keeps its journal (default ~/.local/share/linli/demo)")
    p.add_argument("--admin-password", help="the admin's password (default: generated and printed)")
    p.add_argument("--rate", type=float, default=1.0, help="simulated scenarios per second (default 1)")
    p.add_argument("--no-zeroconf", action="store_true", help="do not advertise on the local network")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("sim", help="act on a running demo's simulated devices (present a card, type a PIN...)")
    p.add_argument("--data-dir", type=Path, help="the demo's data folder (default ~/.local/share/linli/demo)")
    sims = p.add_subparsers(dest="sim_command", required=True, metavar="ACTION")
    s = sims.add_parser("card", help="present a card (26-bit) at a reader")
    s.add_argument("--reader", required=True, help="gate-reader or lobby-reader")
    s.add_argument("--card", required=True, type=int, help="card number")
    s.add_argument("--facility", type=int, help="facility code (default: the demo's, 42)")
    s = sims.add_parser("pin", help="type a PIN and # at a reader's keypad")
    s.add_argument("--reader", required=True)
    s.add_argument("--pin", required=True)
    s = sims.add_parser("keys", help="press keys at a reader's keypad, e.g. *11234# (arm its alarm partition)")
    s.add_argument("--reader", required=True)
    s.add_argument("keys", help="digits, * and #")
    s = sims.add_parser("door", help="open or close the door (its position sensor)")
    s.add_argument("--reader", required=True)
    s.add_argument("state", choices=["open", "close"])
    s = sims.add_parser("exit", help="press the request-to-exit button")
    s.add_argument("--reader", required=True)
    s = sims.add_parser("tamper", help="open or close the reader's tamper switch")
    s.add_argument("--reader", required=True)
    s.add_argument("state", choices=["on", "off"])
    s = sims.add_parser("zone", help="trip (on) or restore (off) an alarm zone's sensor: beam, door, motion, smoke")
    s.add_argument("name", metavar="ZONE", help="fence-north, fence-east, plant-room, fence-tamper, 3-201-door, "
                   "3-201-motion, 3-201-smoke")
    s.add_argument("state", choices=["on", "off"])
    s = sims.add_parser("beam", help="break (on) or clear (off) a fence beam")
    s.add_argument("name", choices=["north", "east"])
    s.add_argument("state", choices=["on", "off"])
    sims.add_parser("sirens", help="show what the simulated sirens are doing")
    apartments = "3-201, 3-402, 5-101, 7-1203"
    s = sims.add_parser("call", help="dial an apartment at the gate's intercom panel")
    s.add_argument("apartment", metavar="APARTMENT", help=apartments)
    for verb, text in (("answer", "answer"), ("unlock", "press unlock on"), ("hangup", "hang up")):
        s = sims.add_parser(verb, help=f"{text} an apartment's indoor unit (or the guard desk's: guard)")
        s.add_argument("apartment", metavar="APARTMENT", help=f"{apartments} or guard")
    s = sims.add_parser("code", help="type a code at the gate panel's keypad (a visitor pass PIN)")
    s.add_argument("digits")
    s = sims.add_parser("qr", help="show a visitor pass's QR token to the gate panel's scanner")
    s.add_argument("token")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("check-config", help="validate a site file; prints FILE:LINE:COL errors")
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("config-schema", help="print the site file's JSON Schema (for editors)")
    p.set_defaults(func=cmd_config_schema)

    p = sub.add_parser("hash-password", help="print an argon2 hash for a user's password_hash")
    p.set_defaults(func=cmd_hash_password)

    p = sub.add_parser("hash-code", help="print an alarm user code's code_hash (keyed with this box's PIN key)")
    p.add_argument("--config", "-c", required=True, type=Path, help="the site file (finds its data_dir)")
    p.set_defaults(func=cmd_hash_code)

    p = sub.add_parser("audit", help="the tamper-evident audit trail")
    audit_cmds = p.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")
    v = audit_cmds.add_parser("verify", help="check the journal's hash chain; names the first broken entry")
    where = v.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", "-c", type=Path, help="the site file (finds its journal)")
    where.add_argument("--journal", type=Path, help="a journal file")
    v.set_defaults(func=cmd_audit_verify)

    p = sub.add_parser("events", help="work with events")
    events = p.add_subparsers(dest="events_command", required=True, metavar="SUBCOMMAND")
    t = events.add_parser("tail", help="follow live events, human-readable")
    t.add_argument("--url", default="http://127.0.0.1:8080/", help="the controller's web address")
    t.add_argument("--user", default="admin")
    t.add_argument("--token", help="a bearer token (or LINLI_TOKEN); otherwise log in as --user")
    t.set_defaults(func=cmd_events_tail)
    return parser


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that allocates its own malloc arena; with the camera workers and
    onnxruntime's threads the daemon's memory was seen to double now and then (558 MB instead of
    ~260 with two cameras). Two arenas keep it flat on a 1-2 GB box; elsewhere this does nothing."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc (e.g. musl): nothing to limit
        ctypes.CDLL(name).mallopt(-8, arenas)  # -8: M_ARENA_MAX


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_json, args.verbose)
    if args.command in ("run", "demo"):
        limit_malloc_arenas()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
