"""A door's hardware configuration, its lock mode, and the relay state that mode calls safe.

The relay is commanded in logical terms, ``locked`` / ``unlocked``; the driver maps that onto the
coil. Both usual lock types are wired so that an unpowered lock is in the mode's safe state, which
is why "safe" survives a power cut, a crash or a dead bus without any software at all:

- ``fail_safe`` (maglock): powered = locked, unpowered = unlocked. Safe means people can get out.
- ``fail_secure`` (electric strike): powered = unlocked, unpowered = locked. Safe means the door
  stays shut; people get out by the mechanical lever, which building codes require on such doors.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rules.access.model import ID_PATTERN


class LockMode(StrEnum):
    FAIL_SAFE = "fail_safe"
    FAIL_SECURE = "fail_secure"


class RelayState(StrEnum):
    LOCKED = "locked"
    UNLOCKED = "unlocked"


class RexAction(StrEnum):
    UNLOCK = "unlock"  # REX releases the lock for the strike time and shunts the DPS
    SHUNT = "shunt"  # egress is mechanical (a lever): REX only shunts the DPS so the opening is not forced


def safe_relay_state(lock_mode: LockMode) -> RelayState:
    """What the relay must be at boot, after a crash and under any fault: decided by the lock mode alone."""
    return RelayState.UNLOCKED if lock_mode is LockMode.FAIL_SAFE else RelayState.LOCKED


def lock_powered(lock_mode: LockMode, relay: RelayState) -> bool:
    """Whether the lock is energised in ``relay`` state: never in the safe state (see the module docstring)."""
    return relay is not safe_relay_state(lock_mode)


class DoorSettings(BaseModel):
    """One door's behaviour. Times in seconds.

    ``held_open_pre_alarm_s`` is how long *before* the held-open alarm the warning comes (0: no
    warning). Holders who need more time (``extended`` grants, for accessibility) get
    ``extended_unlock_s`` instead of ``strike_s`` and ``extended_held_open_s`` instead of
    ``held_open_s``. ``relock_on_close``: a momentary unlock also ends as soon as the door closes
    after the person went through, so nobody can follow on the rest of the strike time.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    door_id: str = Field(pattern=ID_PATTERN)
    lock_mode: LockMode = LockMode.FAIL_SECURE  # the same default as edge.config's DoorConfig
    strike_s: float = Field(default=5.0, gt=0, le=600)
    extended_unlock_s: float = Field(default=15.0, gt=0, le=600)
    held_open_s: float = Field(default=30.0, gt=0, le=86_400)
    extended_held_open_s: float = Field(default=60.0, gt=0, le=86_400)
    held_open_pre_alarm_s: float = Field(default=10.0, ge=0, le=86_400)
    rex_action: RexAction = RexAction.UNLOCK
    relock_on_close: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.extended_unlock_s < self.strike_s:
            raise ValueError("extended_unlock_s must not be shorter than strike_s")
        if self.extended_held_open_s < self.held_open_s:
            raise ValueError("extended_held_open_s must not be shorter than held_open_s")
        if self.held_open_pre_alarm_s >= self.held_open_s:
            raise ValueError("held_open_pre_alarm_s must be shorter than held_open_s (it is a warning before it)")
        return self

    @property
    def safe_relay_state(self) -> RelayState:
        return safe_relay_state(self.lock_mode)
