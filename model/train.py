"""Trains Tessera's palm and tree-crown detector and exports it to ONNX.

    python3 model/train.py [--steps 5000] [--out model/tessera-crowns.onnx]

The model is a CenterNet-style detector (Zhou, Wang and Krähenbühl, "Objects as Points",
arXiv:1904.07850) with TTFNet's box regression (Liu et al., "Training-Time-Friendly Network for
Real-Time Object Detection", arXiv:1909.00700): a small residual CNN with a feature pyramid to
stride 4 predicts a centre heatmap and, at every cell, the distances from the cell's centre to
the four sides of its crown's box, trained with GIoU loss on every cell near a crown's centre
rather than on the one centre cell. Trained from scratch (no pretrained weights can be
downloaded here) on real NEON tree crowns and synthetic palm scenes (`data.py`). Fixed seeds; CPU by
default (CUDA when available).

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

SEED = 20261121
BOX_LOSS_WEIGHT = 5.0  # TTFNet's weight of the GIoU loss against the heatmap's focal loss


class Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x):
        return F.relu(x + self.body(x))


def down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CrownNet(nn.Module):
    """Stride-4 CenterNet on a residual backbone (strides 2, 4, 8, 16, 32) with FPN merges."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(down(3, 24), conv(24, 24))  # /2
        self.s4 = nn.Sequential(down(24, 40), Residual(40))  # /4
        self.s8 = nn.Sequential(down(40, 64), Residual(64), Residual(64))  # /8
        self.s16 = nn.Sequential(down(64, 96), Residual(96), Residual(96))  # /16
        self.s32 = nn.Sequential(down(96, 128), Residual(128))  # /32: context for large crowns
        self.lat16 = nn.Conv2d(96, 128, 1)
        self.lat8 = nn.Conv2d(64, 128, 1)
        self.lat4 = nn.Conv2d(40, 128, 1)
        self.merge16 = conv(128, 128)
        self.merge8 = conv(128, 96)
        self.reduce8 = nn.Conv2d(96, 128, 1)
        self.merge4 = conv(128, 64)
        self.heatmap = nn.Sequential(conv(64, 64), nn.Conv2d(64, 1, 1))
        self.sides = nn.Sequential(conv(64, 64), nn.Conv2d(64, 4, 1))
        nn.init.constant_(self.heatmap[-1].bias, -2.19)  # prior 0.1, as CenterNet

    def forward(self, x):
        c4 = self.s4(self.stem(x))
        c8 = self.s8(c4)
        c16 = self.s16(c8)
        c32 = self.s32(c16)
        p16 = self.merge16(self.lat16(c16) + F.interpolate(c32, size=c16.shape[-2:], mode="nearest"))
        p8 = self.merge8(self.lat8(c8) + F.interpolate(p16, size=c8.shape[-2:], mode="nearest"))
        p4 = self.merge4(self.lat4(c4) + F.interpolate(self.reduce8(p8), size=c4.shape[-2:], mode="nearest"))
        return self.heatmap(p4), self.sides(p4)


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
    net = CrownNet().to(device, memory_format=torch.channels_last)
    params = sum(p.numel() for p in net.parameters())
    precision = "bfloat16 autocast" if bf16 else "float32"
    start = time.time()
    print(f"CrownNet: {params:,} parameters, training {steps} steps of {batch} on {device} ({precision})", flush=True)
    dataset = Crowns(SEED, scenes)
    print(f"drew {scenes} synthetic scenes in {time.time() - start:.0f} s", flush=True)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, num_workers=workers, persistent_workers=workers > 0
    )
    optimiser = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=steps, pct_start=0.1)
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
    parser.add_argument("--steps", type=int, default=5000)
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
