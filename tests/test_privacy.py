"""Blurring faces and plates in images that leave the box (vision/privacy.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vision.plates import PlateReader
from vision.privacy import FaceDetector, FaceModelError, blur_regions

DATA = Path(__file__).parent / "data" / "plates"  # the privacy tests' images live beside the plates (PROVENANCE)


def textured(height: int = 240, width: int = 320) -> np.ndarray:
    """A frame with detail everywhere, so any blurring shows."""
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("method", ["pixelate", "gaussian", "fill"])
def test_region_changes_outside_does_not_and_input_is_untouched(method: str) -> None:
    frame = textured()
    before = frame.copy()
    out = blur_regions(frame, [(100, 50, 180, 110)], method=method, padding=0.0)
    assert np.array_equal(frame, before)  # the caller's frame is never written
    assert out is not frame and not np.shares_memory(out, frame)
    inside = (slice(50, 110), slice(100, 180))
    changed = np.mean(out[inside] != frame[inside])
    assert changed > 0.9
    # Detail is gone: far less variation left than in the original noise.
    assert out[inside].astype(float).std() < 0.5 * frame[inside].astype(float).std()
    mask = np.ones(frame.shape[:2], bool)
    mask[inside] = False
    assert np.array_equal(out[mask], frame[mask])


def test_padding_grows_the_region_and_boxes_are_clipped() -> None:
    frame = textured()
    out = blur_regions(frame, [(100, 100, 200, 140)], padding=0.2)  # 20 px wider each side, 8 px taller
    assert not np.array_equal(out[95:100, 85:100], frame[95:100, 85:100])
    assert np.array_equal(out[:90], frame[:90]) and np.array_equal(out[150:], frame[150:])
    edge = blur_regions(frame, [(-50, -50, 40, 30), (300, 200, 900, 900)], padding=0.0)
    assert not np.array_equal(edge[:30, :40], frame[:30, :40])
    assert not np.array_equal(edge[200:, 300:], frame[200:, 300:])
    assert np.array_equal(edge[40:190, 50:290], frame[40:190, 50:290])


def test_plate_pixelated_cannot_be_read() -> None:
    reader = PlateReader()
    plate = cv2.imread(str(DATA / "cn_blue_jingA12345.png"))
    frame = np.full((400, 800, 3), 128, np.uint8)
    frame[200:340, 200:640] = plate
    assert (reader.read(frame, (200, 200, 640, 340)) or pytest.fail("plate not read")).text == "京A12345"
    hidden = blur_regions(frame, [(200, 200, 640, 340)])
    assert reader.read(hidden, (200, 200, 640, 340)) is None
    assert reader.read(frame, (200, 200, 640, 340)) is not None  # still the original


def test_bad_boxes_are_skipped_and_bad_arguments_refused() -> None:
    frame = textured(60, 80)
    nan = float("nan")
    out = blur_regions(frame, [(nan, 0, 10, 10), (30, 30, 10, 10), (5, 5, 5, 20), (1000, 1000, 1200, 1200),
                               ("a", 0, 1, 1), (1, 2), (0, 0, float("inf"), 10)])  # type: ignore[list-item]
    assert np.array_equal(out, frame)
    assert np.array_equal(blur_regions(frame, []), frame)
    with pytest.raises(ValueError, match="uint8"):
        blur_regions(frame.astype(np.float32), [(0, 0, 10, 10)])
    with pytest.raises(ValueError, match="unknown blur method"):
        blur_regions(frame, [(0, 0, 10, 10)], method="swirl")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="padding"):
        blur_regions(frame, [(0, 0, 10, 10)], padding=-1)


def test_grey_frames_work() -> None:
    grey = cv2.cvtColor(textured(), cv2.COLOR_BGR2GRAY)
    out = blur_regions(grey, [(10, 10, 60, 60)], method="gaussian")
    assert out.shape == grey.shape and not np.array_equal(out[10:60, 10:60], grey[10:60, 10:60])


def test_face_is_found_and_blurred_in_a_real_photo() -> None:
    photo = cv2.imread(str(DATA / "messi5.jpg"))
    detector = FaceDetector()
    faces = detector.detect(photo)
    assert len(faces) == 1
    x1, y1, x2, y2, score = faces[0]
    # The player's face is at about (226, 92)-(257, 135) in this 548x342 photo.
    assert abs(x1 - 226) < 10 and abs(y1 - 92) < 10 and abs(x2 - 257) < 10 and abs(y2 - 135) < 10
    assert score > 0.5
    hidden = blur_regions(photo, [f[:4] for f in faces])
    assert detector.detect(hidden) == []  # nobody recognisable left
    assert len(detector.detect(photo)) == 1  # the original is untouched


def test_no_faces_in_a_car_or_noise_and_bad_input() -> None:
    detector = FaceDetector()
    assert detector.detect(cv2.imread(str(DATA / "licenseplate_motion.jpg"))) == []
    assert detector.detect(textured()) == []
    assert detector.detect(np.zeros((8, 8, 3), np.uint8)) == []
    with pytest.raises(ValueError, match="BGR"):
        detector.detect(np.zeros((100, 100), np.uint8))


def test_corrupt_face_model_is_a_clear_error(tmp_path: Path) -> None:
    corrupt = tmp_path / "centerface.onnx"
    corrupt.write_bytes(b"\x08\x07garbage")
    with pytest.raises(FaceModelError, match="cannot load"):
        FaceDetector(corrupt)
