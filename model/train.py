"""Trains Tessera's palm and tree-crown detector and exports it to ONNX.

    python3 model/train.py [--steps 2000] [--out model/tessera-crowns.onnx]

The model is a CenterNet-style detector (Zhou, Wang and Krähenbühl, "Objects as Points",
arXiv:1904.07850) with TTFNet's box regression (Liu et al., "Training-Time-Friendly Network for
Real-Time Object Detection", arXiv:1909.00700): ImageNet-pretrained MobileNetV2 (torchvision's
weights, fetched and checked by `weights.py`) with a feature pyramid to stride 4 predicts a
centre heatmap and, at every cell, the distances from the cell's centre to the four sides of its
crown's box, trained with GIoU loss on every cell near a crown's centre rather than on the one
centre cell. Fine-tuned end to end (but for the stride-2 and stride-4 layers) on real NEON tree
crowns and synthetic palm scenes (`data.py`). Fixed seeds; CPU by default (CUDA when available).

ONNX layout (YOLOv8-style, NMS outside the model): input `images` float32 (1, 3, 400, 400), RGB,
x / 255 normalised with ImageNet mean and std (common.normalise); output `detections` float32
(1, 5, 10000): rows cx, cy, w, h in input pixels and the crown score in [0, 1], one column per
4×4-pixel cell. Scores of cells that are not a 3×3 local maximum of the heatmap are zeroed
(CenterNet's peak extraction), so greedy NMS at IoU 0.5 afterwards only merges neighbours.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import common
import data
import weights

SEED = 20261121
LEARNING_RATE = 2e-3  # one-cycle peak for the new layers (neck and heads)
BACKBONE_LR_SCALE = 0.1  # the pretrained trunk learns at a tenth of the new layers' rate
BOX_LOSS_WEIGHT = 5.0  # TTFNet's weight of the GIoU loss against the heatmap's focal loss


def conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CrownNet(nn.Module):
    """Stride-4 CenterNet on ImageNet MobileNetV2's trunk with FPN merges to stride 4.

    The trunk is torchvision's `mobilenet_v2().features[:18]` (Sandler et al., arXiv:1801.04381;
    the 1280-channel last layer and the classifier are dropped), tapped after `features[3]`
    (24 channels, stride 4), `[6]` (32, stride 8), `[13]` (96, stride 16) and `[17]` (320,
    stride 32); 1×1 laterals bring each to 128 channels and 3×3 merges add them top-down, as
    the FPN does (Lin et al., arXiv:1612.03144), down to one stride-4 map with 64 channels for
    the heads. The layers at strides 2 and 4 (`features[:FROZEN]`) stay frozen with their batch
    statistics, as Detectron2 freezes a ResNet's stem and first stage (FREEZE_AT = 2): generic
    edges and colours, and on 2 CPU cores their backward pass was 25% of a step (1.5 s → 1.15
    s). Everything after them is fine-tuned. Input (N, 3, H, W) normalised as `common.normalise`, H and W multiples of 32;
    output heatmap logits (N, 1, H/4, W/4) and side distances (N, 4, H/4, W/4) (`cell_boxes`)."""

    TAPS = (3, 6, 13, 17)  # features[i] whose outputs feed the pyramid: strides 4, 8, 16, 32
    FROZEN = 4  # features[:4] (strides 2 and 4) keep their ImageNet weights and statistics

    def __init__(self, trunk: nn.Sequential | None = None):
        super().__init__()
        self.trunk = trunk if trunk is not None else torchvision.models.mobilenet_v2().features[:18]
        self.lat32 = nn.Conv2d(320, 128, 1)
        self.lat16 = nn.Conv2d(96, 128, 1)
        self.lat8 = nn.Conv2d(32, 128, 1)
        self.lat4 = nn.Conv2d(24, 128, 1)
        self.merge16 = conv(128, 128)
        self.merge8 = conv(128, 96)
        self.reduce8 = nn.Conv2d(96, 128, 1)
        self.merge4 = conv(128, 64)
        self.heatmap = nn.Sequential(conv(64, 64), nn.Conv2d(64, 1, 1))
        self.sides = nn.Sequential(conv(64, 64), nn.Conv2d(64, 4, 1))
        nn.init.constant_(self.heatmap[-1].bias, -2.19)  # prior 0.1, as CenterNet
        self.trunk[: self.FROZEN].requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.trunk[: self.FROZEN].eval()  # frozen layers keep ImageNet's batch statistics
        return self

    def forward(self, x):
        taps = []
        for i, layer in enumerate(self.trunk):
            x = layer(x)
            if i in self.TAPS:
                taps.append(x)
        c4, c8, c16, c32 = taps
        p16 = self.merge16(self.lat16(c16) + F.interpolate(self.lat32(c32), size=c16.shape[-2:], mode="nearest"))
        p8 = self.merge8(self.lat8(c8) + F.interpolate(p16, size=c8.shape[-2:], mode="nearest"))
        p4 = self.merge4(self.lat4(c4) + F.interpolate(self.reduce8(p8), size=c4.shape[-2:], mode="nearest"))
        return self.heatmap(p4), self.sides(p4)


def pretrained_trunk() -> nn.Sequential:
    """MobileNetV2's `features[:18]` with torchvision's ImageNet-1k weights (IMAGENET1K_V1,
    BSD-3-Clause), loaded strictly from the file `weights.fetch` checks and caches."""
    mobilenet = torchvision.models.mobilenet_v2()
    mobilenet.load_state_dict(torch.load(weights.fetch(), map_location="cpu", weights_only=True), strict=True)
    return mobilenet.features[:18]


def cell_boxes(sides: torch.Tensor) -> torch.Tensor:
    """Raw side outputs (N, 4, H, W) → boxes (N, 4, H, W) x1 y1 x2 y2 in input pixels.

    Cell (row, col) has its centre at ((col + 0.5) · STRIDE, (row + 0.5) · STRIDE); the four
    outputs are log distances, in units of STRIDE, to the box's left, top, right and bottom."""
    n, _, h, w = sides.shape
    distance = torch.exp(sides.clamp(max=6.0)) * common.STRIDE
    ys = (torch.arange(h, dtype=sides.dtype, device=sides.device).view(1, 1, h, 1) + 0.5) * common.STRIDE
    xs = (torch.arange(w, dtype=sides.dtype, device=sides.device).view(1, 1, 1, w) + 0.5) * common.STRIDE
    return torch.cat(
        [xs - distance[:, 0:1], ys - distance[:, 1:2], xs + distance[:, 2:3], ys + distance[:, 3:4]], 1
    )


class Exported(nn.Module):
    """The ONNX graph: CrownNet plus decoding to (1, 5, N) cx, cy, w, h, score."""

    def __init__(self, net: CrownNet):
        super().__init__()
        self.net = net

    def forward(self, images):
        heatmap, sides = self.net(images)
        score = torch.sigmoid(heatmap)
        peak = F.max_pool2d(score, 3, stride=1, padding=1)
        score = score * (peak == score).to(score.dtype)
        box = cell_boxes(sides)
        centre = (box[:, 0:2] + box[:, 2:4]) / 2
        out = torch.cat([centre, box[:, 2:4] - box[:, 0:2], score], 1)
        n, _, h, w = score.shape
        return out.view(n, 5, h * w)


# ---- loss (CenterNet's heatmap, TTFNet's boxes; the targets are data.targets) --------------


def focal_loss(logits, target):
    """CenterNet's penalty-reduced focal loss (α = 2, β = 4), per object."""
    pred = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg = 1 - pos
    pos_loss = torch.log(pred) * (1 - pred) ** 2 * pos
    neg_loss = torch.log(1 - pred) * pred**2 * (1 - target) ** 4 * neg
    n = pos.sum().clamp(min=1)
    return -(pos_loss.sum() + neg_loss.sum()) / n


def bf16_supported(device: str) -> bool:
    """Whether autocast to bfloat16 is fast here: CUDA, or a CPU with native bf16 (AVX512-BF16, AMX)."""
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


class Crowns(torch.utils.data.IterableDataset):
    """`data.Windows` as an endless torch dataset, one seeded stream per DataLoader worker."""

    def __init__(self, seed: int, scenes: int):
        super().__init__()
        self.seed = seed
        self.windows = data.Windows(scenes)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = random.Random(self.seed * 1000 + (info.id if info else 0))
        while True:
            yield self.windows.sample(rng)


def train(steps: int, batch: int, scenes: int, out: Path, device: str, workers: int, bf16: bool):
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    net = CrownNet(pretrained_trunk()).to(device, memory_format=torch.channels_last)
    params = sum(p.numel() for p in net.parameters())
    precision = "bfloat16 autocast" if bf16 else "float32"
    start = time.time()
    print(f"CrownNet: {params:,} parameters, training {steps} steps of {batch} on {device} ({precision})", flush=True)
    dataset = Crowns(SEED, scenes)
    print(f"drew {scenes} synthetic scenes in {time.time() - start:.0f} s", flush=True)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, num_workers=workers, persistent_workers=workers > 0
    )
    trunk = [p for p in net.trunk.parameters() if p.requires_grad]
    trunk_ids = {id(p) for p in net.trunk.parameters()}
    new_layers = [p for p in net.parameters() if id(p) not in trunk_ids]
    optimiser = torch.optim.AdamW([{"params": trunk}, {"params": new_layers}], lr=LEARNING_RATE, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=[LEARNING_RATE * BACKBONE_LR_SCALE, LEARNING_RATE], total_steps=steps, pct_start=0.1
    )
    start = time.time()
    net.train()
    for step, (images, heat, box, weight) in enumerate(loader):
        if step >= steps:
            break
        images = images.to(device, memory_format=torch.channels_last)
        heat, box, weight = (t.to(device) for t in (heat, box, weight))
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            p_heat, p_sides = net(images)
        loss_heat = focal_loss(p_heat.float(), heat)
        cells = weight > 0
        predicted = cell_boxes(p_sides.float()).permute(0, 2, 3, 1)[cells]
        wanted = box.permute(0, 2, 3, 1)[cells]
        giou = torchvision.ops.generalized_box_iou_loss(predicted, wanted, reduction="none")
        loss_box = (giou * weight[cells]).sum() / weight.sum().clamp(min=1e-4)
        loss = loss_heat + BOX_LOSS_WEIGHT * loss_box
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        optimiser.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            print(
                f"step {step:5d}  loss {loss.item():.3f} (heatmap {loss_heat.item():.3f}, "
                f"GIoU {loss_box.item():.3f})  {time.time() - start:.0f} s",
                flush=True,
            )
    net.eval().cpu().to(memory_format=torch.contiguous_format)
    export(net, out)
    print(f"trained in {time.time() - start:.0f} s; wrote {out}", flush=True)


def export(net: CrownNet, out: Path):
    model = Exported(net).eval()
    example = torch.zeros(1, 3, common.WINDOW, common.WINDOW)
    torch.onnx.export(
        model,
        (example,),
        str(out),
        input_names=["images"],
        output_names=["detections"],
        opset_version=17,
        dynamo=False,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--scenes", type=int, default=5000, help="synthetic training scenes drawn up front")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "tessera-crowns.onnx")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--fp32", action="store_true", help="train in float32 even where bfloat16 is fast")
    args = parser.parse_args()
    bf16 = not args.fp32 and bf16_supported(args.device)
    train(args.steps, args.batch, args.scenes, args.out, args.device, args.workers, bf16)


if __name__ == "__main__":
    main()
