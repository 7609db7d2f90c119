"""Home Assistant MQTT discovery: the retained config messages that make a controller show up in HA.

Pure functions only; the uplink publishes what these return. A feature that wants an entity adds
an `Entity` to the list it passes to `Discovery.messages`: the device, origin, availability and
unique id are filled in here, so every entity gets them the same way.

The payload keys follow Home Assistant's MQTT platform schemas (`homeassistant/components/mqtt/`:
binary_sensor, sensor, event and the shared entity schema). HA silently drops keys it does not
know, so tests validate every payload against `edge/schema/mqtt.json` to catch a misspelt key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.events import Event
from edge.topics import Topics, discovery_node_id

MANUFACTURER = "Linli"
MODEL = "Linli edge controller"

# The controller's own event types that its HA `event` entity declares. HA refuses (and logs) an
# event whose type is not declared, so only these are forwarded to the `ha/event` topic.
CONTROLLER_EVENT_TYPES: tuple[str, ...] = (
    "system.started",
    "config.applied",
    "config.rejected",
    "journal.pruned",
    "supervisor.task_crashed",
    "command.executed",
    "command.rejected",
    "uplink.connected",
    "uplink.disconnected",
    "uplink.publish_refused",
)
CONTROLLER_SOURCE = "controller"


@dataclass(frozen=True)
class Entity:
    """One HA entity: its platform (`component`), an id unique within the controller, and the
    component-specific options (state_topic, value_template, device_class, ...)."""

    component: str
    object_id: str
    name: str | None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Discovery:
    prefix: str
    topics: Topics
    version: str
    controller_name: str = ""

    @property
    def node_id(self) -> str:
        return discovery_node_id(self.topics.site, self.topics.controller)

    def device(self) -> dict[str, Any]:
        return {
            "identifiers": [self.node_id],
            "name": self.controller_name or f"Linli {self.topics.site} {self.topics.controller}",
            "manufacturer": MANUFACTURER,
            "model": MODEL,
            "sw_version": self.version,
        }

    def origin(self) -> dict[str, Any]:
        # No support_url: the project has no public home yet, and HA treats the key as optional.
        return {"name": "Linli", "sw_version": self.version}

    def topic(self, entity: Entity) -> str:
        return f"{self.prefix}/{entity.component}/{self.node_id}/{entity.object_id}/config"

    def payload(self, entity: Entity) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "name": entity.name,
            "unique_id": f"{self.node_id}_{entity.object_id}",
            "device": self.device(),
            "origin": self.origin(),
            "availability": [
                {
                    "topic": self.topics.status,
                    "payload_available": "online",
                    "payload_not_available": "offline",
                }
            ],
        }
        payload.update(entity.options)
        return payload

    def messages(self, entities: Iterable[Entity]) -> list[tuple[str, dict[str, Any]]]:
        return [(self.topic(e), self.payload(e)) for e in entities]

    def removals(self, entities: Iterable[Entity]) -> list[str]:
        """Topics to clear (empty retained payload) when discovery is turned off or moved."""
        return [self.topic(e) for e in entities]


def controller_entities(topics: Topics) -> list[Entity]:
    """The entities every controller has: uplink connectivity, outbox backlog, its own events."""
    return [
        Entity(
            "binary_sensor",
            "status",
            "Uplink",
            {
                "state_topic": topics.status,
                "payload_on": "online",
                "payload_off": "offline",
                "device_class": "connectivity",
                "entity_category": "diagnostic",
            },
        ),
        Entity(
            "sensor",
            "outbox_depth",
            "Outbox backlog",
            {
                "state_topic": topics.controller_state,
                "value_template": "{{ value_json.outbox_depth }}",
                "state_class": "measurement",
                "unit_of_measurement": "events",
                "icon": "mdi:tray-full",
                "entity_category": "diagnostic",
            },
        ),
        Entity(
            "event",
            "events",
            "Controller events",
            {
                "state_topic": topics.ha_event,
                "event_types": list(CONTROLLER_EVENT_TYPES),
            },
        ),
    ]


def forwards_to_ha(event: Event) -> bool:
    return event.source == CONTROLLER_SOURCE and event.type in CONTROLLER_EVENT_TYPES


def ha_event_payload(event: Event) -> dict[str, Any]:
    """What the `event` entity reads: HA takes `event_type`, the rest become event attributes."""
    return {"event_type": event.type, "event_id": event.id, "severity": str(event.severity)}


# ---- doors (access control) ------------------------------------------------------------------------

LOCKED, UNLOCKED = "LOCKED", "UNLOCKED"
PAYLOAD_LOCK, PAYLOAD_UNLOCK = "LOCK", "UNLOCK"
# A door's HA `event` entity carries its access decisions, named as HA event types.
DOOR_EVENT_TYPES: dict[str, str] = {"access.granted": "granted", "access.denied": "denied"}


def door_state_key(door_id: str) -> str:
    """The door's `state/<key>` level: `door.<id>`, which no device id can take (device ids have no dots)."""
    return f"door.{door_id}"


def door_entities(
    topics: Topics,
    door_id: str,
    name: str,
    *,
    unlockable: bool,
    has_dps: bool,
    tamper_readers: Iterable[str] = (),
) -> list[Entity]:
    """A door: its lock (a `lock` HA may unlock where the site file allows it, otherwise a read-only
    `binary_sensor` of class lock), its position sensor, its readers' tamper and its decisions."""
    state_topic = topics.state(door_state_key(door_id))
    lock_template = "{{ value_json.lock }}"
    key = door_id.replace("-", "_")
    entities: list[Entity] = []
    if unlockable:
        entities.append(
            Entity(
                "lock",
                f"door_{key}_lock",
                f"{name} lock",
                {
                    "state_topic": state_topic,
                    "value_template": lock_template,
                    "state_locked": LOCKED,
                    "state_unlocked": UNLOCKED,
                    "command_topic": topics.ha_command(door_state_key(door_id)),
                    "payload_lock": PAYLOAD_LOCK,
                    "payload_unlock": PAYLOAD_UNLOCK,
                    "optimistic": False,
                },
            )
        )
    else:
        entities.append(
            Entity(
                "binary_sensor",
                f"door_{key}_lock",
                f"{name} lock",
                {
                    "state_topic": state_topic,
                    "value_template": "{{ 'ON' if value_json.lock == 'UNLOCKED' else 'OFF' }}",
                    "device_class": "lock",  # HA: on means unlocked
                },
            )
        )
    if has_dps:
        entities.append(
            Entity(
                "binary_sensor",
                f"door_{key}_open",
                f"{name}",
                {
                    "state_topic": state_topic,
                    # Unknown until the DPS first reports: HA shows that as unknown, not closed.
                    "value_template": "{{ {true: 'ON', false: 'OFF'}.get(value_json.open, 'None') }}",
                    "device_class": "door",
                },
            )
        )
    for reader in tamper_readers:
        entities.append(
            Entity(
                "binary_sensor",
                f"reader_{reader.replace('-', '_')}_tamper",
                f"{reader} tamper",
                {
                    "state_topic": topics.state(reader),
                    "value_template": "{{ 'ON' if value_json.tamper else 'OFF' }}",
                    "device_class": "tamper",
                    "entity_category": "diagnostic",
                },
            )
        )
    entities.append(
        Entity(
            "event",
            f"door_{key}_access",
            f"{name} access",
            {
                "state_topic": topics.ha_entity_event(door_state_key(door_id)),
                "event_types": list(DOOR_EVENT_TYPES.values()),
            },
        )
    )
    return entities


def door_event_payload(event: Event) -> dict[str, Any]:
    """A decision as the door's HA event: the type, and who/why as attributes (never a PIN: the
    decision events carry none)."""
    data = event.data
    payload: dict[str, Any] = {"event_type": DOOR_EVENT_TYPES[event.type], "event_id": event.id}
    for field_name in ("reason", "holder", "reader"):
        if data.get(field_name) is not None:
            payload[field_name] = data[field_name]
    return payload
