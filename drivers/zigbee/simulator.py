"""A fake Zigbee radio at zigpy's ControllerApplication level, with simulated devices that answer ZCL.

zigpy itself runs unchanged above it: joins, interviews (node descriptor, active endpoints, simple
descriptors, Basic attributes), IAS enrolment, commands and their responses all travel as real
ZDO/ZCL frames through `send_packet` and `packet_received`. Only the radio (and the air) is fake:

    network = SimNetwork()
    sensor = network.add("contact", "00:0d:6f:00:00:00:00:01")
    app = SimulatedApplication.for_network(network, database_path=None)
    await app.startup(auto_form=True)
    await app.permit(60)
    await sensor.join()            # Device_annce -> zigpy interviews it
    sensor.set_zone(alarm=True)    # IAS Zone status change notification

The network's NVRAM (network settings) outlives an application, like a real stick's does, so tests
can restart the application or restore a backup onto a blank "stick".
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import zigpy.application
import zigpy.config as zconf
import zigpy.exceptions
import zigpy.state
import zigpy.types as t
import zigpy.zdo.types as zdo_t
from zigpy.zcl import foundation
from zigpy.zcl.clusters.closures import DoorLock
from zigpy.zcl.clusters.general import Basic, Identify, OnOff, PowerConfiguration
from zigpy.zcl.clusters.security import IasWd, IasZone, ZoneState, ZoneStatus, ZoneType

from drivers.zigbee import zcl
from drivers.zigbee.kinds import KINDS, Kind

log = logging.getLogger(__name__)

COORDINATOR_IEEE = "00:12:4b:00:00:00:00:01"


@dataclass(frozen=True)
class Profile:
    device_type: int
    in_clusters: tuple[int, ...]
    mains: bool
    zone_type: ZoneType | None = None


_SENSOR = (Basic.cluster_id, PowerConfiguration.cluster_id, Identify.cluster_id, IasZone.cluster_id)
PROFILES: dict[str, Profile] = {
    "coordinator": Profile(0x0400, (Basic.cluster_id,), True),
    "contact": Profile(0x0402, _SENSOR, False, ZoneType.Contact_Switch),
    "motion": Profile(0x0402, _SENSOR, False, ZoneType.Motion_Sensor),
    "smoke": Profile(0x0402, _SENSOR, False, ZoneType.Fire_Sensor),
    "water": Profile(0x0402, _SENSOR, False, ZoneType.Water_Sensor),
    "vibration": Profile(0x0402, _SENSOR, False, ZoneType.Vibration_Movement_Sensor),
    "siren": Profile(0x0403, (Basic.cluster_id, Identify.cluster_id, IasZone.cluster_id, IasWd.cluster_id), True,
                     ZoneType.Standard_Warning_Device),
    "lock": Profile(0x000A, (Basic.cluster_id, PowerConfiguration.cluster_id, DoorLock.cluster_id), False),
    "relay": Profile(0x0100, (Basic.cluster_id, Identify.cluster_id, OnOff.cluster_id), True),
}
assert set(PROFILES) == {"coordinator", *KINDS}


@dataclass
class Received:
    """A cluster command a simulated device was sent, for tests to check."""

    cluster: int
    command: str
    args: dict[str, Any]


class SimDevice:
    """One simulated Zigbee device: answers ZDO and ZCL requests with real frames."""

    ENDPOINT = 1

    def __init__(self, network: SimNetwork, ieee: str, kind: Kind | str, nwk: int) -> None:
        self.network = network
        self.ieee = t.EUI64.convert(ieee)
        self.nwk = t.NWK(nwk)
        self.kind = kind
        self.profile = PROFILES[kind]
        self.powered = True  # False: no answers, nothing delivered to it (a dead battery, out of range)
        self.received: list[Received] = []
        self.attrs: dict[tuple[int, int], Any] = {
            (Basic.cluster_id, Basic.AttributeDefs.manufacturer.id): "Linli",
            (Basic.cluster_id, Basic.AttributeDefs.model.id): f"sim-{kind}",
            (Basic.cluster_id, Basic.AttributeDefs.power_source.id): 1 if self.profile.mains else 3,
        }
        if self.profile.zone_type is not None:
            self.attrs |= {
                (IasZone.cluster_id, IasZone.AttributeDefs.zone_state.id): ZoneState.Not_enrolled,
                (IasZone.cluster_id, IasZone.AttributeDefs.zone_type.id): self.profile.zone_type,
                (IasZone.cluster_id, IasZone.AttributeDefs.zone_status.id): ZoneStatus(0),
                (IasZone.cluster_id, IasZone.AttributeDefs.cie_addr.id): t.EUI64.convert("00:00:00:00:00:00:00:00"),
                (IasZone.cluster_id, IasZone.AttributeDefs.zone_id.id): 0xFF,
            }
        if PowerConfiguration.cluster_id in self.profile.in_clusters:
            self.attrs[(PowerConfiguration.cluster_id, 0x0021)] = 200  # battery_percentage_remaining, half-%
        if kind == "lock":
            self.attrs[(DoorLock.cluster_id, DoorLock.AttributeDefs.lock_state.id)] = DoorLock.LockState.Locked
        if kind == "relay":
            self.attrs[(OnOff.cluster_id, OnOff.AttributeDefs.on_off.id)] = t.Bool.false
        self._tsn = itertools.count(1)

    # ---- what a test or the demo does with the device ------------------------------------------

    async def join(self) -> None:
        """Join through the open permit-join window and announce itself; zigpy then interviews it."""
        await self.network.join(self)

    def announce(self) -> None:
        """Device_annce: a known device coming back (after a power cycle or a restart of the radio)."""
        self.network.announce(self)

    @property
    def zone_status(self) -> ZoneStatus:
        return ZoneStatus(self.attrs[(IasZone.cluster_id, IasZone.AttributeDefs.zone_status.id)])

    @property
    def zone_state(self) -> ZoneState:
        return ZoneState(self.attrs[(IasZone.cluster_id, IasZone.AttributeDefs.zone_state.id)])

    @property
    def cie_addr(self) -> t.EUI64:
        return t.EUI64(self.attrs[(IasZone.cluster_id, IasZone.AttributeDefs.cie_addr.id)])

    def set_zone(self, *, alarm: bool | None = None, tamper: bool | None = None,
                 battery_low: bool | None = None, trouble: bool | None = None) -> None:
        """Change the IAS zone status bits and send a status change notification."""
        status = self.zone_status
        for bit, value in ((ZoneStatus.Alarm_1, alarm), (ZoneStatus.Tamper, tamper),
                           (ZoneStatus.Battery, battery_low), (ZoneStatus.Trouble, trouble)):
            if value is not None:
                status = status | bit if value else status & ~bit
        self.notify(ZoneStatus(status))

    def notify(self, status: ZoneStatus, tsn: int | None = None) -> None:
        """Send a zone status change notification with exactly these bits (also to repeat one). A
        fixed `tsn` makes byte-identical frames, as a retransmission or a device that never advances
        its sequence number sends."""
        self.attrs[(IasZone.cluster_id, IasZone.AttributeDefs.zone_status.id)] = status
        zone_id = self.attrs[(IasZone.cluster_id, IasZone.AttributeDefs.zone_id.id)]
        self.send(IasZone.cluster_id, zcl.cluster_frame(
            self.tsn() if tsn is None else tsn, IasZone.cluster_id, "status_change_notification", to_client=True,
            zone_status=status, extended_status=0, zone_id=zone_id, delay=0))

    def report(self, cluster_id: int, values: dict[int, Any]) -> None:
        """An attribute report, e.g. the battery check-in of a sleepy sensor."""
        for attr, value in values.items():
            self.attrs[(cluster_id, attr)] = value
        self.send(cluster_id, zcl.report_frame(self.tsn(), cluster_id, values))

    def check_in(self) -> None:
        """A periodic check-in: the battery report a sleepy sensor sends every few minutes."""
        if PowerConfiguration.cluster_id in self.profile.in_clusters:
            self.report(PowerConfiguration.cluster_id, {0x0021: self.attrs[(PowerConfiguration.cluster_id, 0x0021)]})
        else:
            self.report(Basic.cluster_id, {Basic.AttributeDefs.power_source.id: 1})

    def commands(self, name: str) -> list[Received]:
        return [r for r in self.received if r.command == name]

    def tsn(self) -> int:
        return next(self._tsn) % 256

    def send(self, cluster_id: int, data: bytes, *, profile: int = zcl.HA_PROFILE, src_ep: int = ENDPOINT) -> None:
        if self.powered:
            self.network.to_coordinator(self, profile, cluster_id, src_ep, src_ep if src_ep else 0, data)

    # ---- answering the coordinator -------------------------------------------------------------------

    def handle(self, packet: t.ZigbeePacket) -> None:
        data = packet.data.serialize()
        if packet.dst_ep == 0:
            self._zdo(packet.cluster_id, data)
        elif packet.profile_id == zcl.HA_PROFILE and packet.dst_ep == self.ENDPOINT:
            self._zcl(packet.cluster_id, data)

    def _zdo(self, cluster_id: int, data: bytes) -> None:
        tsn = data[0]
        ok = zdo_t.Status.SUCCESS.serialize() + self.nwk.serialize()
        if cluster_id == zdo_t.ZDOCmd.Node_Desc_req:
            body = ok + self._node_descriptor().serialize()
        elif cluster_id == zdo_t.ZDOCmd.Active_EP_req:
            body = ok + t.LVList[t.uint8_t]([self.ENDPOINT]).serialize()
        elif cluster_id == zdo_t.ZDOCmd.Simple_Desc_req:
            descriptor = zdo_t.SizePrefixedSimpleDescriptor(
                endpoint=self.ENDPOINT, profile=zcl.HA_PROFILE, device_type=self.profile.device_type,
                device_version=1, input_clusters=list(self.profile.in_clusters), output_clusters=[])
            body = ok + descriptor.serialize()
        elif cluster_id & 0x8000:
            return  # a response (the coordinator answering us): nothing to do
        else:
            body = zdo_t.Status.SUCCESS.serialize()  # Bind, Mgmt_Leave, Mgmt_Permit_Joining...
        self.send(cluster_id | 0x8000, bytes([tsn]) + body, profile=0x0000, src_ep=0)

    def _node_descriptor(self) -> zdo_t.NodeDescriptor:
        flags = zdo_t.NodeDescriptor.MACCapabilityFlags.AllocateAddress
        if self.profile.mains:
            flags |= (zdo_t.NodeDescriptor.MACCapabilityFlags.MainsPowered
                      | zdo_t.NodeDescriptor.MACCapabilityFlags.RxOnWhenIdle
                      | zdo_t.NodeDescriptor.MACCapabilityFlags.FullFunctionDevice)
        if self.kind == "coordinator":
            logical = zdo_t.LogicalType.Coordinator
        else:
            logical = zdo_t.LogicalType.Router if self.profile.mains else zdo_t.LogicalType.EndDevice
        return zdo_t.NodeDescriptor(
            logical_type=logical, complex_descriptor_available=0, user_descriptor_available=0, reserved=0,
            aps_flags=0, frequency_band=zdo_t.NodeDescriptor.FrequencyBand.Freq2400MHz,
            mac_capability_flags=flags, manufacturer_code=0x1234, maximum_buffer_size=82,
            maximum_incoming_transfer_size=82, server_mask=0, maximum_outgoing_transfer_size=82,
            descriptor_capability_field=zdo_t.NodeDescriptor.DescriptorCapability.NONE)

    def _zcl(self, cluster_id: int, data: bytes) -> None:
        try:
            hdr, cmd = zcl.parse(cluster_id, data)
        except (ValueError, KeyError):
            log.debug("simulated %s: unparsable frame %s", self.kind, data.hex())
            return
        if hdr.direction != foundation.Direction.Client_to_Server:
            return  # the coordinator's default responses to our notifications
        general = foundation.GeneralCommand
        if hdr.frame_control.is_general:
            if hdr.command_id == general.Read_Attributes:
                self._reply_general(hdr, cluster_id, general.Read_Attributes_rsp,
                                    status_records=[self._read(cluster_id, a) for a in cmd.attribute_ids])
            elif hdr.command_id == general.Write_Attributes:
                for record in cmd.attributes:
                    self.attrs[(cluster_id, record.attrid)] = record.value.value
                self._reply_general(hdr, cluster_id, general.Write_Attributes_rsp,
                                    status_records=[foundation.WriteAttributesStatusRecord(foundation.Status.SUCCESS)])
                if cluster_id == IasZone.cluster_id and any(r.attrid == 0x0010 for r in cmd.attributes):
                    self._request_enrolment()
            elif hdr.command_id == general.Configure_Reporting:
                self._reply_general(hdr, cluster_id, general.Configure_Reporting_rsp, status_records=[
                    foundation.ConfigureReportingResponseRecord(status=foundation.Status.SUCCESS)])
            return
        if cmd is None:
            self._default_response(hdr, cluster_id, foundation.Status.UNSUP_CLUSTER_COMMAND)
            return
        name = cmd.command.name if hasattr(cmd, "command") else type(cmd).__name__
        self.received.append(Received(cluster_id, name, cmd.as_dict()))
        self._command(hdr, cluster_id, name, cmd)

    def _command(self, hdr: foundation.ZCLHeader, cluster_id: int, name: str, cmd: Any) -> None:
        enrolled = cluster_id == IasZone.cluster_id and name == "enroll_response"
        if enrolled and cmd.enroll_response_code == IasZone.EnrollResponse.Success:
                self.attrs[(IasZone.cluster_id, IasZone.AttributeDefs.zone_state.id)] = ZoneState.Enrolled
                self.attrs[(IasZone.cluster_id, IasZone.AttributeDefs.zone_id.id)] = cmd.zone_id
        if cluster_id == DoorLock.cluster_id and name in ("lock_door", "unlock_door"):
            state = DoorLock.LockState.Locked if name == "lock_door" else DoorLock.LockState.Unlocked
            reply = zcl.cluster_frame(hdr.tsn, cluster_id, f"{name}_response", to_client=True,
                                      status=foundation.Status.SUCCESS)
            self.send(cluster_id, reply)
            self.report(cluster_id, {DoorLock.AttributeDefs.lock_state.id: state})
            return
        self._default_response(hdr, cluster_id, foundation.Status.SUCCESS)
        if cluster_id == OnOff.cluster_id and name in ("on", "off", "toggle"):
            current = bool(self.attrs[(OnOff.cluster_id, 0x0000)])
            new = {"on": True, "off": False, "toggle": not current}[name]
            self.report(OnOff.cluster_id, {0x0000: t.Bool(new)})

    def _read(self, cluster_id: int, attr: int) -> foundation.ReadAttributeRecord:
        if (cluster_id, attr) not in self.attrs:
            return foundation.ReadAttributeRecord(attrid=attr, status=foundation.Status.UNSUPPORTED_ATTRIBUTE)
        value = zcl.attribute_value(cluster_id, attr, self.attrs[(cluster_id, attr)])
        return foundation.ReadAttributeRecord(attrid=attr, status=foundation.Status.SUCCESS, value=value)

    def _reply_general(self, hdr: foundation.ZCLHeader, cluster_id: int, command: foundation.GeneralCommand,
                       **fields: Any) -> None:
        self.send(cluster_id, zcl.general_frame(hdr.tsn, command, to_client=True, **fields))

    def _default_response(self, hdr: foundation.ZCLHeader, cluster_id: int, status: foundation.Status) -> None:
        if not hdr.frame_control.disable_default_response or status != foundation.Status.SUCCESS:
            self._reply_general(hdr, cluster_id, foundation.GeneralCommand.Default_Response,
                                command_id=hdr.command_id, status=status)

    def _request_enrolment(self) -> None:
        """Written a CIE address: ask to be enrolled (the trip-to-pair flow of real IAS sensors)."""
        zone_type = self.attrs[(IasZone.cluster_id, IasZone.AttributeDefs.zone_type.id)]
        frame = zcl.cluster_frame(self.tsn(), IasZone.cluster_id, "enroll", to_client=True,
                                  zone_type=zone_type, manufacturer_code=0x1234)
        self.network.loop().call_soon(self.send, IasZone.cluster_id, frame)


class Coordinator(Protocol):
    """What receives the devices' frames: zigpy's application here, or the Z-Stack stand-in of znp_sim."""

    def packet_received(self, packet: t.ZigbeePacket) -> None: ...

    def handle_join(self, nwk: t.NWK, ieee: t.EUI64, parent_nwk: t.NWK) -> None: ...


class SimNetwork:
    """The air and the radio's NVRAM: simulated devices and the network settings the stick keeps."""

    def __init__(self) -> None:
        self.devices: dict[t.EUI64, SimDevice] = {}
        self.app: Coordinator | None = None
        self.nvram: tuple[zigpy.state.NetworkInfo, zigpy.state.NodeInfo] | None = None
        self.permit_until = 0.0
        self.sent: list[t.ZigbeePacket] = []  # everything the coordinator transmitted
        self._nwk = itertools.count(0x1001)
        self.coordinator = SimDevice(self, COORDINATOR_IEEE, "coordinator", 0x0000)

    @staticmethod
    def loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def add(self, kind: Kind, ieee: str | None = None) -> SimDevice:
        nwk = next(self._nwk)
        device = SimDevice(self, ieee or f"00:0d:6f:00:00:00:{nwk >> 8:02x}:{nwk & 0xFF:02x}", kind, nwk)
        self.devices[device.ieee] = device
        return device

    def device(self, ieee: str | t.EUI64) -> SimDevice:
        return self.devices[t.EUI64.convert(str(ieee))]

    @property
    def permitting(self) -> bool:
        return self.loop().time() < self.permit_until

    async def join(self, device: SimDevice) -> None:
        if self.app is None or not self.permitting:
            raise RuntimeError("the network is not open for joining")
        self.app.handle_join(device.nwk, device.ieee, t.NWK(0x0000))
        self.announce(device)

    def announce(self, device: SimDevice) -> None:
        data = bytes([device.tsn()]) + device.nwk.serialize() + device.ieee.serialize() + bytes([0x80])
        device.send(zdo_t.ZDOCmd.Device_annce, data, profile=0x0000, src_ep=0)

    def to_coordinator(self, device: SimDevice, profile: int, cluster: int, src_ep: int, dst_ep: int,
                       data: bytes) -> None:
        app = self.app
        if app is None:
            return
        packet = t.ZigbeePacket(
            src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=device.nwk), src_ep=src_ep,
            dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(0x0000)), dst_ep=dst_ep,
            tsn=data[0] if profile == 0 else None, profile_id=profile, cluster_id=cluster,
            data=t.SerializableBytes(data), lqi=200, rssi=-50)
        # Over the air, an answer comes after the request was sent: never from inside send_packet.
        self.loop().call_soon(app.packet_received, packet)

    def from_coordinator(self, packet: t.ZigbeePacket) -> None:
        self.sent.append(packet)
        if packet.dst.addr_mode == t.AddrMode.Broadcast or packet.dst.addr_mode == t.AddrMode.Group:
            return
        if packet.dst.addr_mode == t.AddrMode.IEEE:
            device = self.devices.get(packet.dst.address)
        elif packet.dst.address == 0x0000:
            device = self.coordinator
        else:
            device = next((d for d in self.devices.values() if d.nwk == packet.dst.address), None)
        if device is None or not device.powered:
            raise zigpy.exceptions.DeliveryError("no ACK from the destination (MAC_NO_ACK)", status=0xE9)
        device.handle(packet)


class SimulatedApplication(zigpy.application.ControllerApplication):
    """zigpy's ControllerApplication on a SimNetwork instead of a serial radio."""

    def __init__(self, config: dict[str, Any], network: SimNetwork | None = None) -> None:
        super().__init__(config)
        self.network = network or SimNetwork()

    @classmethod
    def for_network(cls, sim: SimNetwork, database_path: str | None = None,
                    **extra: Any) -> SimulatedApplication:
        config = {zconf.CONF_DEVICE: {zconf.CONF_DEVICE_PATH: "simulated"}, zconf.CONF_DATABASE: database_path,
                  zconf.CONF_OTA: {zconf.CONF_OTA_ENABLED: False}, zconf.CONF_NWK_BACKUP_ENABLED: False,
                  zconf.CONF_TOPO_SCAN_ENABLED: False, **extra}
        return cls(config, sim)

    async def connect(self) -> None:
        self.network.app = self

    async def disconnect(self) -> None:
        if self.network.app is self:
            self.network.app = None

    async def load_network_info(self, *, load_devices: bool = False) -> None:
        if self.network.nvram is None:
            raise zigpy.exceptions.NetworkNotFormed("the simulated stick has no network")
        self.state.network_info, self.state.node_info = self.network.nvram

    async def write_network_info(self, *, network_info: zigpy.state.NetworkInfo,
                                 node_info: zigpy.state.NodeInfo) -> None:
        # The stick keeps its own IEEE address unless the backup asks for another; it reports its
        # values typed, as a real stick does (zigpy's form_network passes a plain int NWK).
        ieee = self.network.coordinator.ieee if node_info.ieee == t.EUI64.UNKNOWN else node_info.ieee
        node_info = node_info.replace(ieee=ieee, nwk=t.NWK(node_info.nwk), model="sim-coordinator",
                                      manufacturer="Linli")
        self.network.coordinator.ieee = node_info.ieee
        self.network.nvram = (network_info, node_info)

    async def reset_network_info(self) -> None:
        self.network.nvram = None

    async def start_network(self) -> None:
        await self.load_network_info()
        self.devices[self.state.node_info.ieee] = zigpy.device.Device(
            self, self.state.node_info.ieee, self.state.node_info.nwk)
        task = self._device.schedule_initialize()
        if task is not None:
            await task

    async def send_packet(self, packet: t.ZigbeePacket) -> None:
        self.network.from_coordinator(packet)

    async def permit_ncp(self, time_s: int = 60) -> None:
        self.network.permit_until = self.network.loop().time() + time_s

    async def permit_with_link_key(self, node: t.EUI64, link_key: t.KeyData, time_s: int = 60) -> None:
        await self.permit_ncp(time_s)

    async def force_remove(self, dev: Any) -> None:
        return None

    async def add_endpoint(self, descriptor: zdo_t.SimpleDescriptor) -> None:
        return None


def app_factory(network: SimNetwork) -> Callable[[dict[str, Any]], SimulatedApplication]:
    """An `app_factory` for the driver: zigpy config in, an application on `network` out."""

    def make(config: dict[str, Any]) -> SimulatedApplication:
        return SimulatedApplication(config, network)

    return make
