"""Object detection with onnxruntime on the CPU, for the common ONNX export layouts.

The layout is recognised from the model's metadata (`linli_layout`, ultralytics' `names`) and output
shapes:

- `yolov8`: YOLOv8 / YOLO11 / YOLOv5u, one output `[1, 4+nc, N]`: cx, cy, w, h in input pixels,
  then per-class scores (already sigmoid), no objectness.
- `yolov5`: classic YOLOv5, one output `[1, N, 5+nc]`: cx, cy, w, h, objectness, class scores
  (score = objectness x class).
- `end2end`: exports with NMS inside, one output `[1, K, 6]`: x1, y1, x2, y2 (input pixels), score,
  class (0-based).
- `nanodet`: NanoDet / NanoDet-Plus as its own ONNX export writes it, one output
  `[1, cells, nc + 4 * (reg_max + 1)]`: for every cell of every stride (smallest stride first, cells
  row by row) the class scores (already sigmoid), then per side (left, top, right, bottom) reg_max + 1
  logits over the distances 0..reg_max strides from the cell's centre (Generalized Focal Loss). The
  metadata `linli_strides`, `linli_reg_max`, `linli_centre_offset` say how; without them strides
  8/16/32(/64) and reg_max are inferred from the shape and centres are NanoDet-Plus's (offset 0).
  The shipped model (NanoDet-g, see models/README.md) is one of these.
- `ssd`: TF Object Detection API: boxes `[1, N, 4]` (ymin, xmin, ymax, xmax normalised 0-1), scores
  `[1, N]`, classes `[1, N]` (1-based COCO ids, 91-id map), optional num_detections `[1]`.

Frames are letterboxed into the model's input (aspect kept, grey padding) and boxes mapped back to
frame pixels. Every session is created with the configured intra-op thread count.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import onnxruntime as ort

from vision.config import ModelConfig, ObjectsConfig
from vision.geometry import inside_any

SHIPPED_MODEL = Path(__file__).parent / "models" / "nanodet-coco.onnx"
SHIPPED_SHA256 = "30751f82aa16d6e86fdd6655e363f796648bea51c677662ded7c20f85e111193"

Layout = Literal["yolov8", "yolov5", "end2end", "ssd", "nanodet"]
LAYOUTS: tuple[Layout, ...] = ("yolov8", "yolov5", "end2end", "ssd", "nanodet")

COCO80 = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
# The TF OD API numbers COCO classes 1..90 with gaps (the 2014 paper's 91 ids); index = id - 1.
_COCO91_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34,
    35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
    64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)
COCO91 = {coco_id: name for coco_id, name in zip(_COCO91_IDS, COCO80, strict=True)}

# Duplicate boxes of one object under two labels (a detector may say both horse and cow for one animal):
# keep the best one; two different objects rarely overlap this much.
SAME_OBJECT_IOU = 0.85


class ModelError(Exception):
    """The model file is missing, corrupt, altered, or of a layout this module does not know."""


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in frame pixels

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])

    @property
    def bottom_centre(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, self.box[3])


@dataclass(frozen=True)
class NanoDetHead:
    """How to read a NanoDet output: the strides of its levels and the distance bins per box side."""

    strides: tuple[int, ...]
    reg_max: int  # distances 0..reg_max strides, reg_max + 1 bins
    centre_offset: float  # a cell's centre is (col + offset) * stride: 0.5 legacy NanoDet, 0 NanoDet-Plus

    def priors(self, width: int, height: int) -> np.ndarray:
        """[cells, 3]: centre x, centre y (input pixels) and stride of every cell, in output order."""
        levels = []
        for stride in self.strides:
            cols, rows = -(-width // stride), -(-height // stride)  # ceil, as NanoDet's own decoders
            y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
            centres = np.stack([x.ravel(), y.ravel()], axis=1)
            levels.append(np.column_stack([(centres + self.centre_offset) * stride,
                                           np.full(len(centres), stride, np.float32)]))
        return np.concatenate(levels).astype(np.float32)


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    layout: Layout
    input_name: str
    nchw: bool
    width: int
    height: int
    dtype: str  # onnx tensor type of the input, e.g. tensor(float)
    unit_range: bool  # float input scaled 0-1 (else 0-255)
    names: tuple[str, ...]
    output_names: tuple[str, ...]
    nanodet: NanoDetHead | None = None  # only for the nanodet layout


def model_path(config: ModelConfig) -> Path:
    return config.path if config.path is not None else SHIPPED_MODEL


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def open_session(config: ModelConfig) -> tuple[ort.InferenceSession, ModelInfo]:
    """Load and check the model; ModelError says what is wrong with it."""
    path = model_path(config)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    expected = config.sha256 or (SHIPPED_SHA256 if path.resolve() == SHIPPED_MODEL.resolve() else None)
    if expected is not None:
        actual = _sha256(path)
        if actual != expected:
            raise ModelError(f"model file {path} has sha256 {actual}, expected {expected}: damaged or replaced")
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.threads
    options.inter_op_num_threads = 1
    # Frames come a few times a second on a small shared box: idle intra-op threads should sleep, not
    # spin, and the per-run buffers need not be kept in an arena (~60 MB less resident memory; the
    # time per run measured the same here).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 3  # onnxruntime's own warnings go to stderr otherwise
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
        raise ModelError(f"model file {path} cannot be loaded by onnxruntime: {exc}") from None
    return session, _inspect(session, path, config)


@functools.lru_cache(maxsize=8)
def _inspect_cached(config: ModelConfig, identity: tuple[str, int, int]) -> ModelInfo:
    return open_session(config)[1]


def inspect_model(config: ModelConfig) -> ModelInfo:
    """Load the model once per file version (path, size, mtime) and tell its layout; ModelError if bad."""
    path = model_path(config)
    try:
        st = path.stat()
    except OSError:
        raise ModelError(f"model file {path} does not exist") from None
    return _inspect_cached(config, (str(path), st.st_size, st.st_mtime_ns))


def _inspect(session: ort.InferenceSession, path: Path, config: ModelConfig) -> ModelInfo:
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise ModelError(f"model {path}: expected one image input [1, C, H, W] or [1, H, W, C], "
                         f"got {[(i.name, i.shape) for i in inputs]}")
    shape = inputs[0].shape
    nchw = shape[1] == 3
    if not nchw and shape[3] != 3:
        raise ModelError(f"model {path}: input {shape} is neither NCHW nor NHWC with 3 channels")
    height, width = (shape[2], shape[3]) if nchw else (shape[1], shape[2])
    if not isinstance(width, int) or not isinstance(height, int):
        raise ModelError(f"model {path}: input size {shape} is dynamic; export it with a fixed image size")
    meta = session.get_modelmeta().custom_metadata_map
    outputs = [(o.name, o.shape) for o in session.get_outputs()]
    names = _names(meta)
    layout = config.layout if config.layout != "auto" else _layout(path, meta, outputs, width, height, len(names))
    head = _nanodet_head(path, meta, outputs, width, height, len(names)) if layout == "nanodet" else None
    hint = meta.get("linli_input", "")
    if config.input_range != "auto":
        unit = config.input_range == "unit"
    elif hint:
        unit = "0_1" in hint
    else:
        unit = nchw  # ultralytics and most PyTorch exports: NCHW 0-1; TF exports: NHWC 0-255
    return ModelInfo(path, layout, inputs[0].name, nchw, width, height, inputs[0].type, unit, names,
                     tuple(name for name, _ in outputs), head)


# NanoDet's pre-trained models use strides 8/16/32 (NanoDet-Plus: also 64).
_NANODET_STRIDES = ((8, 16, 32), (8, 16, 32, 64))


def _cells(strides: tuple[int, ...], width: int, height: int) -> int:
    return sum(-(-width // s) * -(-height // s) for s in strides)


def _layout(path: Path, meta: dict[str, str], outputs: list[tuple[str, list[object]]], width: int, height: int,
            classes: int) -> Layout:
    declared = meta.get("linli_layout")
    if declared in LAYOUTS:
        return declared  # type: ignore[return-value]
    shapes = [shape for _, shape in outputs]
    names = " ".join(name.lower() for name, _ in outputs)
    if len(outputs) in (3, 4) and any(len(s) == 3 and s[-1] == 4 for s in shapes) and "score" in names:
        return "ssd"
    if len(outputs) == 1 and len(shapes[0]) == 3:
        _, a, b = shapes[0]
        if isinstance(a, int) and isinstance(b, int):
            if b == 6 and a <= 1000:  # K kept boxes; raw YOLO outputs have thousands of rows
                return "end2end"
            # One row per cell of the stride grids (YOLOv5 has 3 anchors per cell, so 3x the rows), and
            # 4 equal groups of distance bins after the class scores.
            if (any(a == _cells(s, width, height) for s in _NANODET_STRIDES)
                    and b - classes >= 8 and (b - classes) % 4 == 0):
                return "nanodet"
            if 5 <= a < b:
                return "yolov8"
            if a > b >= 6:
                return "yolov5"
    raise ModelError(f"model {path}: unknown output layout {[(n, s) for n, s in outputs]}; supported: YOLOv8/11 "
                     "[1, 4+nc, N], YOLOv5 [1, N, 5+nc], end-to-end [1, K, 6], TF OD SSD (boxes, scores, classes), "
                     "NanoDet [1, cells, nc + 4 * (reg_max + 1)]")


def _nanodet_head(path: Path, meta: dict[str, str], outputs: list[tuple[str, list[object]]], width: int,
                  height: int, classes: int) -> NanoDetHead:
    """Strides, bins and centre offset from the metadata, else from the output shape; checked against the shape."""
    shape = outputs[0][1] if len(outputs) == 1 else None
    if shape is None or len(shape) != 3 or not all(isinstance(d, int) for d in shape[1:]):
        raise ModelError(f"model {path}: a NanoDet model has one output [1, cells, nc + 4 * (reg_max + 1)], "
                         f"got {[(n, s) for n, s in outputs]}")
    cells, channels = int(shape[1]), int(shape[2])  # type: ignore[call-overload]
    try:
        if "linli_strides" in meta:
            strides = tuple(int(s) for s in meta["linli_strides"].split(","))
        else:
            strides = next((s for s in _NANODET_STRIDES if _cells(s, width, height) == cells), _NANODET_STRIDES[0])
        reg_max = int(meta["linli_reg_max"]) if "linli_reg_max" in meta else (channels - classes) // 4 - 1
        offset = float(meta.get("linli_centre_offset", "0"))
    except ValueError as exc:
        raise ModelError(f"model {path}: bad NanoDet metadata ({exc})") from None
    if not strides or min(strides) < 1 or _cells(strides, width, height) != cells:
        raise ModelError(f"model {path}: output has {cells} cells, strides {strides} on {width}x{height} give "
                         f"{_cells(strides, width, height) if strides and min(strides) >= 1 else '?'}")
    if reg_max < 1 or channels != classes + 4 * (reg_max + 1):
        raise ModelError(f"model {path}: output rows of {channels} values are not {classes} class scores + "
                         f"4 x (reg_max {reg_max} + 1) distance bins")
    return NanoDetHead(strides, reg_max, offset)


def _names(meta: dict[str, str]) -> tuple[str, ...]:
    raw = meta.get("names")
    if raw:
        try:
            parsed = ast.literal_eval(raw)  # ultralytics writes a Python dict repr: {0: 'person', ...}
        except (ValueError, SyntaxError):
            parsed = None
        if isinstance(parsed, dict) and parsed:
            return tuple(str(parsed[k]) for k in sorted(parsed))
        if isinstance(parsed, list | tuple) and parsed:
            return tuple(str(n) for n in parsed)
    return COCO80


@dataclass(frozen=True)
class Letterbox:
    scale: float
    pad_x: float
    pad_y: float

    def unmap(self, boxes: np.ndarray) -> np.ndarray:
        """Input-pixel x1,y1,x2,y2 -> frame pixels."""
        pad = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float32)
        return (boxes.astype(np.float32) - pad) / np.float32(self.scale)


def _fit(w: int, h: int, width: int, height: int) -> tuple[Letterbox, int, int]:
    """Where a w x h frame goes in a width x height input (aspect kept, centred), and its scaled size."""
    scale = min(width / w, height / h)
    nw, nh = round(w * scale), round(h * scale)
    return Letterbox(scale, (width - nw) // 2, (height - nh) // 2), nw, nh


def _scaled(frame: np.ndarray, nw: int, nh: int) -> np.ndarray:
    same = (nw, nh) == (frame.shape[1], frame.shape[0])
    return frame if same else cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)


def letterbox(frame: np.ndarray, width: int, height: int) -> tuple[np.ndarray, Letterbox]:
    box, nw, nh = _fit(frame.shape[1], frame.shape[0], width, height)
    x, y = int(box.pad_x), int(box.pad_y)
    canvas = np.full((height, width, 3), 114, np.uint8)
    canvas[y:y + nh, x:x + nw] = _scaled(frame, nw, nh)
    return canvas, box


class Detector:
    """One onnxruntime session; `detect(frame)` gives filtered detections in frame pixels."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.session, self.info = open_session(config)
        head = self.info.nanodet
        self._priors = head.priors(self.info.width, self.info.height) if head is not None else None

    def prepare(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """The model's input for a frame: letterboxed (grey padding), RGB, in the model's layout, type and range."""
        info = self.info
        box, nw, nh = _fit(frame_bgr.shape[1], frame_bgr.shape[0], info.width, info.height)
        image = _scaled(frame_bgr, nw, nh)
        x, y = int(box.pad_x), int(box.pad_y)
        dtype = np.uint8 if info.dtype == "tensor(uint8)" else np.float32
        # Straight into the tensor, without a letterboxed canvas in between: the image is converted once (BGR ->
        # RGB, layout and type: the transpose and channel flip are views) and only the padding is filled.
        if info.nchw:
            tensor = np.empty((1, 3, info.height, info.width), dtype)
            tensor[0, :, y:y + nh, x:x + nw] = image.transpose(2, 0, 1)[::-1]
            hwc = tensor[0].transpose(1, 2, 0)
        else:
            tensor = np.empty((1, info.height, info.width, 3), dtype)
            tensor[0, y:y + nh, x:x + nw] = image[:, :, ::-1]
            hwc = tensor[0]
        hwc[:y] = hwc[y + nh:] = 114
        hwc[:, :x] = hwc[:, x + nw:] = 114
        if dtype == np.float32 and info.unit_range:
            tensor *= 1 / 255
        return tensor, box

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.info.input_name: tensor})

    def detect(self, frame_bgr: np.ndarray, objects: ObjectsConfig | None = None,
               masks: list[list[tuple[float, float]]] | None = None, min_score: float = 0.1) -> list[Detection]:
        tensor, box = self.prepare(frame_bgr)
        return self.decode(self.infer(tensor), box, frame_bgr.shape[1], frame_bgr.shape[0], objects, masks,
                           min_score)

    def decode(self, outputs: list[np.ndarray], box: Letterbox, frame_w: int, frame_h: int,
               objects: ObjectsConfig | None = None, masks: list[list[tuple[float, float]]] | None = None,
               min_score: float = 0.1) -> list[Detection]:
        if objects is not None:
            # Nothing under the lowest per-label min_score can pass the filters, and dropping it early cannot
            # change what NMS keeps (a weaker box never suppresses a stronger one); NanoDet has thousands of
            # weak candidates, so this saves most of the NMS work.
            min_score = max(min_score, min(objects.filter_for(label).min_score for label in objects.track))
        boxes, scores, classes = self._raw(outputs, min_score)
        if len(scores) == 0:
            return []
        boxes = np.clip(box.unmap(boxes), 0, np.array([frame_w, frame_h, frame_w, frame_h], np.float32))
        keep = _nms(boxes, scores, classes, self.config.iou, per_class=True)
        keep = keep[_nms(boxes[keep], scores[keep], classes[keep], SAME_OBJECT_IOU, per_class=False)]
        names = self.info.names
        found = []
        for i in keep:
            cls = int(classes[i])
            label = names[cls] if 0 <= cls < len(names) else f"class{cls}"
            det = Detection(label, float(scores[i]), tuple(float(v) for v in boxes[i]))  # type: ignore[arg-type]
            if objects is not None and not _passes(det, objects):
                continue
            if masks and inside_any(det.bottom_centre, masks):
                continue
            found.append(det)
        found.sort(key=lambda d: -d.score)
        return found

    def _raw(self, outputs: list[np.ndarray], min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (x1,y1,x2,y2 input pixels), scores and 0-based class indexes above min_score."""
        layout = self.info.layout
        if layout == "end2end":
            out = outputs[0].reshape(-1, 6)
            out = out[out[:, 4] >= min_score]
            return out[:, :4], out[:, 4], out[:, 5].astype(np.int64)
        if layout == "yolov8":
            out = outputs[0][0].T  # [N, 4+nc]
            cls_scores = out[:, 4:]
            classes = cls_scores.argmax(axis=1)
            scores = cls_scores[np.arange(len(out)), classes]
            keep = scores >= min_score
            return _xywh_to_xyxy(out[keep, :4]), scores[keep], classes[keep]
        if layout == "yolov5":
            out = outputs[0][0]  # [N, 5+nc]
            out = out[out[:, 4] >= min_score]
            cls_scores = out[:, 5:] * out[:, 4:5]
            classes = cls_scores.argmax(axis=1)
            scores = cls_scores[np.arange(len(out)), classes]
            keep = scores >= min_score
            return _xywh_to_xyxy(out[keep, :4]), scores[keep], classes[keep]
        if layout == "nanodet":
            return self._raw_nanodet(outputs, min_score)
        return self._raw_ssd(outputs, min_score)

    def _raw_nanodet(self, outputs: list[np.ndarray], min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert self.info.nanodet is not None and self._priors is not None
        bins = self.info.nanodet.reg_max + 1
        out = outputs[0][0]  # [cells, nc + 4 * bins]
        nc = out.shape[1] - 4 * bins
        cls_scores = out[:, :nc]
        # Only a few of the thousands of cells have a class over min_score: find them with one comparison
        # (much cheaper than an argmax over every cell), then take the best class of those alone.
        keep = np.unique(np.flatnonzero(cls_scores >= min_score) // nc)
        classes = cls_scores[keep].argmax(axis=1)
        scores = cls_scores[keep, classes]
        passed = scores >= min_score  # False only where argmax picked a NaN (a broken model): dropped, as before
        keep, classes, scores = keep[passed], classes[passed], scores[passed]
        # Each side's logits are a distribution over 0..reg_max strides: the distance is its expectation.
        logits = out[keep, nc:].reshape(-1, 4, bins)
        weights = np.exp(logits - logits.max(axis=2, keepdims=True))
        distance = (weights @ np.arange(bins, dtype=np.float32)) / weights.sum(axis=2)  # [k, 4] in strides
        priors = self._priors[keep]
        distance *= priors[:, 2:]  # strides -> input pixels
        centres = priors[:, :2]
        boxes = np.concatenate([centres - distance[:, :2], centres + distance[:, 2:]], axis=1)
        return boxes, scores, classes

    def _raw_ssd(self, outputs: list[np.ndarray], min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        by_name = dict(zip(self.info.output_names, outputs, strict=True))
        boxes = next(v for v in outputs if v.ndim == 3 and v.shape[-1] == 4)[0]
        scores = next(v for k, v in by_name.items() if "score" in k.lower()).reshape(-1)
        classes = next(v for k, v in by_name.items() if "class" in k.lower()).reshape(-1)
        count = next((v for k, v in by_name.items() if "num" in k.lower()), None)
        n = int(count.reshape(-1)[0]) if count is not None else len(scores)
        boxes, scores, classes = boxes[:n], scores[:n], classes[:n]
        keep = scores >= min_score
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep].astype(np.int64)
        w, h = self.info.width, self.info.height
        xyxy = np.stack([boxes[:, 1] * w, boxes[:, 0] * h, boxes[:, 3] * w, boxes[:, 2] * h], axis=1)
        # 1-based ids on the 91-id COCO map -> our 0-based COCO-80 index (unknown ids become -1)
        index = {coco_id: i for i, coco_id in enumerate(_COCO91_IDS)}
        mapped = np.array([index.get(int(c), -1) for c in classes], dtype=np.int64)
        ok = mapped >= 0
        return xyxy[ok], scores[ok], mapped[ok]


def _xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    out = np.empty_like(xywh)
    out[:, 0] = xywh[:, 0] - xywh[:, 2] / 2
    out[:, 1] = xywh[:, 1] - xywh[:, 3] / 2
    out[:, 2] = xywh[:, 0] + xywh[:, 2] / 2
    out[:, 3] = xywh[:, 1] + xywh[:, 3] / 2
    return out


def _nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float, per_class: bool) -> np.ndarray:
    if len(scores) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes]
    s = [float(v) for v in scores]
    if per_class:
        keep = cv2.dnn.NMSBoxesBatched(xywh, s, [int(c) for c in classes], 0.0, iou)
    else:
        keep = cv2.dnn.NMSBoxes(xywh, s, 0.0, iou)
    return np.asarray(keep, dtype=np.int64).reshape(-1)


def _passes(det: Detection, objects: ObjectsConfig) -> bool:
    if det.label not in objects.track:
        return False
    f = objects.filter_for(det.label)
    w, h = det.box[2] - det.box[0], det.box[3] - det.box[1]
    ratio = w / h if h > 0 else 0.0
    return (det.score >= f.min_score and f.min_area <= det.area <= f.max_area
            and f.min_ratio <= ratio <= f.max_ratio)
