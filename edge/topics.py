"""The MQTT topic tree of one controller (documented in edge/schema/mqtt.json and docs/mqtt.md).

Everything a controller publishes or listens to lives under `linli/<site>/<controller>/`; Home
Assistant discovery lives under its own prefix. Building topics in one place keeps the code and
the published schema from drifting apart.
"""

from __future__ import annotations

import re

ROOT = "linli"
# Device ids become one topic level: no separators, no wildcards, nothing a subscriber could
# mistake for a different part of the tree.
SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# `state/controller` carries the controller's own state, so no device may take that name.
RESERVED_STATE_IDS = frozenset({"controller"})


class Topics:
    def __init__(self, site: str, controller: str) -> None:
        self.site = site
        self.controller = controller
        self.base = f"{ROOT}/{site}/{controller}"
        self.status = f"{self.base}/status"
        self.events_prefix = f"{self.base}/events/"
        self.state_prefix = f"{self.base}/state/"
        self.controller_state = f"{self.state_prefix}controller"
        self.cmd_prefix = f"{self.base}/cmd/"
        self.cmd_filter = f"{self.cmd_prefix}#"
        self.cmd_result_prefix = f"{self.base}/cmd_result/"
        self.ha_event = f"{self.base}/ha/event"
        self.ha_event_prefix = f"{self.ha_event}/"
        # Home Assistant's commands (lock/unlock...). HA cannot sign, so these are authenticated by
        # the broker's ACL alone and features accept them only where the site file allows.
        self.ha_cmd_prefix = f"{self.base}/ha/cmd/"
        self.ha_cmd_filter = f"{self.ha_cmd_prefix}#"

    def event(self, event_type: str) -> str:
        return self.events_prefix + event_type

    def state(self, device_id: str) -> str:
        if not SEGMENT_RE.match(device_id) or device_id in RESERVED_STATE_IDS:
            raise ValueError(f"device id {device_id!r} cannot be used as a state topic level")
        return self.state_prefix + device_id

    def ha_entity_event(self, entity: str) -> str:
        """Where an entity's HA `event` messages go (e.g. a door's access decisions)."""
        return self.ha_event_prefix + _segment(entity)

    def ha_command(self, entity: str) -> str:
        return self.ha_cmd_prefix + _segment(entity)

    def cmd_result(self, command_id: str) -> str:
        # Callers pass only ids that passed commands.COMMAND_ID_RE; checked again because a
        # topic built from attacker text could land anywhere in the tree.
        if not SEGMENT_RE.match(command_id):
            raise ValueError("command id cannot be used as a topic level")
        return self.cmd_result_prefix + command_id


def _segment(value: str) -> str:
    if not SEGMENT_RE.match(value):
        raise ValueError(f"{value!r} cannot be used as a topic level")
    return value


def discovery_node_id(site: str, controller: str) -> str:
    return f"linli_{site}_{controller}"
