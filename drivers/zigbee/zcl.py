"""ZCL frame helpers shared by the driver and the simulator: parse and build frames with zigpy's own
cluster definitions, without a zigpy Device or Endpoint behind them."""

from __future__ import annotations

from typing import Any

import zigpy.types as t
from zigpy.zcl import Cluster, foundation

HA_PROFILE = 0x0104


def cluster_class(cluster_id: int) -> type[Cluster] | None:
    return Cluster._registry.get(cluster_id)  # type: ignore[no-any-return]


def parse(cluster_id: int, data: bytes) -> tuple[foundation.ZCLHeader, Any]:
    """Header and command of a ZCL frame; the command is None when zigpy does not know it.

    Raises ValueError (or zigpy's own deserialisation errors, all ValueError/KeyError subclasses) on a
    truncated or malformed frame.
    """
    hdr, rest = foundation.ZCLHeader.deserialize(data)
    if hdr.frame_control.frame_type == foundation.FrameType.CLUSTER_COMMAND:
        cls = cluster_class(cluster_id)
        if cls is None:
            return hdr, None
        to_client = hdr.direction == foundation.Direction.Server_to_Client
        commands = cls.client_commands if to_client else cls.server_commands
        definition = commands.get(hdr.command_id)
        if definition is None:
            return hdr, None
        cmd, _ = definition.schema.deserialize(rest)
        return hdr, cmd
    if hdr.command_id not in foundation.GENERAL_COMMANDS:
        return hdr, None
    cmd, _ = foundation.GENERAL_COMMANDS[foundation.GeneralCommand(hdr.command_id)].schema.deserialize(rest)
    return hdr, cmd


def general_frame(tsn: int, command: foundation.GeneralCommand, *, to_client: bool, **fields: Any) -> bytes:
    direction = foundation.Direction.Server_to_Client if to_client else foundation.Direction.Client_to_Server
    hdr = foundation.ZCLHeader.general(tsn, command, direction=direction)
    hdr.frame_control = hdr.frame_control.replace(disable_default_response=True)
    return bytes(hdr.serialize() + foundation.GENERAL_COMMANDS[command].schema(**fields).serialize())


def cluster_frame(tsn: int, cluster_id: int, name: str, *, to_client: bool, **fields: Any) -> bytes:
    """A cluster-specific command by name, e.g. (0x0500, "status_change_notification")."""
    cls = cluster_class(cluster_id)
    assert cls is not None, f"unknown cluster 0x{cluster_id:04x}"
    defs = cls.ClientCommandDefs if to_client else cls.ServerCommandDefs
    definition = getattr(defs, name)
    direction = foundation.Direction.Server_to_Client if to_client else foundation.Direction.Client_to_Server
    hdr = foundation.ZCLHeader.cluster(tsn, definition.id, direction=direction)
    return bytes(hdr.serialize() + definition.schema(**fields).serialize())


def attribute_value(cluster_id: int, attr_id: int, value: Any) -> foundation.TypeValue:
    """A typed value for an attribute record, typed as the cluster defines the attribute."""
    cls = cluster_class(cluster_id)
    assert cls is not None
    definition = cls.attributes[attr_id]
    return foundation.TypeValue(type=definition.zcl_type, value=definition.type(value))


def report_frame(tsn: int, cluster_id: int, values: dict[int, Any]) -> bytes:
    reports = [foundation.Attribute(attrid=a, value=attribute_value(cluster_id, a, v)) for a, v in values.items()]
    return general_frame(tsn, foundation.GeneralCommand.Report_Attributes, to_client=True, attribute_reports=reports)


def eui64(text: str) -> t.EUI64:
    return t.EUI64.convert(text)
