"""A small Z-Stack (TI ZNP) stand-in speaking MT frames over TCP, for zigpy-znp's `socket://host:port`.

MT framing is done here: SOF 0xFE, length, cmd0, cmd1, payload, FCS (XOR of length..payload).
Payloads are built with zigpy-znp's own command definitions (the same field layouts the real
firmware uses). Frames with a bad FCS are dropped and counted, like the firmware does; a command
the stand-in does not know is answered with the MT "command not recognized" RPC error, so the client
sees exactly what a real stick without that feature would say.

It answers what zigpy-znp 1.1 needs, found by running it: connect (SYS ping, struct alignment from
UTIL.AssocFindDevice, Z-Stack 3.30 detection from an extended NV read, SYS version), an NVRAM
(legacy OSAL items and 3.30 extended items, with the factory items zigpy-znp expects), the reset and
BDB commissioning steps that form and start a network, endpoint registration, routes, permit join,
and the air: AF/ZDO data requests go to the simulated devices of drivers/zigbee/simulator.py and
their frames come back as ZDO.MsgCbIncoming / AF.IncomingMsg / ZDO.TCDevInd callbacks.

    stick = ZStackServer()             # stick.network: a SimNetwork; add devices to it
    await stick.start()                # then point zigpy-znp at stick.url (socket://127.0.0.1:PORT)

`requests` lists the commands received, `unknown` those it had no answer for (UTIL.LEDControl:
zigpy-znp then notes the stick has no LED control, as with real firmware built without it).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

import zigpy.exceptions
import zigpy.types as zt
import zigpy.zdo.types as zdo_t
import zigpy_znp.commands as c
import zigpy_znp.types as t
from zigpy_znp.frames import GeneralFrame
from zigpy_znp.types.nvids import ExNvIds, NvSysIds, OsalNvIds

from drivers.zigbee.simulator import SimNetwork

log = logging.getLogger(__name__)

SOF = 0xFE
IEEE = t.EUI64.convert("00:12:4b:00:1c:aa:bb:cc")
CAPABILITIES = (t.MTCapabilities.SYS | t.MTCapabilities.MAC | t.MTCapabilities.AF | t.MTCapabilities.ZDO
                | t.MTCapabilities.SAPI | t.MTCapabilities.UTIL | t.MTCapabilities.APP | t.MTCapabilities.APP_CNF)


def fcs(body: bytes) -> int:
    value = 0
    for byte in body:
        value ^= byte
    return value


def encode(frame: GeneralFrame) -> bytes:
    header = frame.header.serialize()
    body = bytes([len(frame.data)]) + header + bytes(frame.data)
    return bytes([SOF]) + body + bytes([fcs(body)])


class FrameReader:
    """Splits a byte stream into MT frames (cmd0/cmd1 + payload); skips noise and bad FCS."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.bad_frames = 0

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.buffer += data
        frames = []
        while True:
            start = self.buffer.find(SOF)
            if start < 0:
                self.buffer.clear()
                return frames
            del self.buffer[:start]
            if len(self.buffer) < 5:
                return frames
            length = self.buffer[1]
            if length > 250:
                self.bad_frames += 1
                del self.buffer[:1]
                continue
            if len(self.buffer) < length + 5:
                return frames
            body = bytes(self.buffer[1:length + 4])
            checksum = self.buffer[length + 4]
            if fcs(body) != checksum:
                self.bad_frames += 1
                del self.buffer[:1]  # resynchronise on the next SOF
                continue
            del self.buffer[:length + 5]
            frames.append((body[1:3], body[3:]))


class ZStackServer:
    """One emulated coordinator stick; `await start()` and point zigpy-znp at `url`."""

    def __init__(self, network: SimNetwork | None = None) -> None:
        # The devices on the air: the same simulated devices the fake radio of simulator.py serves.
        self.network = network or SimNetwork()
        self.network.app = self
        self.network.coordinator.ieee = IEEE
        self.osal: dict[int, bytes] = {}  # legacy NV items
        self.exnv: dict[tuple[int, int, int], bytes] = {}  # (sys id, item id, sub id) -> value
        self.requests: list[str] = []  # names of the commands received, in order
        self.unknown: list[str] = []
        self.reader = FrameReader()
        self.endpoints: list[int] = []
        # Factory defaults: items Z-Stack creates on first boot (zigpy-znp writes some without creating them).
        self.osal[OsalNvIds.STARTUP_OPTION] = bytes([0])
        self.osal[OsalNvIds.APS_LINK_KEY_TABLE] = bytes(81)  # a count then 16 fixed-size slots
        for item in (OsalNvIds.CONCENTRATOR_ENABLE, OsalNvIds.CONCENTRATOR_DISCOVERY, OsalNvIds.CONCENTRATOR_RC,
                     OsalNvIds.SRC_RTG_EXPIRY_TIME, OsalNvIds.NWK_CHILD_AGE_ENABLE, OsalNvIds.BCAST_DELIVERY_TIME,
                     OsalNvIds.ZDO_DIRECT_CB):
            self.osal[item] = bytes(1)
        self._server: asyncio.Server | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._handlers: dict[type, Callable[[Any], list[Any]]] = {
            c.SYS.Ping.Req: lambda r: [c.SYS.Ping.Rsp(Capabilities=CAPABILITIES)],
            c.SYS.Version.Req: self._version,
            c.UTIL.AssocFindDevice.Req: lambda r: [c.UTIL.AssocFindDevice.Rsp(Device=t.Bytes(b"\xff" * 36))],
            c.SYS.OSALNVLength.Req: lambda r: [c.SYS.OSALNVLength.Rsp(ItemLen=len(self.osal.get(r.Id, b"")))],
            c.SYS.OSALNVReadExt.Req: self._osal_read,
            c.SYS.OSALNVRead.Req: self._osal_read,
            c.SYS.OSALNVItemInit.Req: self._osal_init,
            c.SYS.OSALNVWriteExt.Req: self._osal_write,
            c.SYS.OSALNVWrite.Req: self._osal_write,
            c.SYS.OSALNVDelete.Req: self._osal_delete,
            c.SYS.NVLength.Req: lambda r: [c.SYS.NVLength.Rsp(Length=len(self.exnv.get(self._ex(r), b"")))],
            c.SYS.NVRead.Req: self._nv_read,
            c.SYS.NVCreate.Req: self._nv_create,
            c.SYS.NVWrite.Req: self._nv_write,
            c.SYS.NVDelete.Req: self._nv_delete,
            c.SYS.ResetReq.Req: self._reset,
            c.AppConfig.BDBSetChannel.Req: self._set_channel,
            c.AppConfig.BDBStartCommissioning.Req: self._commission,
            c.AF.Register.Req: self._register,
            c.ZDO.MsgCallbackRegister.Req: lambda r: [c.ZDO.MsgCallbackRegister.Rsp(Status=t.Status.SUCCESS)],
            c.AF.DataRequestExt.Req: self._data_request,
            c.ZDO.MgmtPermitJoinReq.Req: self._permit,
            c.ZDO.ExtRouteChk.Req: self._route_check,
            c.ZDO.ExtRouteDisc.Req: lambda r: [c.ZDO.ExtRouteDisc.Rsp(Status=t.Status.SUCCESS)],
        }
        self.primary_channels = t.Channels.ALL_CHANNELS

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"socket://{host}:{port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        try:
            while data := await reader.read(4096):
                for header, payload in self.reader.feed(data):
                    self._dispatch(header, payload)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def send(self, *commands: Any) -> None:
        if self._writer is not None and not self._writer.is_closing():
            for command in commands:
                self._writer.write(encode(command.to_frame(align=True)))

    def _dispatch(self, header_bytes: bytes, payload: bytes) -> None:
        header, _ = t.CommandHeader.deserialize(header_bytes)
        request_type = c.COMMANDS_BY_ID.get(header)
        name = request_type.__qualname__ if request_type else f"0x{header_bytes.hex()}"
        self.requests.append(name)
        handler = self._handlers.get(request_type) if request_type else None
        if handler is None:
            self.unknown.append(name)
            log.debug("Z-Stack stand-in: no answer for %s", name)
            if header.type == t.CommandType.SREQ:
                self.send(c.RPCError.CommandNotRecognized.Rsp(
                    ErrorCode=c.rpc_error.ErrorCode.InvalidCommandId, RequestHeader=header))
            return
        try:
            request = request_type.from_frame(GeneralFrame(header, payload), align=True)
            self.send(*handler(request))
        except Exception:  # a bug in the stand-in must show, not hang the client until its timeout
            log.exception("Z-Stack stand-in: answering %s failed", name)
            raise

    # ---- SYS ---------------------------------------------------------------------------------------

    def _version(self, request: Any) -> list[Any]:
        build = c.sys.BootloaderBuildType.NON_BOOTLOADER_BUILD
        return [c.SYS.Version.Rsp(TransportRev=2, ProductId=1, MajorRel=2, MinorRel=7, MaintRel=1,
                                  CodeRevision=20230507, BootloaderBuildType=build, BootloaderRevision=0xFFFFFFFF)]

    def _reset(self, request: Any) -> list[Any]:
        startup = self.osal.get(OsalNvIds.STARTUP_OPTION, b"\x00")[0]
        if startup & t.StartupOptions.ClearState:
            for item in (OsalNvIds.NIB, OsalNvIds.BDBNODEISONANETWORK, OsalNvIds.NWK_ACTIVE_KEY_INFO,
                         OsalNvIds.NWK_ALTERN_KEY_INFO):
                self.osal.pop(item, None)
            self.exnv = {k: v for k, v in self.exnv.items() if k[1] != ExNvIds.NWK_SEC_MATERIAL_TABLE}
            self.osal[OsalNvIds.STARTUP_OPTION] = bytes([0])
        self.osal.setdefault(OsalNvIds.EXTADDR, IEEE.serialize())  # a deleted EXTADDR is the chip's own again
        return [c.SYS.ResetInd.Callback(Reason=t.ResetReason.PowerUp, TransportRev=2, ProductId=1, MajorRel=2,
                                        MinorRel=7, MaintRel=1)]

    # ---- network formation: what the firmware does on BDB commissioning --------------------------------

    def _set_channel(self, r: Any) -> list[Any]:
        if r.IsPrimary:
            self.primary_channels = r.Channel
        return [c.AppConfig.BDBSetChannel.Rsp(Status=t.Status.SUCCESS)]

    @property
    def formed(self) -> bool:
        return self.osal.get(OsalNvIds.BDBNODEISONANETWORK) == b"\x01" and OsalNvIds.NIB in self.osal

    def _commission(self, r: Any) -> list[Any]:
        status = c.app_config.BDBCommissioningStatus
        if self.formed:
            outcome = status.FormationFailure  # what Z-Stack answers when it is already on a network
        else:
            self._form()
            outcome = status.Success
        mode = c.app_config.BDBCommissioningMode
        return [
            c.AppConfig.BDBStartCommissioning.Rsp(Status=t.Status.SUCCESS),
            c.ZDO.StateChangeInd.Callback(State=t.DeviceState.StartingAsCoordinator),
            c.AppConfig.BDBCommissioningNotification.Callback(
                Status=status.InProgress, Mode=mode.NwkFormation, RemainingModes=mode.NwkFormation),
            c.ZDO.StateChangeInd.Callback(State=t.DeviceState.StartedAsCoordinator),
            c.AppConfig.BDBCommissioningNotification.Callback(
                Status=outcome, Mode=mode.NwkFormation, RemainingModes=mode.NONE),
        ]

    def _form(self) -> None:
        pan_id = int.from_bytes(self.osal.get(OsalNvIds.PANID, b"\xff\xff"), "little")
        if pan_id >= 0xFFFE:
            pan_id = int.from_bytes(os.urandom(2), "little") % 0xFFFD + 1
        ext_pan_id, _ = t.EUI64.deserialize(self.osal.get(OsalNvIds.APS_USE_EXT_PANID, os.urandom(8)))
        key = self.osal.get(OsalNvIds.PRECFGKEY, os.urandom(16))
        # The firmware would scan for the quietest: here, the lowest allowed channel.
        channels = [ch for ch in range(11, 27) if self.primary_channels & (1 << ch)]
        channel = channels[0] if channels else 11
        nib = t.NIB(**{f.name: _zero(f.type) for f in t.NIB.fields}).replace(
            SecurityLevel=5, nwkDevAddress=t.NWK(0x0000), nwkLogicalChannel=channel, nwkPanId=pan_id,
            nwkState=t.NwkState.NWK_ROUTER, channelList=t.Channels.from_channel_list([channel]),
            extendedPANID=ext_pan_id, nwkKeyLoaded=t.Bool.true, nwkCoordExtAddress=IEEE,
            nwkManagerAddr=t.NWK(0x0000))
        self.osal[OsalNvIds.NIB] = nib.serialize(align=True)
        self.osal[OsalNvIds.BDBNODEISONANETWORK] = b"\x01"
        self.osal.setdefault(OsalNvIds.EXTADDR, IEEE.serialize())
        self.osal[OsalNvIds.LOGICAL_TYPE] = bytes([t.DeviceLogicalType.Coordinator])
        self.osal[OsalNvIds.NWK_ACTIVE_KEY_INFO] = t.NwkKeyDesc(KeySeqNum=0, Key=t.KeyData(key)).serialize()
        self.osal[OsalNvIds.TCLK_SEED] = os.urandom(16)
        material = t.NwkSecMaterialDesc(FrameCounter=0, ExtendedPanID=ext_pan_id).serialize(align=True)
        self.exnv[(NvSysIds.ZSTACK, ExNvIds.NWK_SEC_MATERIAL_TABLE, 0)] = material

    def _register(self, r: Any) -> list[Any]:
        self.endpoints.append(int(r.Endpoint))
        return [c.AF.Register.Rsp(Status=t.Status.SUCCESS)]

    # ---- the air: AF/ZDO frames to and from the simulated devices -------------------------------------

    def _data_request(self, r: Any) -> list[Any]:
        zdo = r.DstEndpoint == 0
        packet = zt.ZigbeePacket(
            src=zt.AddrModeAddress(addr_mode=zt.AddrMode.NWK, address=zt.NWK(0x0000)), src_ep=r.SrcEndpoint,
            dst=r.DstAddrModeAddress.as_zigpy_type(), dst_ep=r.DstEndpoint, tsn=r.TSN,
            profile_id=0x0000 if zdo else 0x0104, cluster_id=r.ClusterId, data=zt.SerializableBytes(bytes(r.Data)))
        if zdo and r.ClusterId == zdo_t.ZDOCmd.Mgmt_Permit_Joining_req and len(r.Data) >= 2:
            self.network.permit_until = asyncio.get_running_loop().time() + r.Data[1]
        try:
            self.network.from_coordinator(packet)
            status = t.Status.SUCCESS
        except zigpy.exceptions.DeliveryError:
            status = t.Status.MAC_NO_ACK
        return [c.AF.DataRequestExt.Rsp(Status=t.Status.SUCCESS),
                c.AF.DataConfirm.Callback(Status=status, Endpoint=r.DstEndpoint, TSN=r.TSN)]

    def _route_check(self, r: Any) -> list[Any]:
        known = any(d.nwk == r.Dst and d.powered for d in self.network.devices.values())
        status = c.zdo.RoutingStatus.SUCCESS if known else c.zdo.RoutingStatus.NO_ENTRY
        return [c.ZDO.ExtRouteChk.Rsp(Status=status)]

    def _permit(self, r: Any) -> list[Any]:
        self.network.permit_until = asyncio.get_running_loop().time() + r.Duration
        return [c.ZDO.MgmtPermitJoinReq.Rsp(Status=t.Status.SUCCESS),
                c.ZDO.MgmtPermitJoinRsp.Callback(Src=0x0000, Status=zdo_t.Status.SUCCESS)]

    def packet_received(self, packet: zt.ZigbeePacket) -> None:
        """A simulated device transmitted: hand it to the host as the firmware would."""
        data = packet.data.serialize()
        src = packet.src.address
        if packet.profile_id == 0x0000:
            self.send(c.ZDO.MsgCbIncoming.Callback(
                Src=src, IsBroadcast=t.Bool.false, ClusterId=packet.cluster_id, SecurityUse=0, TSN=data[0],
                MacDst=0x0000, Data=t.Bytes(data[1:])))
        else:
            self.send(c.AF.IncomingMsg.Callback(
                GroupId=0x0000, ClusterId=packet.cluster_id, SrcAddr=src, SrcEndpoint=packet.src_ep,
                DstEndpoint=1, WasBroadcast=t.Bool.false, LQI=packet.lqi or 0, SecurityUse=t.Bool.false,
                TimeStamp=0, TSN=0, Data=t.ShortBytes(data), MacSrcAddr=src, MsgResultRadius=0))

    def handle_join(self, nwk: zt.NWK, ieee: zt.EUI64, parent_nwk: zt.NWK) -> None:
        self.send(c.ZDO.TCDevInd.Callback(SrcNwk=nwk, SrcIEEE=ieee, ParentNwk=parent_nwk))

    # ---- NVRAM ---------------------------------------------------------------------------------------

    def _osal_read(self, r: Any) -> list[Any]:
        rsp = c.SYS.OSALNVReadExt.Rsp if isinstance(r, c.SYS.OSALNVReadExt.Req) else c.SYS.OSALNVRead.Rsp
        if r.Id not in self.osal:
            return [rsp(Status=t.Status.INVALID_PARAMETER, Value=t.ShortBytes(b""))]
        return [rsp(Status=t.Status.SUCCESS, Value=t.ShortBytes(self.osal[r.Id][r.Offset:r.Offset + 244]))]

    def _osal_init(self, r: Any) -> list[Any]:
        if r.Id in self.osal:
            return [c.SYS.OSALNVItemInit.Rsp(Status=t.Status.SUCCESS)]
        self.osal[r.Id] = bytes(r.Value).ljust(r.ItemLen, b"\x00")[:r.ItemLen]
        return [c.SYS.OSALNVItemInit.Rsp(Status=t.Status.NV_ITEM_UNINIT)]

    def _osal_write(self, r: Any) -> list[Any]:
        rsp = c.SYS.OSALNVWriteExt.Rsp if isinstance(r, c.SYS.OSALNVWriteExt.Req) else c.SYS.OSALNVWrite.Rsp
        value = bytearray(self.osal.get(r.Id, b""))
        end = r.Offset + len(r.Value)
        value[r.Offset:end] = bytes(r.Value)
        self.osal[r.Id] = bytes(value)
        return [rsp(Status=t.Status.SUCCESS)]

    def _osal_delete(self, r: Any) -> list[Any]:
        found = self.osal.pop(r.Id, None) is not None
        return [c.SYS.OSALNVDelete.Rsp(Status=t.Status.SUCCESS if found else t.Status.NV_ITEM_UNINIT)]

    @staticmethod
    def _ex(r: Any) -> tuple[int, int, int]:
        return int(r.SysId), int(r.ItemId), int(r.SubId)

    def _nv_read(self, r: Any) -> list[Any]:
        key = self._ex(r)
        if key not in self.exnv:
            return [c.SYS.NVRead.Rsp(Status=t.Status.NV_OPER_FAILED, Value=t.ShortBytes(b""))]
        return [c.SYS.NVRead.Rsp(Status=t.Status.SUCCESS,
                                 Value=t.ShortBytes(self.exnv[key][r.Offset:r.Offset + r.Length]))]

    def _nv_create(self, r: Any) -> list[Any]:
        key = self._ex(r)
        if key in self.exnv:
            return [c.SYS.NVCreate.Rsp(Status=t.Status.NV_ITEM_UNINIT)]
        self.exnv[key] = b"\x00" * r.Length
        return [c.SYS.NVCreate.Rsp(Status=t.Status.SUCCESS)]

    def _nv_write(self, r: Any) -> list[Any]:
        key = self._ex(r)
        value = bytearray(self.exnv.get(key, b""))
        value[r.Offset:r.Offset + len(r.Value)] = bytes(r.Value)
        self.exnv[key] = bytes(value)
        return [c.SYS.NVWrite.Rsp(Status=t.Status.SUCCESS)]

    def _nv_delete(self, r: Any) -> list[Any]:
        found = self.exnv.pop(self._ex(r), None) is not None
        return [c.SYS.NVDelete.Rsp(Status=t.Status.SUCCESS if found else t.Status.NV_ITEM_UNINIT)]


def _zero(kind: Any) -> Any:
    if issubclass(kind, t.EUI64):
        return t.EUI64.convert("00:00:00:00:00:00:00:00")
    if issubclass(kind, t.NwkKeyDesc):
        return t.NwkKeyDesc(KeySeqNum=0, Key=t.KeyData(bytes(16)))
    return kind(0)
