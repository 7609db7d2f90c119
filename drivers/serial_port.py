"""The `port` of an RS-485 bus in the site file, the same for every driver: a serial device path, or
`socket://host:port` for a ser2net server (pyserial's URL handler opens both)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field


def check_serial_port(value: str) -> str:
    if value.startswith("socket://"):
        if not re.fullmatch(r"socket://[^/\s:]+:\d{1,5}", value):
            raise ValueError("a ser2net port is socket://host:port")
    elif not value.startswith("/"):
        raise ValueError("a serial port is an absolute path (e.g. /dev/ttyUSB0) or socket://host:port")
    return value


SerialPort = Annotated[
    str,
    Field(min_length=1, description="serial device path, or socket://host:port (ser2net)"),
    AfterValidator(check_serial_port),
]
