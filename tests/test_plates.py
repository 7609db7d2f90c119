"""Plate reading on rendered plates (tests/data/plates, see PROVENANCE) with the PP-OCR ONNX models."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision.plates import PlateKind, PlateModelError, PlateReader, classify_plate, plate_colour

DATA = Path(__file__).parent / "data" / "plates"


EXPECTED = [
    ("cn_blue_jingA12345.png", "京A12345", "京A·12345", PlateKind.CN_STANDARD, "blue"),
    ("cn_green_yueBD12345.png", "粤BD12345", "粤B·D12345", PlateKind.CN_NEW_ENERGY, "green"),
    ("cn_yellow_huC34567.png", "沪C34567", "沪C·34567", PlateKind.CN_STANDARD, "yellow"),
    ("latin_ABC1234.png", "ABC1234", "ABC 1234", PlateKind.LATIN, "white"),
    ("latin_KLM5079.png", "KLM5079", "KLM 5079", PlateKind.LATIN, "white"),
]


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader(threads=1)  # the models ship in vision/models: a missing one is a failure


def plate(name: str) -> np.ndarray:
    image = cv2.imread(str(DATA / name))
    assert image is not None, name
    return image


def street_scene(plate_image: np.ndarray, at: tuple[int, int]) -> np.ndarray:
    """A dark car body with a white 'TAXI' sign and the plate, half size, at ``at`` (x, y)."""
    scene = np.full((600, 900, 3), 90, np.uint8)
    cv2.rectangle(scene, (100, 100), (800, 550), (40, 40, 40), -1)
    cv2.putText(scene, "TAXI", (150, 200), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
    height, width = plate_image.shape[:2]
    small = cv2.resize(plate_image, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    x, y = at
    scene[y : y + small.shape[0], x : x + small.shape[1]] = small
    return scene


@pytest.mark.parametrize(("name", "text", "display", "kind", "colour"), EXPECTED)
def test_rendered_plates_are_read(
    reader: PlateReader, name: str, text: str, display: str, kind: PlateKind, colour: str
) -> None:
    reading = reader.read(plate(name))
    assert reading is not None
    assert (reading.text, reading.display, reading.kind, reading.colour) == (text, display, kind, colour)
    assert reading.confidence >= 0.8


@pytest.mark.parametrize(("name", "text"), [(e[0], e[1]) for e in EXPECTED[::2]])
def test_plate_is_found_in_a_vehicle_crop(reader: PlateReader, name: str, text: str) -> None:
    scene = street_scene(plate(name), (330, 400))
    reading = reader.read(scene, (80.0, 80.0, 820.0, 580.0))  # the vehicle's box, in frame pixels
    assert reading is not None and reading.text == text
    x1, y1, x2, y2 = reading.box
    # The text line lies inside the pasted plate (330..550, 400..470), in frame coordinates.
    assert 320 <= x1 < x2 <= 560 and 390 <= y1 < y2 <= 480


def test_a_box_of_the_frame_is_read_and_reported_in_frame_pixels(reader: PlateReader) -> None:
    frame = np.full((400, 1000, 3), 200, np.uint8)
    frame[200:340, 500:940] = plate("cn_blue_jingA12345.png")
    reading = reader.read(frame, (500, 200, 940, 340))
    assert reading is not None and reading.text == "京A12345"
    assert reading.box[0] >= 500 and reading.box[1] >= 200 and reading.box[2] <= 940 and reading.box[3] <= 340
    gray = cv2.cvtColor(plate("latin_ABC1234.png"), cv2.COLOR_BGR2GRAY)
    assert (reader.read(gray) or pytest.fail("grey plate not read")).text == "ABC1234"


def test_garbage_gives_no_plate_and_no_crash(reader: PlateReader) -> None:
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, (240, 640, 3), dtype=np.uint8)
    words = np.full((120, 440, 3), 255, np.uint8)
    cv2.putText(words, "HELLO", (20, 90), cv2.FONT_HERSHEY_SIMPLEX, 3, (0, 0, 0), 6)
    frame = plate("cn_blue_jingA12345.png")
    assert reader.read(noise) is None
    car = cv2.imread(str(DATA / "licenseplate_motion.jpg"))  # a real car whose plate is blurred past reading
    assert reader.read(car) is None
    assert reader.read(np.zeros((140, 440, 3), np.uint8)) is None
    assert reader.read(words) is None  # text, but not a plate
    assert reader.read(frame, (10, 10, 14, 14)) is None  # too small to hold anything
    assert reader.read(frame, (900, 900, 1000, 1000)) is None  # outside the frame
    assert reader.read(frame, (float("nan"), 0, 100, 100)) is None
    assert reader.read(np.zeros((1, 1, 3), np.uint8)) is None
    with pytest.raises(ValueError, match="uint8"):
        reader.read(frame.astype(np.float32))
    with pytest.raises(ValueError, match="3-channel"):
        reader.read(np.zeros((100, 300, 4), np.uint8))


def test_missing_or_corrupt_model_is_a_clear_error(tmp_path: Path) -> None:
    corrupt = tmp_path / "rec.onnx"
    corrupt.write_bytes(b"not an onnx model")
    with pytest.raises(PlateModelError, match="cannot load"):
        PlateReader(rec_model=corrupt, det_model=corrupt)
    with pytest.raises(PlateModelError, match="cannot load"):
        PlateReader(rec_model=tmp_path / "absent.onnx", det_model=tmp_path / "absent.onnx")


def test_broken_latin_pattern_is_refused() -> None:  # refused before any model is loaded
    with pytest.raises(re.error):
        PlateReader(latin_pattern="([A-Z")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("京A·12345", ("京A12345", "京A·12345", PlateKind.CN_STANDARD)),
        ("京a 12345", ("京A12345", "京A·12345", PlateKind.CN_STANDARD)),
        ("沪A1234学", ("沪A1234学", "沪A·1234学", PlateKind.CN_STANDARD)),
        ("苏E2O1I5", ("苏E20115", "苏E·20115", PlateKind.CN_STANDARD)),  # O and I do not exist there
        ("粤BD12345", ("粤BD12345", "粤B·D12345", PlateKind.CN_NEW_ENERGY)),
        ("粤B·12345F", ("粤B12345F", "粤B·12345F", PlateKind.CN_NEW_ENERGY)),
        ("ABC 1234", ("ABC1234", "ABC 1234", PlateKind.LATIN)),
        ("ab-12-cd", ("AB12CD", "AB 12 CD", PlateKind.LATIN)),
        ("\uff21\uff22\uff23\u3000\uff11\uff12\uff13\uff14", ("ABC1234", "ABC 1234", PlateKind.LATIN)),
    ],
)
def test_valid_plates_are_normalised(raw: str, expected: tuple[str, str, PlateKind]) -> None:
    assert classify_plate(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        " · ",
        "京I12345",  # the office letter is never I
        "京O12345",  # nor O
        "京A123",  # too short
        "京A1234567",  # too long
        "粤BZ12345",  # a new-energy plate starts its serial with A-K
        "粤B1234X5",
        "A京12345",  # the province comes first
        "ABCDEFG",  # a Latin plate has digits
        "1234567",  # and letters
        "ABCDE12345",  # and at most eight characters
        "<script>",
        "ABC\n1234\x00",
    ],
)
def test_invalid_plates_are_refused(raw: str) -> None:
    assert classify_plate(raw) is None


def test_site_latin_pattern() -> None:
    uk = r"^[A-Z]{2}[0-9]{2}[A-Z]{3}$"
    assert classify_plate("AB12 CDE", uk) == ("AB12CDE", "AB12 CDE", PlateKind.LATIN)
    assert classify_plate("ABC 1234", uk) is None


def test_plate_colour() -> None:
    def patch(bgr: tuple[int, int, int]) -> np.ndarray:
        return np.full((40, 120, 3), bgr, np.uint8)

    assert plate_colour(patch((200, 60, 20))) == "blue"
    assert plate_colour(patch((20, 200, 250))) == "yellow"
    assert plate_colour(patch((120, 200, 90))) == "green"
    assert plate_colour(patch((245, 245, 245))) == "white"
    assert plate_colour(patch((10, 10, 10))) == "black"
    assert plate_colour(np.zeros((0, 0, 3), np.uint8)) == "unknown"
