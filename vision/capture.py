"""Camera capture: RTSP, HTTP/MJPEG and files through OpenCV's FFmpeg backend, in a thread per camera.

The thread opens the source (with FFmpeg's open and read timeouts set to the camera's `stall_s`, so a
stalled stream ends a blocking read instead of hanging it), keeps `detect.fps` frames per second
(skipped frames are only grabbed, not converted), scales them to the detect size, stamps them with
the wall-clock time and hands them to `on_frame`. A source that fails or ends is reopened with
exponential backoff; `on_state(online, reason)` reports each change. Files are read at
`detect.fps` in real time (or as fast as the consumer takes them, `realtime: false`), and may loop.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import cv2
import numpy as np

from vision.config import CameraConfig

log = logging.getLogger(__name__)

BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 30.0
MAX_BAD_FRAMES = 25  # failed reads in a row that still count as a corrupt frame, not a dead stream


@dataclass(frozen=True)
class Frame:
    camera: str
    index: int  # frames delivered since the capture started
    at: float  # UTC epoch seconds when it was read
    image: np.ndarray  # BGR, detect size


def source_path(url: str) -> str:
    """What to hand OpenCV: a file path for file:// URLs and plain paths, the URL otherwise."""
    if url.startswith("file://"):
        return unquote(urlparse(url).path)
    return url


def is_file(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


class CaptureError(Exception):
    pass


# RTSP over TCP, as Frigate does: over UDP a lost packet is a smeared frame, and many NATs drop it.
# OpenCV reads this once per capture; an operator's own setting wins.
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")


def open_capture(url: str, stall_s: float) -> cv2.VideoCapture:
    path = source_path(url)
    if is_file(url) and not Path(path).is_file():
        raise CaptureError(f"no such file: {path}")
    ms = int(stall_s * 1000)
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG,
                           [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
    if not cap.isOpened():
        cap.release()
        raise CaptureError(f"cannot open {redact(url)}")
    return cap


def redact(url: str) -> str:
    """The URL without its password, for logs and events."""
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


class Capture:
    """One camera's reader thread. `start()` then `stop()`; callbacks run on the reader thread."""

    def __init__(self, config: CameraConfig, on_frame: Callable[[Frame], None],
                 on_state: Callable[[bool, str], None]) -> None:
        self.config = config
        self.on_frame = on_frame
        self.on_state = on_state
        self.backoff_initial_s = BACKOFF_INITIAL_S
        self.backoff_max_s = BACKOFF_MAX_S
        self.frame_size: tuple[int, int] | None = None
        self.reconnects = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._online: bool | None = None
        self._index = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.config.id}", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _state(self, online: bool, reason: str) -> None:
        if online != self._online:
            self._online = online
            self.on_state(online, reason)

    def _run(self) -> None:
        delay = self.backoff_initial_s
        while not self._stop.is_set():
            try:
                cap = open_capture(self.config.url, self.config.stall_s)
            except CaptureError as exc:
                reason = str(exc)
            else:
                try:
                    reason = self._read(cap)
                except Exception as exc:  # OpenCV raises cv2.error on some broken streams
                    log.exception("camera %s: capture failed", self.config.id)
                    reason = f"capture failed: {exc}"
                finally:
                    cap.release()
                if self._online:
                    delay = self.backoff_initial_s  # it worked for a while: retry soon
            if self._stop.is_set():
                break
            self._state(False, reason)
            self.reconnects += 1
            self._stop.wait(delay)
            delay = min(delay * 2, self.backoff_max_s)

    def _read(self, cap: cv2.VideoCapture) -> str:
        """Deliver frames until the source fails or ends; returns why it stopped."""
        cfg = self.config
        period = 1 / cfg.detect.fps
        file = is_file(cfg.url)
        source_fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        # Files: keep every `step`-th frame, so a 10 fps file read at 5 fps shows 5 fps of its time.
        step = max(1, round(source_fps / cfg.detect.fps)) if file and source_fps > 0 else 1
        due = last_good = time.monotonic()
        n = failures = 0
        while not self._stop.is_set():
            keep = (n % step == 0) if file else time.monotonic() >= due
            n += 1
            if keep:
                ok, image = cap.read()
            else:
                ok, image = cap.grab(), None
                if ok:
                    failures, last_good = 0, time.monotonic()
                    continue
            if not ok or image is None:
                if file and cfg.loop and n > 1:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    n = 0
                    continue
                # A corrupt frame fails one read; a dead connection fails every read at once, a
                # stalled one blocks for stall_s. Give up on the second kind, not the first.
                failures += 1
                if file or failures > MAX_BAD_FRAMES or time.monotonic() - last_good >= cfg.stall_s:
                    return self._ended(cap, file)
                continue
            failures, last_good = 0, time.monotonic()
            if file and cfg.realtime:
                wait = due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
            due = max(due + period, time.monotonic() - period)  # a late frame does not cause a burst
            if cfg.detect.width and cfg.detect.height and image.shape[1::-1] != (cfg.detect.width,
                                                                                   cfg.detect.height):
                image = cv2.resize(image, (cfg.detect.width, cfg.detect.height), interpolation=cv2.INTER_AREA)
            self.frame_size = (image.shape[1], image.shape[0])
            self._state(True, "")
            self.on_frame(Frame(cfg.id, self._index, time.time(), image))
            self._index += 1
        return "stopped"

    def _ended(self, cap: cv2.VideoCapture, file: bool) -> str:
        return "end of file" if file else "stream ended or stalled"
