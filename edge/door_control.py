"""Doors seen and driven from outside: retained door/reader state, Home Assistant entities and commands.

The AccessService owns the doors; this module only presents them. `DoorPresence` publishes each
door's state (`state/door.<id>`) and each reader's (`state/<reader>`) when it changes, announces
the Home Assistant entities (edge.homeassistant.door_entities), routes the doors' decisions to
their HA `event` entities, and turns HA's lock commands into `remote_unlock` calls. Without an
uplink it does nothing but keep the latest state for the API.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from edge.events import Event
from edge.homeassistant import (
    DOOR_EVENT_TYPES,
    LOCKED,
    PAYLOAD_LOCK,
    PAYLOAD_UNLOCK,
    UNLOCKED,
    Entity,
    door_entities,
    door_event_payload,
    door_state_key,
)
from rules.door import DoorStatus, RelayState

if TYPE_CHECKING:
    from edge.config import DoorConfig

log = logging.getLogger(__name__)

UnlockFn = Callable[..., Awaitable[bool]]


class RemoteUnlockRefused(Exception):
    """A remote unlock that must not happen; `reason` is `unknown_door`, `not_allowed` or `not_running`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def door_state(status: DoorStatus) -> dict[str, Any]:
    """The door as the platform, Home Assistant and the web UI see it."""
    return {
        "lock": UNLOCKED if status.relay is RelayState.UNLOCKED else LOCKED,
        "open": status.door_open,
        "forced_open": status.forced_open,
        "held_open": status.held_open.value,
        "free_passage": status.free_passage,
        "lockdown": status.lockdown,
        "faults": sorted({kind.value for kind, _ in status.faults}),
    }


def reader_state(state: dict[str, Any]) -> dict[str, Any]:
    """The parts of the driver's reader state worth retaining (no counters that change every poll)."""
    return {
        "online": state["online"],
        "secure": state["secure"],
        "security_fault": state["security_fault"],
        "tamper": state["tamper"],
        "power_ok": state["power_ok"],
    }


class DoorPresence:
    def __init__(self, controller: Any, unlock: UnlockFn) -> None:
        self.controller = controller
        self._unlock = unlock
        self.states: dict[str, dict[str, Any]] = {}  # state key (door.<id> or reader id) -> last published
        self._entities: list[Entity] = []
        self._commands: list[str] = []
        self._doors_by_reader: dict[str, str] = {}

    @property
    def _uplink(self) -> Any:
        return getattr(self.controller, "uplink", None)

    def announce(self, doors: Iterable[DoorConfig], readers_at: dict[str, list[str]]) -> None:
        """Register the doors' HA entities, command handlers and event route (once per service start)."""
        self._doors_by_reader = {r: door for door, readers in readers_at.items() for r in readers}
        uplink = self._uplink
        if uplink is None:
            return
        topics = uplink.topics
        for door in doors:
            unlockable = "home_assistant" in door.remote_unlock
            self._entities += door_entities(
                topics,
                door.id,
                door.name or door.id,
                unlockable=unlockable,
                has_dps=door.dps is not None,
                tamper_readers=readers_at.get(door.id, []),
            )
            if unlockable:
                topic = topics.ha_command(door_state_key(door.id))
                uplink.ha_commands[topic] = self._ha_handler(door.id)
                self._commands.append(topic)
        uplink.ha_entities.extend(self._entities)
        uplink.ha_event_routes.append(self._route)
        uplink.request_discovery()

    def withdraw(self) -> None:
        """Undo `announce` (the service is stopping; a restarted one announces the new config)."""
        uplink = self._uplink
        if uplink is None:
            return
        uplink.ha_entities[:] = [e for e in uplink.ha_entities if e not in self._entities]
        for topic in self._commands:
            uplink.ha_commands.pop(topic, None)
        if self._route in uplink.ha_event_routes:
            uplink.ha_event_routes.remove(self._route)
        self._entities, self._commands = [], []

    def door_changed(self, door_id: str, status: DoorStatus) -> None:
        self._publish(door_state_key(door_id), door_state(status))

    def reader_changed(self, reader_id: str, state: dict[str, Any]) -> None:
        self._publish(reader_id, reader_state(state))

    def _publish(self, key: str, state: dict[str, Any]) -> None:
        if self.states.get(key) == state:
            return
        self.states[key] = state
        uplink = self._uplink
        if uplink is not None:
            uplink.set_state(key, state)  # never waits: the uplink keeps the latest state per key

    def _route(self, event: Event) -> tuple[str, dict[str, Any]] | None:
        if event.type not in DOOR_EVENT_TYPES:
            return None
        door = event.data.get("door")
        if not isinstance(door, str) or self._doors_by_reader.get(event.source) != door:
            return None
        return self._uplink.topics.ha_entity_event(door_state_key(door)), door_event_payload(event)

    def _ha_handler(self, door_id: str) -> Callable[[bytes], Awaitable[None]]:
        async def handle(payload: bytes) -> None:
            word = payload.decode("utf-8", "replace").strip()
            if word == PAYLOAD_UNLOCK:
                try:
                    await self._unlock(door_id, origin="home_assistant", actor="home_assistant")
                except RemoteUnlockRefused as exc:
                    log.warning("Home Assistant unlock of %s refused: %s", door_id, exc)
            elif word == PAYLOAD_LOCK:
                # Doors relock by themselves when the unlock time ends; HA's LOCK only refreshes
                # its view (it may have assumed a state), so the retained state goes out again.
                state = self.states.get(door_state_key(door_id))
                if state is not None and self._uplink is not None:
                    self._uplink.set_state(door_state_key(door_id), state)
            else:
                log.info("Home Assistant sent %.40r for door %s; expected %s", word, door_id, PAYLOAD_UNLOCK)

        return handle

