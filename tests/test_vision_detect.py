"""vision.detect: every output layout through real onnxruntime, the shipped model on real photos, bad models.

The layout tests build tiny ONNX graphs (with the `onnx` package) whose output is a known tensor, so
the decoding (coordinates, score formula, class numbering, letterbox undo, NMS) is checked exactly.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.cli import main
from edge.config import ConfigError, parse_config
from vision.config import ModelConfig, ObjectFilter, ObjectsConfig
from vision.detect import SHIPPED_MODEL, SHIPPED_SHA256, Detection, Detector, ModelError, inspect_model, letterbox

DATA = Path(__file__).parent / "data"


def constant_model(path: Path, outputs: dict[str, np.ndarray], *, input_shape: tuple[int, ...] = (1, 3, 64, 64),
                   input_type: int = TensorProto.FLOAT, metadata: dict[str, str] | None = None) -> Path:
    """An ONNX model with one image input whose outputs are the given constant tensors."""
    nodes, infos = [], []
    for name, value in outputs.items():
        nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name + "_v")))
        infos.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    image = helper.make_tensor_value_info("images", input_type, list(input_shape))
    model = helper.make_model(helper.make_graph(nodes, "constant", [image], infos),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


# A 128x64 frame letterboxed into a 64x64 input: scale 0.5, 16 px of padding above and below.
FRAME = np.zeros((64, 128, 3), np.uint8)


def to_frame(x1: float, y1: float, x2: float, y2: float) -> tuple[float, float, float, float]:
    """Input-pixel box -> frame-pixel box for FRAME's letterbox."""
    return (x1 * 2, (y1 - 16) * 2, x2 * 2, (y2 - 16) * 2)


def close(a: tuple[float, ...], b: tuple[float, ...], tol: float = 0.51) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def test_letterbox_keeps_the_aspect_and_centres() -> None:
    canvas, box = letterbox(FRAME, 64, 64)
    assert canvas.shape == (64, 64, 3)
    assert (box.scale, box.pad_x, box.pad_y) == (0.5, 0, 16)
    assert (canvas[:16] == 114).all() and (canvas[48:] == 114).all() and (canvas[16:48] == 0).all()
    back = box.unmap(np.array([[0, 16, 64, 48]], dtype=np.float32))
    assert back.tolist() == [[0, 0, 128, 64]]


def test_prepare_feeds_rgb_in_the_models_layout_type_and_range(tmp_path: Path) -> None:
    frame = np.zeros((64, 128, 3), np.uint8)
    frame[:] = (10, 20, 30)  # BGR
    dets = {"dets": np.zeros((1, 5, 6), np.float32)}
    cases = [((1, 3, 64, 64), TensorProto.FLOAT, {}, np.float32, [30 / 255, 20 / 255, 10 / 255]),
             ((1, 3, 64, 64), TensorProto.FLOAT, {"linli_input": "rgb_0_255_nchw"}, np.float32, [30, 20, 10]),
             ((1, 64, 64, 3), TensorProto.FLOAT, {}, np.float32, [30, 20, 10]),
             ((1, 64, 64, 3), TensorProto.UINT8, {}, np.uint8, [30, 20, 10])]
    for shape, onnx_type, meta, dtype, rgb in cases:
        path = constant_model(tmp_path / "m.onnx", dets, input_shape=shape, input_type=onnx_type, metadata=meta)
        tensor, _ = Detector(ModelConfig(path=path)).prepare(frame)
        assert tensor.shape == shape and tensor.dtype == dtype and tensor.flags.c_contiguous
        image = tensor[0] if shape[3] == 3 else tensor[0].transpose(1, 2, 0)
        assert np.allclose(image[32, 64 // 2], rgb)  # the middle: the frame, not the padding
        assert np.allclose(image[0, 0], [114 / 255] * 3 if dtype == np.float32 and rgb[0] < 1 else [114] * 3)


def test_yolov8_layout_with_ultralytics_names(tmp_path: Path) -> None:
    # [1, 4+nc, N]: cx, cy, w, h, then class scores. nc = 3 with names from ultralytics' metadata.
    rows = np.array([
        # cx  cy  w   h   cls0 cls1 cls2
        [32, 32, 16, 16, 0.10, 0.90, 0.05],  # "car", kept
        [33, 32, 16, 16, 0.10, 0.80, 0.05],  # overlaps the first: removed by NMS
        [10, 24, 8, 12, 0.70, 0.10, 0.10],  # "person"
        [50, 40, 8, 8, 0.05, 0.10, 0.20],  # below min_score
    ], dtype=np.float32)
    out = np.zeros((1, 7, 8), np.float32)
    out[0, :, :4] = rows.T
    path = constant_model(tmp_path / "v8.onnx", {"output0": out},
                          metadata={"names": "{0: 'person', 1: 'car', 2: 'dog'}", "task": "detect"})
    detector = Detector(ModelConfig(path=path))
    assert detector.info.layout == "yolov8" and detector.info.names == ("person", "car", "dog")
    assert detector.info.unit_range  # NCHW float: 0-1 like ultralytics
    found = detector.detect(FRAME, min_score=0.25)
    assert [(d.label, round(d.score, 2)) for d in found] == [("car", 0.9), ("person", 0.7)]
    assert close(found[0].box, to_frame(24, 24, 40, 40))
    assert close(found[1].box, to_frame(6, 18, 14, 30))


def test_classic_yolov5_layout_multiplies_objectness(tmp_path: Path) -> None:
    n, nc = 1200, 80  # thousands of rows: not mistaken for an end-to-end [1, K, 6]
    out = np.zeros((1, n, 5 + nc), np.float32)
    out[0, 0, :5] = [32, 32, 20, 10, 0.9]
    out[0, 0, 5 + 2] = 0.5  # car: 0.9 x 0.5 = 0.45
    out[0, 1, :5] = [16, 30, 10, 20, 0.2]
    out[0, 1, 5 + 0] = 0.95  # person, but 0.2 x 0.95 = 0.19: below 0.25
    out[0, 2, :5] = [48, 30, 10, 20, 0.8]
    out[0, 2, 5 + 16] = 1.0  # dog (COCO-80 index 16), no names metadata
    detector = Detector(ModelConfig(path=constant_model(tmp_path / "v5.onnx", {"output": out})))
    assert detector.info.layout == "yolov5"
    found = detector.detect(FRAME, min_score=0.25)
    assert [(d.label, round(d.score, 2)) for d in found] == [("dog", 0.8), ("car", 0.45)]
    assert close(found[1].box, to_frame(22, 27, 42, 37))


def test_end_to_end_layout(tmp_path: Path) -> None:
    out = np.zeros((1, 10, 6), np.float32)
    out[0, 0] = [4, 20, 20, 44, 0.8, 0]  # person
    out[0, 1] = [30, 18, 60, 40, 0.6, 7]  # truck
    out[0, 2] = [30, 18, 60, 40, 0.4, 2]  # the same box as "car", weaker: one object, one label
    out[0, 3] = [0, 0, 10, 10, 0.1, 0]  # weak
    detector = Detector(ModelConfig(path=constant_model(tmp_path / "e2e.onnx", {"dets": out},
                                                        input_shape=(1, 64, 64, 3))))
    assert detector.info.layout == "end2end" and not detector.info.nchw and not detector.info.unit_range
    found = detector.detect(FRAME, min_score=0.25)
    assert [(d.label, round(d.score, 2)) for d in found] == [("person", 0.8), ("truck", 0.6)]
    assert close(found[0].box, to_frame(4, 20, 20, 44))
    assert close(found[1].box, to_frame(30, 18, 60, 40))


def test_tf_object_detection_ssd_layout(tmp_path: Path) -> None:
    boxes = np.zeros((1, 5, 4), np.float32)
    boxes[0, 0] = [0.25, 0.5, 0.75, 1.0]  # ymin, xmin, ymax, xmax (normalised)
    boxes[0, 1] = [0.3, 0.0, 0.6, 0.25]
    boxes[0, 2] = [0.0, 0.0, 0.1, 0.1]  # beyond num_detections: ignored
    scores = np.array([[0.9, 0.7, 0.99, 0, 0]], np.float32)
    classes = np.array([[3, 18, 1, 0, 0]], np.float32)  # 1-based, 91-id map: 3 car, 18 dog, 1 person
    detector = Detector(ModelConfig(path=constant_model(
        tmp_path / "ssd.onnx",
        {"detection_boxes": boxes, "detection_scores": scores, "detection_classes": classes,
         "num_detections": np.array([2], np.float32)},
        input_shape=(1, 64, 64, 3), input_type=TensorProto.UINT8)))
    assert detector.info.layout == "ssd" and detector.info.dtype == "tensor(uint8)"
    found = detector.detect(FRAME, min_score=0.25)
    assert [(d.label, round(d.score, 2)) for d in found] == [("car", 0.9), ("dog", 0.7)]
    assert close(found[0].box, to_frame(32, 16, 64, 48))
    assert close(found[1].box, to_frame(0, 19.2, 16, 38.4))


def nanodet_rows(nc: int, reg_max: int, cells: int) -> np.ndarray:
    """A NanoDet output with every class score 0 and every distance bin at -50 (softmax weight ~0)."""
    out = np.zeros((1, cells, nc + 4 * (reg_max + 1)), np.float32)
    out[0, :, nc:] = -50
    return out


def set_distances(row: np.ndarray, nc: int, reg_max: int, sides: list[dict[int, float]]) -> None:
    """Give each side (left, top, right, bottom) logits at the named bins; the rest stay at -50."""
    for side, logits in enumerate(sides):
        for index, value in logits.items():
            row[nc + side * (reg_max + 1) + index] = value


def test_nanodet_layout_decodes_cells_strides_and_distance_bins(tmp_path: Path) -> None:
    # 64x64 input, strides 8/16/32: 8x8 + 4x4 + 2x2 = 84 cells; 3 classes; reg_max 4 (5 bins per side).
    nc, reg_max = 3, 4
    out = nanodet_rows(nc, reg_max, 84)
    # Cell (col 3, row 4) at stride 8: centre (3.5 * 8, 4.5 * 8) = (28, 36) with offset 0.5.
    car = out[0, 4 * 8 + 3]
    car[:nc] = [0.1, 0.9, 0.2]
    # left: all weight on bin 2 (2 strides = 16 px); top: bins 1 and 3 equally (expectation 2 = 16 px);
    # right: bin 1 (8 px); bottom: bins 0 and 1 with weights e^0 : e^ln3 = 1 : 3 (0.75 strides = 6 px).
    set_distances(car, nc, reg_max, [{2: 0}, {1: 0, 3: 0}, {1: 0}, {0: 0, 1: float(np.log(3))}])
    # Cell (col 1, row 0) at stride 32 (the last 4 cells): centre (48, 16); 1 stride each way = 32 px.
    person = out[0, 64 + 16 + 1]
    person[:nc] = [0.7, 0.0, 0.0]
    set_distances(person, nc, reg_max, [{1: 0}, {0: 0}, {0: 0}, {1: 0}])
    # A second, weaker car on the first car's cell's neighbour, almost the same box: removed by NMS.
    twin = out[0, 4 * 8 + 4]  # centre (36, 36)
    twin[:nc] = [0.0, 0.6, 0.0]
    set_distances(twin, nc, reg_max, [{3: 0}, {2: 0}, {0: 0}, {1: 0}])
    # Below min_score.
    out[0, 10, 2] = 0.2
    path = constant_model(tmp_path / "nanodet.onnx", {"output": out}, metadata={
        "linli_layout": "nanodet", "linli_strides": "8,16,32", "linli_reg_max": "4", "linli_centre_offset": "0.5",
        "linli_input": "rgb_0_255_nchw", "names": "['person', 'car', 'dog']"})
    detector = Detector(ModelConfig(path=path))
    assert detector.info.layout == "nanodet" and not detector.info.unit_range
    assert detector.info.nanodet is not None and detector.info.nanodet.strides == (8, 16, 32)
    found = detector.detect(FRAME, min_score=0.25)
    assert [(d.label, round(d.score, 2)) for d in found] == [("car", 0.9), ("person", 0.7)]
    assert close(found[0].box, to_frame(28 - 16, 36 - 16, 28 + 8, 36 + 6), tol=0.01)
    assert close(found[1].box, to_frame(48 - 32, 16 - 0, 48 + 0, 16 + 32), tol=0.01)


def test_nanodet_plus_export_is_recognised_from_its_shape(tmp_path: Path) -> None:
    # NanoDet-Plus's own export: no Linli metadata, strides 8/16/32/64 on 64x64 = 85 cells, 80 classes,
    # reg_max 7 (32 distance logits), cell centres at col * stride (no half-cell offset).
    out = nanodet_rows(80, 7, 85)
    cell = out[0, 64 + 16 + 4]  # stride 64's only cell: centre (0, 0)
    cell[16] = 0.8  # dog
    set_distances(cell, 80, 7, [{0: 0}, {0: 0}, {1: 0}, {1: 0}])  # box 0,0 .. 64,64
    detector = Detector(ModelConfig(path=constant_model(tmp_path / "plus.onnx", {"output": out})))
    assert detector.info.layout == "nanodet" and detector.info.unit_range  # NCHW float without a hint: 0-1
    assert detector.info.nanodet is not None
    assert (detector.info.nanodet.strides, detector.info.nanodet.reg_max) == ((8, 16, 32, 64), 7)
    found = detector.detect(FRAME, min_score=0.25)
    assert [(d.label, round(d.score, 2)) for d in found] == [("dog", 0.8)]
    assert close(found[0].box, (0, 0, 128, 64), tol=0.01)  # the whole frame, padding clipped away


def test_nanodet_metadata_that_does_not_fit_the_output_is_a_model_error(tmp_path: Path) -> None:
    out = nanodet_rows(80, 7, 84)
    for meta, expected in [({"linli_strides": "8,16"}, "84 cells, strides (8, 16) on 64x64 give 80"),
                           ({"linli_reg_max": "9"}, "not 80 class scores + 4 x (reg_max 9 + 1)"),
                           ({"linli_strides": "eight"}, "bad NanoDet metadata")]:
        path = constant_model(tmp_path / "bad.onnx", {"output": out}, metadata={"linli_layout": "nanodet", **meta})
        with pytest.raises(ModelError, match=re.escape(expected)):
            Detector(ModelConfig(path=path))


def test_filters_classes_and_masks(tmp_path: Path) -> None:
    out = np.zeros((1, 4, 6), np.float32)
    out[0, 0] = [4, 20, 20, 44, 0.8, 0]  # person, 32x48 frame px, ratio 0.67
    out[0, 1] = [30, 18, 60, 40, 0.6, 7]  # truck, 60x44 frame px
    out[0, 2] = [40, 40, 44, 48, 0.9, 16]  # dog: not tracked
    detector = Detector(ModelConfig(path=constant_model(tmp_path / "e2e.onnx", {"dets": out},
                                                        input_shape=(1, 64, 64, 3))))
    objects = ObjectsConfig(track=["person", "truck"])
    assert [d.label for d in detector.detect(FRAME, objects)] == ["person", "truck"]
    big_only = ObjectsConfig(track=["person", "truck"], filters={"person": ObjectFilter(min_area=2000)})
    assert [d.label for d in detector.detect(FRAME, big_only)] == ["truck"]
    wide_only = ObjectsConfig(track=["person", "truck"], filters={"truck": ObjectFilter(max_ratio=1.0)})
    assert [d.label for d in detector.detect(FRAME, wide_only)] == ["person"]
    confident = ObjectsConfig(track=["person", "truck"], filters={"truck": ObjectFilter(min_score=0.7)})
    assert [d.label for d in detector.detect(FRAME, confident)] == ["person"]
    # The person's bottom centre is (24, 56) in frame pixels: a mask there drops it, not the truck.
    mask = [(0.0, 50.0), (40.0, 50.0), (40.0, 64.0), (0.0, 64.0)]
    assert [d.label for d in detector.detect(FRAME, objects, masks=[mask])] == ["truck"]


# ---- the shipped model on real photos ------------------------------------------------------------


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def shipped() -> Detector:
    return Detector(ModelConfig())


def find(found: list[Detection], labels: set[str], box: tuple[float, float, float, float]) -> Detection | None:
    return next((d for d in found if d.label in labels and iou(d.box, box) >= 0.7), None)


def test_shipped_model_is_the_documented_file(shipped: Detector) -> None:
    assert shipped.info.path == SHIPPED_MODEL and shipped.info.layout == "nanodet"
    info = shipped.info
    assert (info.width, info.height, info.nchw, info.unit_range) == (416, 416, True, False)
    assert shipped.info.nanodet is not None
    assert (shipped.info.nanodet.strides, shipped.info.nanodet.reg_max) == ((8, 16, 32), 10)
    readme = (SHIPPED_MODEL.parent / "README.md").read_text()
    assert SHIPPED_SHA256 in readme and SHIPPED_MODEL.name in readme
    assert not (SHIPPED_MODEL.parent / "centernet-coco.onnx").exists()  # dropped: its weights have no licence


def test_shipped_model_finds_the_person_and_dog(shipped: Detector) -> None:
    # darknet's person.jpg (640x424): a woman, her dog at her side, a horse.
    found = shipped.detect(cv2.imread(str(DATA / "person.jpg")), ObjectsConfig(track=["person", "dog", "horse"]))
    person = find(found, {"person"}, (190, 103, 273, 381))
    # NanoDet's scores are IoU-quality estimates and run lower than CenterNet's: 0.44 here, above the
    # default per-label min_score (0.35).
    assert person is not None and person.score > 0.4, found
    assert find(found, {"dog"}, (66, 263, 198, 351)) is not None, found


def test_shipped_model_finds_the_bicycle_dog_and_vehicle(shipped: Detector) -> None:
    # darknet's dog.jpg (768x576): a bicycle, a dog in front of it, a pick-up truck behind.
    found = shipped.detect(cv2.imread(str(DATA / "dog.jpg")), ObjectsConfig(track=["bicycle", "dog", "car", "truck"]))
    assert find(found, {"bicycle"}, (116, 134, 562, 475)) is not None, found
    assert find(found, {"dog"}, (126, 211, 310, 537)) is not None, found
    assert find(found, {"car", "truck"}, (469, 78, 681, 166)) is not None, found
    assert not [d for d in found if d.box[3] < 70]  # nothing in the sky


def test_shipped_model_sees_nothing_in_a_blank_frame(shipped: Detector) -> None:
    assert shipped.detect(np.full((480, 640, 3), 128, np.uint8), ObjectsConfig()) == []


# ---- bad model files: a clear error at config check -------------------------------------------------


def site(model: str) -> str:
    return ("site: {id: maple-court}\ncontroller: {id: gate-1}\nvision:\n"
            f"  model: {model}\n  cameras: [{{id: gate, url: /dev/null}}]\n")


def check(tmp_path: Path, model: str) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(site(model), str(tmp_path / "site.yaml"), tmp_path)
    return str(err.value)


def test_missing_model_is_a_config_error_at_its_line(tmp_path: Path) -> None:
    message = check(tmp_path, "{path: models/none.onnx}")
    assert f"{tmp_path / 'site.yaml'}:4:" in message and "vision.model.path" in message
    assert "does not exist" in message


def test_corrupt_model_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07this is not a protobuf" * 50)
    assert "cannot be loaded by onnxruntime" in check(tmp_path, "{path: junk.onnx}")
    truncated = SHIPPED_MODEL.read_bytes()[:100_000]
    (tmp_path / "cut.onnx").write_bytes(truncated)
    assert "cannot be loaded" in check(tmp_path, "{path: cut.onnx}")


def test_unknown_layout_is_a_config_error(tmp_path: Path) -> None:
    constant_model(tmp_path / "odd.onnx", {"logits": np.zeros((1, 1000), np.float32)})
    message = check(tmp_path, "{path: odd.onnx}")
    assert "unknown output layout" in message and "logits" in message


def test_dynamic_input_size_is_a_config_error(tmp_path: Path) -> None:
    out = np.zeros((1, 5, 6), np.float32)
    path = tmp_path / "dyn.onnx"
    constant_model(path, {"dets": out}, input_shape=(1, 3, 64, 64))
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    onnx.save(model, str(path))
    assert "dynamic" in check(tmp_path, "{path: dyn.onnx}")


def test_replaced_model_fails_its_checksum(tmp_path: Path) -> None:
    shutil.copy(SHIPPED_MODEL, tmp_path / "copy.onnx")
    message = check(tmp_path, f"{{path: copy.onnx, sha256: '{'0' * 64}'}}")
    assert "expected 0000" in message
    ok = parse_config(site(f"{{path: copy.onnx, sha256: {SHIPPED_SHA256}}}"), "site.yaml", tmp_path)
    assert ok.vision is not None and inspect_model(ok.vision.model).layout == "nanodet"


def test_check_config_cli_reports_a_bad_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(site("{path: gone.onnx}"))
    assert main(["check-config", str(path)]) == 2
    assert "gone.onnx does not exist" in capsys.readouterr().err
    path.write_text(site("{threads: 1}"))
    assert main(["check-config", str(path)]) == 0


def test_unknown_labels_and_zone_objects_are_config_errors(tmp_path: Path) -> None:
    text = site("{threads: 1}").replace("  cameras:", "  objects: {track: [person, unicorn]}\n  cameras:")
    with pytest.raises(ConfigError) as err:
        parse_config(text, "site.yaml", tmp_path)
    assert "vision.objects.track[1]: the model has no class 'unicorn'" in str(err.value)
    text = site("{threads: 1}").replace(
        "url: /dev/null}", "url: /dev/null, zones: [{id: z, points: [[0, 0], [1, 0], [1, 1]], objects: [car]}]}")
    text = text.replace("  cameras:", "  objects: {track: [person]}\n  cameras:")
    with pytest.raises(ConfigError) as err:
        parse_config(text, "site.yaml", tmp_path)
    assert "'car' is not in the tracked objects" in str(err.value)


# ---- the faster decoding and letterbox give what the straightforward versions gave -------------------------


def nanodet_reference(detector: Detector, out: np.ndarray,
                      min_score: float) -> dict[int, tuple[int, float, list[float]]]:
    """The plain decoding: best class of every cell, then the distance softmax for cells over min_score."""
    assert detector.info.nanodet is not None and detector._priors is not None
    bins = detector.info.nanodet.reg_max + 1
    rows = out[0]
    nc = rows.shape[1] - 4 * bins
    classes = rows[:, :nc].argmax(axis=1)
    scores = rows[np.arange(len(rows)), classes]
    found = {}
    for cell in np.flatnonzero(scores >= min_score):
        logits = rows[cell, nc:].astype(np.float64).reshape(4, bins)
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        distance = (weights @ np.arange(bins)) / weights.sum(axis=1) * detector._priors[cell, 2]
        cx, cy = detector._priors[cell, :2]
        found[int(cell)] = (int(classes[cell]), float(scores[cell]),
                            [cx - distance[0], cy - distance[1], cx + distance[2], cy + distance[3]])
    return found


def test_nanodet_decoding_matches_the_plain_decoding_on_random_outputs(shipped: Detector) -> None:
    assert shipped._priors is not None
    rng = np.random.default_rng(8)
    cells, channels = len(shipped._priors), len(shipped.info.names) + 4 * 8
    for min_score in (0.1, 0.35, 0.9):
        out = rng.random((1, cells, channels), dtype=np.float32) ** 8  # mostly weak, a few strong class scores
        out[0, :, 80:] = rng.normal(0, 3, (cells, channels - 80))  # distance logits
        out[0, 7, :80] = min_score  # exactly on the threshold: kept
        out[0, 9, 3] = np.nan  # a broken score: argmax picks it, so the cell is dropped
        out[0, 9, 5] = 0.99
        boxes, scores, classes = shipped._raw([out], min_score)
        expected = nanodet_reference(shipped, out, min_score)
        assert 7 in expected and 9 not in expected
        assert len(scores) == len(expected) and len(expected) > 0
        order = np.argsort(-scores, kind="stable")
        ref = sorted(expected.values(), key=lambda r: -r[1])
        assert [int(c) for c in classes[order]] == [r[0] for r in ref]
        assert np.allclose(scores[order], [r[1] for r in ref])
        assert np.allclose(boxes[order], [r[2] for r in ref], atol=1e-3)


def test_letterbox_with_side_padding_and_scaling_fills_the_canvas_like_a_paste() -> None:
    rng = np.random.default_rng(3)
    for frame in (rng.integers(0, 256, (90, 40, 3), dtype=np.uint8),  # tall: padding left and right
                  rng.integers(0, 256, (30, 100, 3), dtype=np.uint8),  # wide: padding above and below
                  rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)):  # the input size: no scaling
        canvas, box = letterbox(frame, 64, 64)
        h, w = frame.shape[:2]
        nw, nh = round(w * box.scale), round(h * box.scale)
        x, y = int(box.pad_x), int(box.pad_y)
        expected = np.full((64, 64, 3), 114, np.uint8)
        expected[y:y + nh, x:x + nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(canvas, expected)
        assert (x > 0) == (h > w) and (y > 0) == (w > h)


def test_prepare_gives_the_letterboxed_canvas_as_a_tensor_for_any_frame_shape(shipped: Detector) -> None:
    rng = np.random.default_rng(4)
    for shape in ((576, 768, 3), (600, 300, 3), (416, 416, 3), (100, 700, 3)):
        frame = rng.integers(0, 256, shape, dtype=np.uint8)
        tensor, box = shipped.prepare(frame)
        canvas, expected_box = letterbox(frame, 416, 416)
        assert box == expected_box and tensor.shape == (1, 3, 416, 416) and tensor.flags.c_contiguous
        assert np.array_equal(tensor[0], canvas.transpose(2, 0, 1)[::-1].astype(np.float32))
