"""Licence-plate reading for the gate camera: PP-OCRv4 text models (from ``rapidocr-onnxruntime``)
run directly with onnxruntime, then normalisation and validation of the plate formats.

Formats recognised:

- Chinese standard plates (blue, yellow; also black/white special series): province abbreviation,
  the issuing office's letter, five serial characters: ``京A·12345``. Letters never include I or O;
  the last serial character may be 挂 学 警 港 澳 领 试 超.
- Chinese new-energy plates (green), eight characters: small vehicles ``粤B·D12345`` (letter A-K
  but I, then a letter or digit, then four digits), large vehicles ``粤B·12345D``.
- Latin plates, by default two to eight letters and digits with at least one of each, as printed
  (``ABC 1234``); a site may give its own pattern.

Why not ``rapidocr_onnxruntime.RapidOCR``: the package declares ``opencv-python`` (the GUI build,
which clashes with the ``opencv-python-headless`` the project uses: both install the ``cv2``
module) and imports Pillow, shapely and pyclipper. Only its two ONNX files are used, shipped in
``vision/models/`` (Apache-2.0, PaddleOCR's; provenance in its README), so a gate read costs one
recognition run (~12 ms on a plate crop) instead of its ~400 ms defaults. The character list is
the one embedded in the recognition model's metadata.

A plate is looked for in a crop (the vehicle's box, or a fixed region the gate camera is aimed at):
if the crop is shaped like a plate it is read directly, otherwise the PP-OCR text detector finds
text lines in it first and each line is read; the best valid plate wins.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

Box = tuple[float, float, float, float]
MODELS = Path(__file__).parent / "models"

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, no O on Chinese plates
_SERIAL = f"[{_LETTERS}0-9]"
_CN_STANDARD = re.compile(f"^[{PROVINCES}][{_LETTERS}]{_SERIAL}{{4}}(?:{_SERIAL}|[挂学警港澳领试超])$")
_CN_NEW_ENERGY = re.compile(f"^[{PROVINCES}][{_LETTERS}](?:[A-HJK]{_SERIAL}[0-9]{{4}}|[0-9]{{5}}[A-HJK])$")
DEFAULT_LATIN = r"^(?=.*[A-Z])(?=.*[0-9])[A-Z0-9]{2,8}$"
_SEPARATORS = re.compile(r"[\s·•・.\-_:]+")

REC_HEIGHT = 48
REC_MIN_WIDTH = 320
DET_MAX_SIDE = 960
MAX_LINES = 6  # text lines read per crop, widest first: bounds the time a busy scene costs
_PLATE_ASPECT = (1.8, 8.0)  # width / height of a crop that is already just the plate


class PlateKind(StrEnum):
    CN_STANDARD = "cn_standard"
    CN_NEW_ENERGY = "cn_new_energy"
    LATIN = "latin"


class PlateModelError(Exception):
    """The OCR models cannot be found or loaded: a configuration problem, reported at start-up."""


@dataclass(frozen=True, slots=True)
class PlateReading:
    text: str  # canonical form, what allow-lists are matched against: 京A12345, ABC1234
    display: str  # as printed: 京A·12345, ABC 1234
    kind: PlateKind
    colour: str  # blue, yellow, green, white, black or unknown: the plate's background
    confidence: float  # mean per-character probability
    box: Box  # where in the image the plate text was read, frame pixels


def canonical(text: str) -> str:
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", text)).upper()


def classify_plate(raw: str, latin_pattern: str = DEFAULT_LATIN) -> tuple[str, str, PlateKind] | None:
    """Normalise an OCR or typed plate and check its format: ``(text, display, kind)`` or None.

    OCR's usual slips on Chinese plates are undone where the format allows only one reading
    (O and I are not used there, so they are 0 and 1 in the serial).
    """
    text = canonical(raw)
    if not text:
        return None
    if text[0] in PROVINCES and len(text) in (7, 8):
        fixed = text[:2] + text[2:].replace("O", "0").replace("I", "1")
        if _CN_STANDARD.match(fixed):
            return fixed, f"{fixed[:2]}·{fixed[2:]}", PlateKind.CN_STANDARD
        if _CN_NEW_ENERGY.match(fixed):
            return fixed, f"{fixed[:2]}·{fixed[2:]}", PlateKind.CN_NEW_ENERGY
        return None
    if re.match(latin_pattern, text):
        groups = [g for g in re.split(r"[\s·•・.\-_:]+", unicodedata.normalize("NFKC", raw).upper().strip()) if g]
        return text, " ".join(groups), PlateKind.LATIN
    return None


def plate_colour(crop: np.ndarray) -> str:
    """The plate's background colour from the crop's dominant saturated hue (OpenCV hue 0-179)."""
    if crop.size == 0:
        return "unknown"
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    saturated = (hsv[..., 1] > 80) & (hsv[..., 2] > 60)
    if saturated.mean() < 0.3:
        return "white" if np.median(hsv[..., 2]) > 127 else "black"
    hue = float(np.median(hsv[..., 0][saturated]))
    if 15 <= hue < 36:
        return "yellow"
    if 36 <= hue < 90:
        return "green"
    if 90 <= hue < 135:
        return "blue"
    return "unknown"


def rapidocr_model(name: str) -> Path:
    """``vision/models/<name>``: the PP-OCR models ship with the project (see vision/models/README.md)."""
    path = MODELS / name
    if not path.is_file():
        raise PlateModelError(f"{path} is missing: the project ships it (vision/models/README.md); reinstall Linli")
    return path


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
        raise PlateModelError(f"cannot load {path}: {exc}") from exc


class PlateReader:
    """Reads plates in BGR images. Blocking (ONNX inference): call it from an executor."""

    def __init__(
        self,
        rec_model: Path | None = None,
        det_model: Path | None = None,
        threads: int = 1,
        min_confidence: float = 0.8,
        latin_pattern: str = DEFAULT_LATIN,
    ) -> None:
        self.min_confidence = min_confidence
        self.latin_pattern = latin_pattern
        re.compile(latin_pattern)  # a broken pattern fails here, at configuration time
        self._rec = _session(rec_model or rapidocr_model("ch_PP-OCRv4_rec_infer.onnx"), threads)
        self._det = _session(det_model or rapidocr_model("ch_PP-OCRv4_det_infer.onnx"), threads)
        characters = self._rec.get_modelmeta().custom_metadata_map.get("character")
        if not characters:
            raise PlateModelError("the recognition model carries no character list in its metadata")
        # CTC: index 0 is the blank; PaddleOCR appends the space character to the dictionary.
        self._characters = ["", *characters.splitlines(), " "]
        self._rec_input = self._rec.get_inputs()[0].name
        self._det_input = self._det.get_inputs()[0].name

    def read(self, image: np.ndarray, box: Box | None = None) -> PlateReading | None:
        """The best valid plate in ``image`` (or in its ``box``), None when there is none."""
        crop, (ox, oy) = _crop(image, box)
        if crop is None:
            return None
        height, width = crop.shape[:2]
        if _PLATE_ASPECT[0] <= width / height <= _PLATE_ASPECT[1]:
            # Most gate reads: the crop is the plate. One recognition run, no detector.
            direct = self._read_line(crop, (0, 0, width, height), (ox, oy))
            if direct is not None:
                return direct
        best: PlateReading | None = None
        for line_box in self.find_text(crop):
            found = self._read_line(crop, line_box, (ox, oy))
            if found is not None and (best is None or found.confidence > best.confidence):
                best = found
        return best

    def _read_line(
        self, crop: np.ndarray, line_box: tuple[int, int, int, int], offset: tuple[int, int]
    ) -> PlateReading | None:
        x1, y1, x2, y2 = line_box
        line = crop[y1:y2, x1:x2]
        raw, confidence = self.recognise(line)
        found = classify_plate(raw, self.latin_pattern)
        if found is None or confidence < self.min_confidence:
            return None
        text, display, kind = found
        ox, oy = offset
        frame_box = (float(x1 + ox), float(y1 + oy), float(x2 + ox), float(y2 + oy))
        return PlateReading(text, display, kind, plate_colour(line), confidence, frame_box)

    def recognise(self, line: np.ndarray) -> tuple[str, float]:
        """Raw text of one text line (BGR) and its mean character probability."""
        height, width = line.shape[:2]
        if height < 4 or width < 4:
            return "", 0.0
        scaled_width = max(1, math.ceil(REC_HEIGHT * width / height))
        batch = np.zeros((1, 3, REC_HEIGHT, max(REC_MIN_WIDTH, scaled_width)), np.float32)
        resized = cv2.resize(line, (scaled_width, REC_HEIGHT)).astype(np.float32)
        batch[0, :, :, :scaled_width] = ((resized / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
        probabilities = self._rec.run(None, {self._rec_input: batch})[0][0]
        best = probabilities.argmax(axis=1)
        kept = [(i, step) for step, i in enumerate(best) if i != 0 and (step == 0 or best[step - 1] != i)]
        if not kept:
            return "", 0.0
        text = "".join(self._characters[i] if i < len(self._characters) else "" for i, _ in kept)
        confidence = float(np.mean([probabilities[step, i] for i, step in kept]))
        return text, confidence

    def find_text(
        self, crop: np.ndarray, threshold: float = 0.3, min_score: float = 0.5
    ) -> list[tuple[int, int, int, int]]:
        """Text-line boxes in ``crop`` (crop pixels) from the PP-OCR DB detector, widest first.

        The DB post-processing is done with OpenCV alone: threshold the probability map, take each
        region's bounding box, grow it by DB's unclip distance (area x 1.6 / perimeter).
        """
        height, width = crop.shape[:2]
        scale = min(1.0, DET_MAX_SIDE / max(height, width))
        det_w = max(32, round(width * scale / 32) * 32)
        det_h = max(32, round(height * scale / 32) * 32)
        resized = cv2.resize(crop, (det_w, det_h)).astype(np.float32)
        batch = ((resized / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]
        heat = self._det.run(None, {self._det_input: batch})[0][0, 0]
        mask = (heat > threshold).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        boxes = []
        sx, sy = width / det_w, height / det_h
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            # A plate's text is one line, clearly wider than high; small blobs and blocks are not plates.
            if h < 3 or w < 1.5 * h:
                continue
            if float(heat[y : y + h, x : x + w][mask[y : y + h, x : x + w] > 0].mean()) < min_score:
                continue
            grow = (w * h * 1.6) / (2 * (w + h))
            x1, y1 = max(0, int((x - grow) * sx)), max(0, int((y - grow) * sy))
            x2, y2 = min(width, math.ceil((x + w + grow) * sx)), min(height, math.ceil((y + h + grow) * sy))
            boxes.append((x1, y1, x2, y2))
        boxes.sort(key=lambda b: b[2] - b[0], reverse=True)
        return boxes[:MAX_LINES]


def _crop(image: np.ndarray, box: Box | None) -> tuple[np.ndarray | None, tuple[int, int]]:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError("expected a BGR image as a uint8 numpy array")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] != 3:
        raise ValueError("expected a 3-channel BGR image")
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (0, 0, width, height) if box is None else box
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None, (0, 0)
    x1, y1 = max(0, int(x1)), max(0, int(y1))
    x2, y2 = min(width, math.ceil(x2)), min(height, math.ceil(y2))
    if x2 - x1 < 8 or y2 - y1 < 8:
        return None, (0, 0)
    return image[y1:y2, x1:x2], (x1, y1)
