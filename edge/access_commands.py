"""Signed MQTT commands for the platform's versioned access sync (`access/snapshot`, `access/delta`)
and for remote unlocking (`door/unlock` {door, extended?}: only doors whose `remote_unlock` lists
`platform`).

The command's `args` object is the Snapshot or Delta itself (rules.access.model). Authentication,
replay protection and the size limit (`uplink.commands.max_bytes`, at most 1 MB: larger sites send
deltas) are the CommandRouter's. A stale delta is refused with reason `failed` and the stored
version in `issues`, telling the platform to send a snapshot.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from edge.commands import BadArgs, CommandRejected, CommandRouter
from edge.door_control import RemoteUnlockRefused
from rules.access import AccessDataError, Delta, Snapshot, StaleDeltaError, StaleSnapshotError

if TYPE_CHECKING:
    from edge.access import AccessService

NAMES = ("access/snapshot", "access/delta", "door/unlock")


def register_access_commands(router: CommandRouter, service: AccessService) -> None:
    async def snapshot(args: dict[str, Any]) -> dict[str, Any]:
        body = dict(args)
        allow_older = bool(body.pop("allow_older", False))
        return await _apply(service.replace_snapshot(_parse(Snapshot, body), "mqtt", allow_older=allow_older))

    async def delta(args: dict[str, Any]) -> dict[str, Any]:
        return await _apply(service.apply_delta(_parse(Delta, args), "mqtt"))

    async def door_unlock(args: dict[str, Any]) -> dict[str, Any]:
        door, extended = args.get("door"), args.get("extended", False)
        if not isinstance(door, str) or not isinstance(extended, bool) or set(args) - {"door", "extended"}:
            raise BadArgs("door/unlock takes {door: str, extended?: bool}")
        try:
            unlocked = await service.remote_unlock(door, origin="platform", actor="platform", extended=extended)
        except RemoteUnlockRefused as exc:
            raise CommandRejected("failed", str(exc), issues=[exc.reason]) from None
        return {"door": door, "unlocked": unlocked}

    async def _apply(change: Awaitable[int]) -> dict[str, Any]:
        try:
            version = await change
        except (StaleDeltaError, StaleSnapshotError) as exc:
            raise CommandRejected(
                "failed", f"{exc}; send a snapshot", issues=[f"stored version {service.store.version}"]
            ) from None
        except AccessDataError as exc:
            raise CommandRejected("failed", str(exc)) from None
        return {"version": version}

    router.register("access/snapshot", snapshot, replace=True)
    router.register("access/delta", delta, replace=True)
    router.register("door/unlock", door_unlock, replace=True)


def unregister_access_commands(router: CommandRouter) -> None:
    for name in NAMES:
        router.unregister(name)


def _parse(model: type[Snapshot] | type[Delta], args: dict[str, Any]) -> Any:
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(args)"
        raise BadArgs(f"{where}: {first['msg']}") from None
