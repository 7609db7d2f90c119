"""The Zigbee device kinds Linli knows, and what each needs from a device's interview."""

from __future__ import annotations

from typing import Literal, get_args

Kind = Literal["contact", "motion", "smoke", "water", "vibration", "siren", "lock", "relay"]
KINDS: tuple[str, ...] = get_args(Kind)

# IAS Zone sensors: their zone (Alarm_1 bit) is the point `zone` of the device.
ZONE_KINDS = frozenset({"contact", "motion", "smoke", "water", "vibration"})

# Server clusters a device of the kind must have (firmware_profiles/zigbee-*.yaml list the same).
REQUIRED_CLUSTERS: dict[str, frozenset[int]] = {
    **{kind: frozenset({0x0000, 0x0500}) for kind in ZONE_KINDS},
    "siren": frozenset({0x0000, 0x0502}),
    "lock": frozenset({0x0000, 0x0101}),
    "relay": frozenset({0x0000, 0x0006}),
}

# Silence after which a device counts as offline. Sleepy IAS sensors check in (battery report or
# supervision notification) every 5-60 minutes depending on the make; mains devices answer pings.
DEFAULT_OFFLINE_AFTER_S: dict[str, float] = {
    **{kind: 2 * 3600.0 for kind in ZONE_KINDS},
    "siren": 15 * 60.0,
    "lock": 2 * 3600.0,
    "relay": 15 * 60.0,
}

# Mains-powered kinds stay awake: the driver pings them when they have been quiet for a while.
MAINS_KINDS = frozenset({"siren", "relay"})
