"""The schema of a Zigbee device type's firmware profile (kind: zigbee_device), for hil_tests.profiles.

A profile says what a device of one Linli kind must show at its interview: the clusters (by
zigpy's names, e.g. `ias_zone`), the IAS zone type for sensors, mains or battery power, how often it
checks in, and the pairing test plan. drivers/zigbee/kinds.py's REQUIRED_CLUSTERS is the driver's
own minimum; a profile may ask for more, never less.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from zigpy.zcl import Cluster
from zigpy.zcl.clusters.security import ZoneType

from drivers.zigbee.kinds import REQUIRED_CLUSTERS, ZONE_KINDS, Kind

Text = Annotated[str, Field(min_length=1, max_length=2000)]
CheckName = Literal["join", "interview", "enrol", "trip", "restore", "tamper", "battery", "siren", "squawk",
                    "lock", "unlock", "switch_on", "switch_off", "offline"]


def cluster_ids() -> dict[str, int]:
    """zigpy's cluster names (ep_attribute) -> cluster id."""
    return {cls.ep_attribute: cluster_id for cluster_id, cls in Cluster._registry.items()
            if getattr(cls, "ep_attribute", None)}


def _known_cluster(name: str) -> str:
    if name not in cluster_ids():
        raise ValueError(f"unknown cluster {name!r} (use zigpy's names, e.g. basic, ias_zone, on_off)")
    return name


ClusterName = Annotated[str, AfterValidator(_known_cluster)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Clusters(_Strict):
    required: list[ClusterName] = Field(min_length=1, description="server clusters it must have")
    optional: list[ClusterName] = Field(default_factory=list, description="used when present")


class Check(_Strict):
    check: CheckName
    required: bool = True
    timeout_s: float = Field(60.0, gt=0, le=3600, description="how long to wait for the installer")


class Commissioning(_Strict):
    checks: list[Check] = Field(min_length=1)


class ZigbeeDeviceProfile(_Strict):
    kind: Literal["zigbee_device"]
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
    vendor: Text
    model: Text
    description: Text | None = None
    device_kind: Kind = Field(description="the site file's kind for this device")
    power: Literal["battery", "mains"]
    zone_type: str | None = Field(None, description="IAS zone type, zigpy's name (e.g. Contact_Switch)")
    clusters: Clusters
    checkin_max_s: float = Field(gt=0, le=7 * 86400, description="longest silence of a healthy device")
    commissioning: Commissioning

    @model_validator(mode="after")
    def _consistent(self) -> ZigbeeDeviceProfile:
        ids = cluster_ids()
        have = {ids[name] for name in self.clusters.required}
        missing = REQUIRED_CLUSTERS[self.device_kind] - have
        if missing:
            names = sorted(n for n, i in ids.items() if i in missing)
            raise ValueError(f"@clusters.required: a {self.device_kind} needs {', '.join(names)}")
        if self.device_kind in ZONE_KINDS:
            if self.zone_type is None or self.zone_type not in ZoneType.__members__:
                raise ValueError(f"@zone_type: an IAS sensor needs one of {', '.join(ZoneType.__members__)}")
        elif self.zone_type is not None and self.device_kind != "siren":
            raise ValueError(f"@zone_type: a {self.device_kind} is not an IAS zone")
        return self
