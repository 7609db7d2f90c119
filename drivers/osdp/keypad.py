"""Collect keypad presses into a PIN: digits until Enter ('#'), cleared by '*', abandoned on timeout.

OSDP readers send key codes as ASCII digits, with 0x7F for '*' and 0x0D for '#' (some send the
ASCII '*' and '#' themselves; both are accepted).

A '*' pressed before any digit starts a function entry instead: `*` FUNCTION-DIGIT CODE `#` (e.g.
`*1` + code + `#` to arm the alarm away at a keypad that controls a partition). A second '*'
cancels it like it clears a PIN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ENTER = frozenset({0x0D, ord("#")})
CLEAR = frozenset({0x7F, ord("*")})

Outcome = tuple[Literal["pin", "function"], str] | tuple[Literal["abandoned"], str, int]


@dataclass
class PinCollector:
    timeout: float = 5.0
    max_digits: int = 12
    _digits: list[str] = field(default_factory=list)
    _deadline: float | None = None
    _overflowed: bool = False  # ignore further digits until Enter, Clear or the timeout
    _function: bool = False  # the entry began with '*': a function digit and a code follow

    @property
    def pending(self) -> int:
        return len(self._digits)

    def feed(self, keys: bytes, now: float) -> list[Outcome]:
        """Returns ("pin", digits) or ("function", digits) for each completed entry, and
        ("abandoned", reason, length) for entries that were not."""
        out: list[Outcome] = []
        for key in keys:
            if ord("0") <= key <= ord("9"):
                self._deadline = now + self.timeout
                if self._overflowed:
                    continue
                if len(self._digits) >= self.max_digits:
                    out.append(("abandoned", "too_long", len(self._digits) + 1))
                    self._digits.clear()
                    self._overflowed = True
                    continue
                self._digits.append(chr(key))
            elif key in ENTER:
                if self._digits:
                    out.append(("function" if self._function else "pin", "".join(self._digits)))
                self._reset()
            elif key in CLEAR:
                if self._digits or self._function:
                    if self._digits:
                        out.append(("abandoned", "cleared", len(self._digits)))
                    self._reset()
                else:
                    self._function = True
                    self._deadline = now + self.timeout
        return out

    def expire(self, now: float) -> Outcome | None:
        if self._deadline is None or now < self._deadline:
            return None
        length = len(self._digits)
        self._reset()
        return ("abandoned", "timeout", length) if length else None

    def _reset(self) -> None:
        self._digits.clear()
        self._deadline = None
        self._overflowed = False
        self._function = False
