"""Holds `tessera detect`'s output for OSBS_029.tif to this project's Python reference.

    python3 model/compare_rust.py DETECTIONS.coco.json [--model MODEL.onnx]
    # DETECTIONS from `tessera detect --score 0.01 [--model MODEL.onnx]`

1. The detections equal ONNX Runtime's output for the same model on the same pixels
   (OSBS_029.png, which holds OSBS_029.tif's pixels), decoded here: same count, boxes within
   0.01 px, scores within 1e-6. The model is the shipped one (YOLOv8 layout, `common.decode`),
   or MODEL.onnx described by MODEL.json beside it or its `tessera:model` metadata, in either
   layout (a torchvision model's boxes, scores and labels: candidates from 0.01, greedy NMS
   at IoU 0.5, the best 300, clipped to the window, as `common.decode` does).
2. For the shipped model only, pycocotools' AP@0.5 and AP@[.5:.95] of the Rust COCO file
   against the tile's 61 annotations equal MODEL.md's OSBS_029 row (to its four decimals).

Exit 1 with the differences otherwise. Run in the evaluation venv (model/requirements.txt);
`batch-backend/tests/cli/detect.rs` runs it.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import common
from evaluate import parse_table

HERE = Path(__file__).parent


def description(session: ort.InferenceSession, model: Path) -> dict:
    beside = model.with_suffix(".json")
    if beside.exists():
        return json.loads(beside.read_text())
    return json.loads(session.get_modelmeta().custom_metadata_map["tessera:model"])


def reference(model: Path, rgb: np.ndarray):
    """ONNX Runtime's detections of `model` on one window: (boxes x1y1x2y2, scores)."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    d = description(session, model)
    x = ((rgb.astype(np.float32) / 255.0 - np.array(d["mean"], np.float32)) / np.array(d["std"], np.float32))
    x = x.transpose(2, 0, 1)
    if d["layout"]["kind"] == "yolov8":
        return common.decode(session.run(None, {d["input"]: x[None]})[0])
    layout = d["layout"]
    rank = len(session.get_inputs()[0].shape)
    outputs = session.run([layout["boxes"], layout["scores"]], {d["input"]: x if rank == 3 else x[None]})
    boxes, scores = outputs
    keep = scores >= 0.01
    boxes, scores = boxes[keep], scores[keep]
    kept = common.nms(boxes, scores, 0.5)[:300]
    return np.clip(boxes[kept], 0, d["size"]), scores[kept]


def main() -> int:
    rust = json.load(open(sys.argv[1]))
    model = Path(sys.argv[3]) if sys.argv[2:3] == ["--model"] else None
    problems = []
    boxes_r = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in rust["annotations"])])
    scores_r = np.array([a["score"] for a in rust["annotations"]], np.float32)

    rgb = common.real_image("OSBS_029")
    boxes_p, scores_p = reference(model or HERE / "tessera-crowns.onnx", rgb)

    def canonical(boxes, scores):
        order = np.lexsort((boxes[:, 0], -scores))
        return boxes[order], scores[order]

    if len(boxes_r) != len(boxes_p):
        problems.append(f"{len(boxes_r)} detections from Rust, {len(boxes_p)} from Python")
    else:
        (br, sr), (bp, sp) = canonical(boxes_r, scores_r), canonical(boxes_p, scores_p)
        box_diff = float(np.abs(br - bp).max()) if len(br) else 0.0
        score_diff = float(np.abs(sr - sp).max()) if len(sr) else 0.0
        print(f"{len(br)} detections; largest box difference {box_diff:.2e} px, score {score_diff:.2e}")
        if box_diff > 0.01:
            problems.append(f"boxes differ by up to {box_diff} px")
        if score_diff > 1e-6:
            problems.append(f"scores differ by up to {score_diff}")
    if model is not None:
        print("\n".join(problems), file=sys.stderr)
        return 1 if problems else 0

    truth = common.voc_boxes("OSBS_029")
    gt = COCO()
    gt.dataset = {
        "images": [{"id": 1, "width": rgb.shape[1], "height": rgb.shape[0]}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
             "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)}
            for i, (x1, y1, x2, y2) in enumerate(truth.tolist())
        ],
        "categories": [{"id": 1, "name": "crown"}],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        found = gt.loadRes([{"image_id": 1, "category_id": a["category_id"], "bbox": a["bbox"], "score": a["score"]}
                            for a in rust["annotations"]])
        cocoeval = COCOeval(gt, found, "bbox")
        cocoeval.params.maxDets = [1, 10, 300]
        cocoeval.evaluate()
        cocoeval.accumulate()
    precision = cocoeval.eval["precision"][:, :, 0, 0, -1]
    valid = precision > -1
    ap50 = round(float(precision[0][valid[0]].mean()), 4)
    ap = round(float(precision[valid].mean()), 4)
    card = parse_table((HERE / "MODEL.md").read_text())["OSBS_029 (real)"]
    print(f"AP@0.5 {ap50} (MODEL.md {card['ap50']}), AP@[.5:.95] {ap} (MODEL.md {card['ap']})")
    if (ap50, ap) != (card["ap50"], card["ap"]):
        problems.append(f"AP {ap50}/{ap} differs from MODEL.md's {card['ap50']}/{card['ap']}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
