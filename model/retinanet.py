"""Builds the torchvision-layout test model: a RetinaNet (torchvision.models.detection), random
weights, exported to ONNX as DeepForest exports its RetinaNet. `tessera detect`'s second
accepted output layout (boxes [N, 4] / scores [N] / labels [N]) is tested with it.

    python3 model/retinanet.py [--out model/retinanet-tiny.onnx]   # in the training venv

The backbone is two small convolutions (8 channels, stride 8) instead of DeepForest's ResNet-50,
so the file stays small enough to commit (the training venv, torch with its CUDA libraries, is
5.6 GB: too much for CI to install for one test). Everything after the backbone is torchvision's
own RetinaNet: anchors, head, box decoding, score threshold, NMS, and the transform that
normalises with ImageNet's mean and standard deviation inside the graph, so the model takes
`pixel / 255`. Weights are drawn with seed 0, the classification subnet's with a standard deviation of
0.3 and a bias of -4 (not torchvision's 0.01 and focal-loss prior), so scores spread (0.22 to
0.85 on OSBS_029, no two equal) and the test has hundreds of detections to hold
Rust's decoding to Python's; the box regression's with 0.1, so boxes move off the anchor grid
(boxes on it overlap at exactly IoU 0.5, where float rounding decides NMS).

The model description goes into the ONNX metadata under `tessera:model` (the JSON of
`tessera_core::detect::ModelDescription`), the second place `tessera detect` looks after a
`.json` file beside the model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import onnx
import torch
from torch import nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator

WINDOW = 400

DESCRIPTION = {
    "input": "image",
    "size": WINDOW,
    "mean": [0.0, 0.0, 0.0],
    "std": [1.0, 1.0, 1.0],
    "classes": ["tree"],
    "gsd_m": [0.05, 0.5],
    "layout": {"kind": "torchvision", "boxes": "boxes", "scores": "scores", "labels": "labels"},
}


class Backbone(nn.Sequential):
    def __init__(self):
        super().__init__(
            nn.Conv2d(3, 8, 3, stride=4, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.out_channels = 8


class Exported(nn.Module):
    """One image `[3, H, W]` in `[0, 1]` → boxes, scores, labels (torchvision's dict, as a tuple)."""

    def __init__(self, model: RetinaNet):
        super().__init__()
        self.model = model

    def forward(self, image):
        out = self.model([image])[0]
        return out["boxes"], out["scores"], out["labels"]


def build() -> RetinaNet:
    torch.manual_seed(0)
    anchors = AnchorGenerator(sizes=((32, 64, 128),), aspect_ratios=((0.5, 1.0, 2.0),))
    model = RetinaNet(
        Backbone(),
        num_classes=1,
        anchor_generator=anchors,
        min_size=WINDOW,
        max_size=WINDOW,
        score_thresh=0.05,
        detections_per_img=300,
    )
    head = model.head.classification_head
    for conv in [*(block[0] for block in head.conv), head.cls_logits]:
        nn.init.normal_(conv.weight, std=0.3)
    nn.init.constant_(head.cls_logits.bias, -4.0)
    regression = model.head.regression_head
    for conv in [*(block[0] for block in regression.conv), regression.bbox_reg]:
        nn.init.normal_(conv.weight, std=0.1)
    return model.eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "retinanet-tiny.onnx")
    args = parser.parse_args()
    model = Exported(build()).eval()
    torch.onnx.export(
        model,
        (torch.rand(3, WINDOW, WINDOW),),
        str(args.out),
        input_names=["image"],
        output_names=["boxes", "scores", "labels"],
        dynamic_axes={"boxes": {0: "n"}, "scores": {0: "n"}, "labels": {0: "n"}},
        opset_version=17,
        dynamo=False,
    )
    proto = onnx.load(str(args.out))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "tessera:model", json.dumps(DESCRIPTION)
    onnx.save(proto, str(args.out))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
