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
