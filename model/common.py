"""What training and evaluation share: the data, the window size, normalisation, decoding, NMS.

Data (see MODEL.md for licences):
- real tree crowns from the deepforest==2.1.0 wheel (NEON imagery, 0.1 m GSD), fetched by
  `tests/fetch-fixtures.sh` into $TESSERA_FIXTURES/deepforest-2.1.0/: the two YELL crops
  (training, except crop2's bottom 400 rows, the validation split) and OSBS_029, SOAP_061
  (held out);
- synthetic palm scenes from `synth.py`; held-out synthetic seeds never overlap training seeds.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

WINDOW = 400  # the model's input: 1×3×400×400
STRIDE = 4  # output grid: 100×100 candidates
MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # ImageNet statistics
STD = np.array([0.229, 0.224, 0.225], np.float32)

FIXTURES = Path(os.environ.get("TESSERA_FIXTURES", Path.home() / ".cache/tessera/fixtures"))
DEEPFOREST = FIXTURES / "deepforest-2.1.0"
TRAIN_REAL = [
    "2019_YELL_2_528000_4978000_image_crop2",
    "2019_YELL_2_541000_4977000_image_crop",
]
HELD_OUT_REAL = ["OSBS_029", "SOAP_061"]
VALIDATION_CROP = TRAIN_REAL[0]  # its bottom WINDOW rows are the validation split, never trained on
SYNTH_TRAIN_SEED0 = 0  # training scenes use seeds 0, 1, 2, …
SYNTH_HELD_OUT_SEED0 = 1_000_000_000  # 100 held-out scenes: seeds 1e9 … 1e9+99
SYNTH_HELD_OUT_COUNT = 100


def voc_boxes(name: str) -> np.ndarray:
    """Boxes (N, 4) x1 y1 x2 y2 in pixels from `{name}.xml` (Pascal VOC), every label one class."""
    root = ET.parse(DEEPFOREST / f"{name}.xml").getroot()
    boxes = [
        [float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
        for o in root.iter("object")
    ]
    return np.array(boxes, np.float32).reshape(-1, 4)


def real_image(name: str) -> np.ndarray:
    """RGB uint8 (H, W, 3)."""
    return np.asarray(Image.open(DEEPFOREST / f"{name}.png").convert("RGB"))


def clip_boxes(boxes: np.ndarray, x0: float, y0: float, w: int, h: int, min_visible: float = 0.5):
    """Boxes moved into a window at (x0, y0) of w × h, kept when at least `min_visible` shows."""
    b = boxes - np.array([x0, y0, x0, y0], np.float32)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    c = np.stack([b[:, 0].clip(0, w), b[:, 1].clip(0, h), b[:, 2].clip(0, w), b[:, 3].clip(0, h)], 1)
    visible = (c[:, 2] - c[:, 0]).clip(0) * (c[:, 3] - c[:, 1]).clip(0)
    return c[visible >= min_visible * np.maximum(area, 1e-6)]


def validation_windows() -> list[tuple[np.ndarray, np.ndarray]]:
    """The YELL validation split as model windows [(rgb 400×400, boxes)]: the five non-overlapping
    windows along the bottom 400 rows of VALIDATION_CROP (88 crowns), boxes kept when half
    shows. Same site as the training crops, so an in-domain reference beside the held-out sites;
    never trained on (`training_crop`)."""
    rgb, boxes = real_image(VALIDATION_CROP), voc_boxes(VALIDATION_CROP)
    y0 = rgb.shape[0] - WINDOW
    return [
        (rgb[y0 : y0 + WINDOW, x0 : x0 + WINDOW], clip_boxes(boxes, x0, y0, WINDOW, WINDOW))
        for x0 in range(0, rgb.shape[1] - WINDOW + 1, WINDOW)
    ]


def training_crop(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A YELL crop as trained on: (rgb uint8 (H, W, 3), boxes (N, 4) kept when half shows).
    VALIDATION_CROP loses its bottom WINDOW rows (the validation split, whole width); the other
    crop is used whole."""
    rgb, boxes = real_image(name), voc_boxes(name)
    rows = rgb.shape[0] - WINDOW if name == VALIDATION_CROP else rgb.shape[0]
    return rgb[:rows], clip_boxes(boxes, 0, 0, rgb.shape[1], rows, 0.5)


def normalise(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) → float32 (3, H, W): x / 255, minus MEAN, over STD per channel."""
    return ((rgb.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in `a` (N, 4) with every box in `b` (M, 4), x1 y1 x2 y2: (N, M)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, best score first. Boxes x1 y1 x2 y2."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        order = rest[iou_matrix(boxes[i : i + 1], boxes[rest])[0] <= iou]
    return np.array(keep, np.int64)


def decode(output: np.ndarray, min_score: float = 0.01, iou: float = 0.5, max_detections: int = 300):
    """The model's output (1, 5, N): cx, cy, w, h (input pixels), score → (boxes x1y1x2y2, scores)."""
    cx, cy, w, h, score = output[0]
    keep = score >= min_score
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)[keep]
    scores = score[keep]
    kept = nms(boxes, scores, iou)[:max_detections]
    boxes = np.clip(boxes[kept], 0, WINDOW)
    return boxes, scores[kept]
