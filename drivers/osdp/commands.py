"""Build the command dicts libosdp's binding takes, with the field limits the binding imposes."""

from __future__ import annotations

import math
from typing import Any

import osdp_sys

# The binding copies timer fields through uint8_t, so 100 ms units top out at 25.5 s.
MAX_TIMER_UNITS = 255
MAX_TEXT = 32  # OSDP_CMD_TEXT_MAX_LEN

OUTPUT_PERMANENT_OFF = 1  # abort any timed operation
OUTPUT_PERMANENT_ON = 2
OUTPUT_TEMPORARY_ON = 5  # back to the permanent state when the timer ends

LED_SET = 1
LED_TEMPORARY_SET = 2
BUZZER_DEFAULT_TONE = 2
TEXT_PERMANENT = 1
TEXT_TEMPORARY = 3

Command = dict[str, Any]


def units_100ms(ms: int) -> int:
    return max(1, min(MAX_TIMER_UNITS, math.ceil(ms / 100)))


def output(output_no: int, on: bool, duration_ms: int = 0) -> Command:
    if not on:
        code, timer = OUTPUT_PERMANENT_OFF, 0
    elif duration_ms > 0:
        code, timer = OUTPUT_TEMPORARY_ON, units_100ms(duration_ms)
    else:
        code, timer = OUTPUT_PERMANENT_ON, 0
    return {"command": osdp_sys.CMD_OUTPUT, "output_no": output_no, "control_code": code, "timer_count": timer}


def led(
    color: int, *, duration_ms: int = 0, flash_ms: int = 0, off_color: int | None = None, led_number: int = 0
) -> Command:
    """Steady `color`, or flashing (`flash_ms` on, `flash_ms` off); temporary when `duration_ms` > 0."""
    on = units_100ms(flash_ms) if flash_ms else 1
    off = units_100ms(flash_ms) if flash_ms else 0
    if off_color is None:
        off_color = osdp_sys.LED_COLOR_NONE if flash_ms else color
    cmd: Command = {
        "command": osdp_sys.CMD_LED,
        "reader": 0,
        "led_number": led_number,
        "on_color": color,
        "off_color": off_color,
        "on_count": on,
        "off_count": off,
        "temporary": duration_ms > 0,
        "control_code": LED_TEMPORARY_SET if duration_ms > 0 else LED_SET,
    }
    if duration_ms > 0:
        cmd["timer_count"] = units_100ms(duration_ms)
    return cmd


def buzzer(on_ms: int = 100, off_ms: int = 100, repeat: int = 1) -> Command:
    return {
        "command": osdp_sys.CMD_BUZZER,
        "reader": 0,
        "control_code": BUZZER_DEFAULT_TONE,
        "on_count": units_100ms(on_ms),
        "off_count": units_100ms(off_ms) if off_ms else 0,
        "rep_count": max(1, min(255, repeat)),
    }


def text(message: str, *, row: int = 1, col: int = 1, duration_s: int = 0) -> Command:
    # Readers show ASCII; anything else becomes '?' rather than bytes the display cannot draw.
    clean = "".join(c if 32 <= ord(c) < 127 else "?" for c in message)
    if len(clean) > MAX_TEXT:
        raise ValueError(f"reader text is limited to {MAX_TEXT} characters, got {len(clean)}")
    return {
        "command": osdp_sys.CMD_TEXT,
        "reader": 0,
        "control_code": TEXT_TEMPORARY if duration_s > 0 else TEXT_PERMANENT,
        "temp_time": max(0, min(255, duration_s)),
        "offset_row": row,
        "offset_col": col,
        "data": clean,
    }
