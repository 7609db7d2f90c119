"""The site file's `vision:` section as the daemon reads it: vision/'s cameras and model, plus the rules
that watch them, `patrol` (rules/patrol) and `parking` (rules/parking). Joined here because vision/
never imports rules/.
"""

from __future__ import annotations

from pydantic import Field

from rules.parking import ParkingConfig
from rules.patrol import PatrolConfig
from vision.config import VisionSection


class VisionSiteSection(VisionSection):
    patrol: PatrolConfig | None = Field(None, description="guard tours: routes of checkpoints (rules/patrol)")
    parking: ParkingConfig | None = Field(None, description="lots, no-parking zones, fire lanes, gates with plate "
                                          "reading, the plate allow-list (rules/parking)")

    def wiring_problems(
        self, readers: set[str], doors: dict[str, list[str]]
    ) -> list[tuple[tuple[str | int, ...], str]]:
        """Patrol and parking against the cameras and zones here, and the OSDP readers and doors of the
        site file (``doors``: door id -> its remote_unlock origins). Paths start at ``vision``."""
        zones = {c.id: {z.id for z in c.zones} for c in self.cameras}
        problems: list[tuple[tuple[str | int, ...], str]] = []

        def camera_zone(loc: tuple[str | int, ...], camera: str | None, zone: str | None) -> None:
            if camera is None:
                return
            if camera not in zones:
                problems.append(((*loc, "camera"), f"no camera {camera!r} in vision.cameras"))
            elif zone is not None and zone not in zones[camera]:
                problems.append(((*loc, "zone"), f"camera {camera!r} has no zone {zone!r}"))

        if self.patrol is not None:
            for r, route in enumerate(self.patrol.routes):
                for c, checkpoint in enumerate(route.checkpoints):
                    loc: tuple[str | int, ...] = ("vision", "patrol", "routes", r, "checkpoints", c)
                    camera_zone(loc, checkpoint.camera, checkpoint.zone)
                    for i, reader in enumerate(checkpoint.readers):
                        if reader not in readers:
                            problems.append(((*loc, "readers", i), f"no OSDP reader {reader!r}"))
        if self.parking is not None:
            for i, lot in enumerate(self.parking.lots):
                camera_zone(("vision", "parking", "lots", i), lot.camera, None)
            for i, area in enumerate(self.parking.restricted):
                camera_zone(("vision", "parking", "restricted", i), area.camera, area.zone)
            for i, gate in enumerate(self.parking.gates):
                loc = ("vision", "parking", "gates", i)
                camera_zone(loc, gate.camera, None)
                if gate.door is None:
                    continue
                if gate.door not in doors:
                    problems.append(((*loc, "door"), f"no door {gate.door!r} in doors"))
                elif "vision" not in doors[gate.door]:
                    problems.append(((*loc, "door"), f"door {gate.door!r} does not list vision in its remote_unlock"))
        for c, camera in enumerate(self.cameras):
            if camera.pass_door is not None and camera.pass_door not in doors:
                problems.append((("vision", "cameras", c, "pass_door"), f"no door {camera.pass_door!r} in doors"))
        return problems
