"""Vision benchmark: the camera pipeline against raw onnxruntime inference, on vtest.

Figures (targets from issue 8):
- `pipeline_ms`: the full per-frame pipeline (motion, letterbox, inference, decoding, NMS, filters,
  tracking, zones) per frame on which the detector ran, median; `raw_ms`: onnxruntime's
  `session.run` alone on the same frames' ready-made tensors, median. Measured interleaved, frame by
  frame, in the same run, so other load on the box hits both alike. `overhead_pct` (target <= 10).
- `motion_skip_pct`: share of detector calls skipped by motion gating on a still scene (one vtest
  frame repeated at 5 fps for 20 s of frame time; target >= 90).
- `cameras_at_5fps`: how many cameras the box can serve at 5 fps with every frame in motion (the
  worst case: detector on every frame), from the measured decode + pipeline cost per frame and all
  cores running one detector at a time (as the daemon does).
- `rss_mb_2cams`: resident memory of `linli run` with two file cameras at 5 fps (target <= 300 MB).
- stage breakdown: motion, letterbox + tensor, decoding + NMS + filters, tracking, each timed right after an
  inference as in the pipeline (median ms per detected frame).
- executor choice: frames/s for two cameras through one worker thread (the daemon's choice), two
  worker threads, and two worker processes (frames pickled across), each with the model's 2 threads.

    .venv/bin/python -m bench.vision [--quick] [--video PATH]     (from the repository root)

The default video is the 80-frame vtest excerpt in tests/data; `--video` takes the full vtest.avi
(Debian's opencv-doc: /usr/share/doc/opencv-doc/examples/data/vtest.avi).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from bench.common import machine
from tests.mosquitto import free_port
from vision.capture import Frame
from vision.config import CameraConfig, VisionSection
from vision.detect import Detector
from vision.motion import MotionDetector
from vision.pipeline import CameraPipeline

VTEST = Path(__file__).resolve().parent.parent / "tests" / "data" / "vtest-80.mp4"


def read_frames(path: Path, limit: int) -> tuple[list[np.ndarray], float]:
    """Frames and the median decode time per frame (ms)."""
    cap = cv2.VideoCapture(str(path))
    frames, decode = [], []
    while len(frames) < limit:
        t = time.perf_counter()
        ok, frame = cap.read()
        decode.append((time.perf_counter() - t) * 1000)
        if not ok:
            break
        frames.append(frame)
    if not frames:
        raise SystemExit(f"cannot read {path}")
    return frames, statistics.median(decode)


def make_pipeline(detector: Detector, fps: float = 5) -> CameraPipeline:
    camera = CameraConfig.model_validate({
        "id": "bench", "url": "bench.mp4", "detect": {"fps": fps},
        "zones": [{"id": "pavement", "points": [[0, 200], [768, 200], [768, 576], [0, 576]]}],
    })
    return CameraPipeline(camera, VisionSection(cameras=[camera]), detector)


def overhead(detector: Detector, frames: list[np.ndarray], rounds: int) -> tuple[float, float, int]:
    tensors = [detector.prepare(f)[0] for f in frames]
    for t in tensors[:3]:  # warm-up
        detector.infer(t)
    pipeline_ms: list[float] = []
    raw_ms: list[float] = []
    for _ in range(rounds):
        pipeline = make_pipeline(detector, fps=10)
        for i, (frame, tensor) in enumerate(zip(frames, tensors, strict=True)):
            t = time.perf_counter()
            detector.infer(tensor)
            raw_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            result = pipeline.process(Frame("bench", i, 1000 + i / 10, frame))
            if result.detected:
                pipeline_ms.append((time.perf_counter() - t) * 1000)
    return statistics.median(pipeline_ms), statistics.median(raw_ms), len(pipeline_ms)


def stages(detector: Detector, frames: list[np.ndarray], rounds: int) -> dict[str, float]:
    """Median ms per detected frame of each stage around the model, run as the pipeline runs them (each right
    after an inference, so with the caches as the pipeline finds them)."""
    times: dict[str, list[float]] = {"motion": [], "letterbox_tensor": [], "decode_nms_filters": [], "tracking": []}
    for _ in range(rounds):
        pipeline = make_pipeline(detector, fps=10)
        motion = MotionDetector((frames[0].shape[1], frames[0].shape[0]), pipeline.vision.motion)
        for i, frame in enumerate(frames):
            t0 = time.perf_counter()
            motion.detect(frame)
            t1 = time.perf_counter()
            tensor, box = detector.prepare(frame)
            t2 = time.perf_counter()
            outputs = detector.infer(tensor)
            t3 = time.perf_counter()
            found = detector.decode(outputs, box, frame.shape[1], frame.shape[0], pipeline.objects)
            t4 = time.perf_counter()
            pipeline.tracker.update(found, 1000 + i / 10)
            t5 = time.perf_counter()
            for name, ms in zip(times, (t1 - t0, t2 - t1, t4 - t3, t5 - t4), strict=True):
                times[name].append(ms * 1000)
    return {name: statistics.median(v) for name, v in times.items()}


def motion_skip(detector: Detector, still: np.ndarray, count: int) -> float:
    pipeline = make_pipeline(detector)
    for i in range(count):
        pipeline.process(Frame("bench", i, 1000 + i / 5, still.copy()))
    return 100 * pipeline.stats.skipped / pipeline.stats.frames


# ---- executors: threads or processes ----------------------------------------------------------------

_worker_pipelines: dict[int, CameraPipeline] = {}


def _process_in_worker(camera: int, index: int, frame: np.ndarray) -> int:
    if camera not in _worker_pipelines:
        _worker_pipelines[camera] = make_pipeline(Detector(VisionSection().model), fps=10)
    result = _worker_pipelines[camera].process(Frame("bench", index, 1000 + index / 10, frame))
    return len(result.objects)


def executor_fps(make: type[Executor], workers: int, frames: list[np.ndarray]) -> float:
    with make(max_workers=workers) as pool:  # type: ignore[call-arg]
        list(pool.map(_process_in_worker, [0, 1] * workers, [0] * 2 * workers, [frames[0]] * 2 * workers))  # load
        started = time.perf_counter()
        pending = []
        for i, frame in enumerate(frames):
            for camera in (0, 1):
                pending.append(pool.submit(_process_in_worker, camera, i + 1, frame))
        for future in pending:
            future.result()
        return 2 * len(frames) / (time.perf_counter() - started)


def threads_one_worker(frames: list[np.ndarray]) -> float:
    _worker_pipelines.clear()
    return executor_fps(ThreadPoolExecutor, 1, frames)


# ---- memory of a real daemon with two cameras --------------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def daemon_rss(video: Path, seconds: float) -> float:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site.yaml"
        cameras = "".join(
            f"    - {{id: cam{n}, url: '{video}', loop: true, detect: {{fps: 5}}}}\n" for n in (1, 2)
        )
        site.write_text(
            "site: {id: bench}\ncontroller: {id: gate-1}\ndata_dir: data\nuplink: {enabled: false}\n"
            f"zeroconf: {{enabled: false}}\napi: {{host: 127.0.0.1, port: {port}}}\n"
            f"vision:\n  cameras:\n{cameras}"
        )
        proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(site)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=0.5):
                        break
                except OSError:
                    time.sleep(0.1)
            peak = 0.0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                if proc.poll() is not None:
                    raise SystemExit("the daemon exited")
                peak = max(peak, rss_mb(proc.pid))
                time.sleep(0.5)
            return peak
        finally:
            proc.terminate()
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer frames and a shorter memory run")
    parser.add_argument("--video", type=Path, default=VTEST)
    args = parser.parse_args()
    limit, rounds, settle = (40, 1, 10.0) if args.quick else (200, 2, 30.0)

    frames, decode_ms = read_frames(args.video, limit)
    detector = Detector(VisionSection().model)
    print(f"video {args.video.name}: {len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}, "
          f"decode {decode_ms:.1f} ms/frame; model {detector.info.path.name}, {detector.config.threads} threads")
    pipeline_ms, raw_ms, runs = overhead(detector, frames, rounds)
    overhead_pct = 100 * (pipeline_ms - raw_ms) / raw_ms
    print(f"per detected frame: pipeline {pipeline_ms:.1f} ms, raw onnxruntime {raw_ms:.1f} ms "
          f"({runs} frames) -> overhead {overhead_pct:.1f} % (target <= 10 %)")
    stage_ms = stages(detector, frames, rounds)
    print("around the model, per detected frame: " + ", ".join(f"{k} {v:.2f} ms" for k, v in stage_ms.items())
          + f" (sum {sum(stage_ms.values()):.2f} ms)")
    skip = motion_skip(detector, frames[0], 100)
    print(f"still scene, 100 frames at 5 fps: {skip:.0f} % of detector calls skipped (target >= 90 %)")
    cameras = int(1000 // (5 * (pipeline_ms + decode_ms)))
    print(f"cameras at 5 fps with motion in every frame: {cameras} "
          f"(decode + pipeline = {decode_ms + pipeline_ms:.1f} ms per frame)")

    # Interleaved rounds: other load on the box shifts all three alike; medians reported.
    sample = frames[: max(10, limit // 4)]
    rates: dict[str, list[float]] = {"1 thread": [], "2 threads": [], "2 processes": []}
    for _ in range(rounds + 1):
        rates["1 thread"].append(threads_one_worker(sample))
        _worker_pipelines.clear()
        rates["2 threads"].append(executor_fps(ThreadPoolExecutor, 2, sample))
        rates["2 processes"].append(executor_fps(ProcessPoolExecutor, 2, sample))
    one_thread, two_threads, two_procs = (statistics.median(v) for v in rates.values())
    print(f"two cameras: one worker thread {one_thread:.1f} frames/s, two threads {two_threads:.1f}, "
          f"two processes {two_procs:.1f}")

    rss = daemon_rss(args.video, settle)
    print(f"linli run with 2 cameras at 5 fps: peak RSS {rss:.0f} MB over {settle:.0f} s (target <= 300 MB)")
    print(json.dumps({
        "bench": "vision", "machine": machine(), "video": args.video.name, "frames": len(frames),
        "pipeline_ms": round(pipeline_ms, 2), "raw_ms": round(raw_ms, 2), "overhead_pct": round(overhead_pct, 1),
        "decode_ms": round(decode_ms, 2), "motion_skip_pct": round(skip, 1), "cameras_at_5fps": cameras,
        "rss_mb_2cams": round(rss, 1), "fps_1_thread": round(one_thread, 1), "fps_2_threads": round(two_threads, 1),
        "fps_2_processes": round(two_procs, 1), "stages_ms": {k: round(v, 2) for k, v in stage_ms.items()},
    }))


if __name__ == "__main__":
    main()
