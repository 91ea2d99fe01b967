"""Evaluates the committed detector with ONNX Runtime (CPU) on held-out data.

    python3 model/evaluate.py [--model model/tessera-crowns.onnx] [--write] [--check]

Held out, never trained or tuned on: the real NEON tiles OSBS_029 (61 boxes) and SOAP_061 (37)
from the deepforest==2.1.0 wheel, and 100 synthetic palm scenes (seeds 1e9 … 1e9+99, 400×400,
0.05–0.5 m). Beside them, as an in-domain reference, the YELL validation split (the training
site's crop2, bottom rows; common.validation_windows). Metrics come from pycocotools' COCOeval
(bbox): AP@0.5 and AP@[.5:.95], with detections decoded as the backend will (common.decode:
score ≥ 0.01, greedy NMS at IoU 0.5, at most 300 per window); precision and recall at the
default score threshold, matching each detection greedily (best score first) to an unmatched
annotation with IoU ≥ 0.5.

--write rewrites the metrics table in MODEL.md and draws model/osbs_029_detections.png;
--check fails (exit 1) when any metric differs from MODEL.md's by more than 0.01.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageDraw
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import common
import synth

HERE = Path(__file__).parent
DEFAULT_THRESHOLD = 0.3
TOLERANCE = 0.01


def evaluate(session: ort.InferenceSession, windows: list[tuple[np.ndarray, np.ndarray]], threshold: float):
    """COCO AP and thresholded precision/recall over `windows` [(rgb 400×400, boxes)]."""
    images, annotations, results = [], [], []
    tp = fp = positives = 0
    detections = []
    for image_id, (rgb, truth) in enumerate(windows, start=1):
        output = session.run(None, {"images": common.normalise(rgb)[None]})[0]
        boxes, scores = common.decode(output)
        detections.append((boxes, scores))
        images.append({"id": image_id, "width": rgb.shape[1], "height": rgb.shape[0]})
        for x1, y1, x2, y2 in truth.tolist():
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                 "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)}
            )
        for (x1, y1, x2, y2), score in zip(boxes.tolist(), scores.tolist()):
            results.append({"image_id": image_id, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
        kept = boxes[scores >= threshold]
        positives += len(truth)
        matched = np.zeros(len(truth), bool)
        if len(kept) and len(truth):
            overlaps = common.iou_matrix(kept, truth)
            for row in overlaps:  # kept is in descending score order
                candidates = np.where((row >= 0.5) & ~matched)[0]
                if len(candidates):
                    matched[candidates[np.argmax(row[candidates])]] = True
                    tp += 1
                else:
                    fp += 1
        else:
            fp += len(kept)
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "crown"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        found = coco.loadRes(results) if results else COCO()
        cocoeval = COCOeval(coco, found, "bbox")
        cocoeval.params.maxDets = [1, 10, 300]
        cocoeval.evaluate()
        cocoeval.accumulate()
    # precision[t, recall, class, area, maxDets]: IoU thresholds .5:.05:.95, all areas, 300 detections
    precision = cocoeval.eval["precision"][:, :, 0, 0, -1]
    valid = precision > -1
    return {
        "ap50": round(float(precision[0][valid[0]].mean()) if valid[0].any() else 0.0, 4),
        "ap": round(float(precision[valid].mean()) if valid.any() else 0.0, 4),
        "precision": round(tp / max(tp + fp, 1), 4),
        "recall": round(tp / max(positives, 1), 4),
        "annotations": positives,
    }, detections


def evaluation_sets():
    """The held-out sets, then the YELL validation split (same site as training, not held out)."""
    real = {name: [(common.real_image(name), common.voc_boxes(name))] for name in common.HELD_OUT_REAL}
    scenes = []
    for i in range(common.SYNTH_HELD_OUT_COUNT):
        rgb, boxes, _ = synth.scene(common.SYNTH_HELD_OUT_SEED0 + i, (common.WINDOW, common.WINDOW))
        scenes.append((rgb, boxes))
    return {
        "OSBS_029 (real)": real["OSBS_029"],
        "SOAP_061 (real)": real["SOAP_061"],
        "real held-out tiles": real["OSBS_029"] + real["SOAP_061"],
        "synthetic held-out palms": scenes,
        "YELL validation (training site)": common.validation_windows(),
    }


def table(metrics: dict) -> str:
    lines = [
        "| set | annotations | AP@0.5 | AP@[.5:.95] | precision @ 0.3 | recall @ 0.3 |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in metrics.items():
        lines.append(
            f"| {name} | {m['annotations']} | {m['ap50']:.4f} | {m['ap']:.4f} | {m['precision']:.4f} | {m['recall']:.4f} |"
        )
    return "\n".join(lines)


def parse_table(text: str) -> dict:
    block = text.split("<!-- metrics:begin -->")[1].split("<!-- metrics:end -->")[0]
    metrics = {}
    for line in block.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        metrics[cells[0]] = dict(zip(["annotations", "ap50", "ap", "precision", "recall"], map(float, cells[1:])))
    return metrics


def draw(rgb: np.ndarray, truth: np.ndarray, boxes: np.ndarray, scores: np.ndarray, path: Path):
    """Annotations (left, yellow) beside detections ≥ the default threshold (right, red)."""
    left = Image.fromarray(rgb)
    right = Image.fromarray(rgb)
    for box in truth.tolist():
        ImageDraw.Draw(left).rectangle(box, outline=(255, 230, 0), width=2)
    for box in boxes[scores >= DEFAULT_THRESHOLD].tolist():
        ImageDraw.Draw(right).rectangle(box, outline=(255, 40, 40), width=2)
    canvas = Image.new("RGB", (rgb.shape[1] * 2 + 10, rgb.shape[0]), (255, 255, 255))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (rgb.shape[1] + 10, 0))
    canvas.save(path, optimize=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=HERE / "tessera-crowns.onnx")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(args.model), options, providers=["CPUExecutionProvider"])
    metrics = {}
    for name, windows in evaluation_sets().items():
        metrics[name], detections = evaluate(session, windows, DEFAULT_THRESHOLD)
        if name == "OSBS_029 (real)" and args.write:
            (rgb, truth), (boxes, scores) = windows[0], detections[0]
            draw(rgb, truth, boxes, scores, HERE / "osbs_029_detections.png")
    print(table(metrics))
    card = HERE / "MODEL.md"
    if args.write:
        text = card.read_text()
        text = re.sub(
            r"<!-- metrics:begin -->.*<!-- metrics:end -->",
            lambda _: f"<!-- metrics:begin -->\n{table(metrics)}\n<!-- metrics:end -->",
            text,
            flags=re.S,
        )
        card.write_text(text)
        (HERE / "eval.json").write_text(json.dumps(metrics, indent=1) + "\n")
    if args.check:
        expected = parse_table(card.read_text())
        problems = []
        for name, m in metrics.items():
            for key in ("ap50", "ap", "precision", "recall"):
                if name not in expected or abs(expected[name][key] - m[key]) > TOLERANCE:
                    want = expected.get(name, {}).get(key)
                    problems.append(f"{name} {key}: measured {m[key]:.4f}, MODEL.md says {want}")
        if problems:
            print("metrics differ from MODEL.md by more than 0.01:\n  " + "\n  ".join(problems), file=sys.stderr)
            sys.exit(1)
        print("metrics match MODEL.md within 0.01")


if __name__ == "__main__":
    main()
