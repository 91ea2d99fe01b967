"""Trains Tessera's palm and tree-crown detector and exports it to ONNX.

    python3 model/train.py [--steps 5000] [--out model/tessera-crowns.onnx]

The model is a CenterNet-style detector (Zhou, Wang and Krähenbühl, "Objects as Points",
arXiv:1904.07850) with TTFNet's box regression (Liu et al., "Training-Time-Friendly Network for
Real-Time Object Detection", arXiv:1909.00700): a small residual CNN with a feature pyramid to
stride 4 predicts a centre heatmap and, at every cell, the distances from the cell's centre to
the four sides of its crown's box, trained with GIoU loss on every cell near a crown's centre
rather than on the one centre cell. Trained from scratch (no pretrained weights can be
downloaded here) on real NEON tree crowns and synthetic palm scenes. Fixed seeds; CPU by
default (CUDA when available).

ONNX layout (YOLOv8-style, NMS outside the model): input `images` float32 (1, 3, 400, 400), RGB,
x / 255 normalised with ImageNet mean and std (common.normalise); output `detections` float32
(1, 5, 10000): rows cx, cy, w, h in input pixels and the crown score in [0, 1], one column per
4×4-pixel cell. Scores of cells that are not a 3×3 local maximum of the heatmap are zeroed
(CenterNet's peak extraction), so greedy NMS at IoU 0.5 afterwards only merges neighbours.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import common
import synth

SEED = 20261121
CROP = 256  # training windows; the network is fully convolutional
REAL_SHARE = 0.45  # of training windows that are real crops
PASTE_SHARE = 0.2  # real crowns pasted onto synthetic ground (copy-paste); the rest are synthetic scenes
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


# ---- targets and loss (CenterNet's heatmap, TTFNet's boxes) ----------------------------------


GAUSSIAN_ALPHA = 0.54  # TTFNet's α = β: Gaussian σ = α · side / 6, regression area the same


def targets(boxes: np.ndarray, size: int):
    """TTFNet targets for a size × size window with boxes (N, 4) x1 y1 x2 y2 in pixels.

    Returns heatmap (1, S, S) with S = size / STRIDE: an elliptical Gaussian per crown peaking at
    1 in its centre cell, σ = α · (box side in cells) / 6; box (4, S, S): the x1 y1 x2 y2 that
    each cell regresses; weight (S, S): each crown's Gaussian over the cells inside its
    α-scaled box, normalised to sum to log(box area in pixels), so large crowns count more but
    not in proportion to their area. Smaller crowns are drawn last and own shared cells."""
    s = size // common.STRIDE
    heat = np.zeros((1, s, s), np.float32)
    box = np.zeros((4, s, s), np.float32)
    weight = np.zeros((s, s), np.float32)
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float32)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in np.argsort(-area, kind="stable"):
        x1, y1, x2, y2 = boxes[i]
        w, h = (x2 - x1) / common.STRIDE, (y2 - y1) / common.STRIDE
        if w < 0.5 or h < 0.5:
            continue
        ix = min(int((x1 + x2) / 2 / common.STRIDE), s - 1)
        iy = min(int((y1 + y2) / 2 / common.STRIDE), s - 1)
        sx, sy = max(GAUSSIAN_ALPHA * w / 6, 0.3), max(GAUSSIAN_ALPHA * h / 6, 0.3)
        g = np.exp(-((xs - ix) ** 2) / (2 * sx**2) - (ys - iy) ** 2 / (2 * sy**2))
        heat[0] = np.maximum(heat[0], g)
        half_w, half_h = max(GAUSSIAN_ALPHA * w / 2, 0.5), max(GAUSSIAN_ALPHA * h / 2, 0.5)
        inside = (np.abs(xs - ix) <= half_w) & (np.abs(ys - iy) <= half_h)
        g = g * inside
        box[:, inside] = np.array([x1, y1, x2, y2], np.float32)[:, None]
        weight[inside] = g[inside] / g.sum() * math.log(max(area[i], 2.0))
    return heat, box, weight


def focal_loss(logits, target):
    """CenterNet's penalty-reduced focal loss (α = 2, β = 4), per object."""
    pred = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg = 1 - pos
    pos_loss = torch.log(pred) * (1 - pred) ** 2 * pos
    neg_loss = torch.log(1 - pred) * pred**2 * (1 - target) ** 4 * neg
    n = pos.sum().clamp(min=1)
    return -(pos_loss.sum() + neg_loss.sum()) / n


# ---- data ----------------------------------------------------------------------------------


def augment(rng: random.Random, rgb: np.ndarray, boxes: np.ndarray):
    """Flips and quarter turns (boxes follow), then photometric jitter (`photometric`)."""
    size = rgb.shape[0]
    if rng.random() < 0.5:
        rgb = rgb[:, ::-1]
        boxes = np.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], 1)
    for _ in range(rng.randrange(4)):  # 90° counter-clockwise: (x, y) → (y, size − x)
        rgb = np.rot90(rgb)
        boxes = np.stack([boxes[:, 1], size - boxes[:, 2], boxes[:, 3], size - boxes[:, 0]], 1)
    return photometric(rng, np.ascontiguousarray(rgb)), boxes.reshape(-1, 4).astype(np.float32)


def photometric(rng: random.Random, rgb: np.ndarray) -> np.ndarray:
    """Colour and sharpness jitter for sites and sensors the two real crops do not show.

    RGB uint8 (H, W, 3) in and out: hue ±17° and saturation ×0.6–1.4 (in Pillow's HSV), blur
    (σ 0.3–1.5 px, 25%), gamma 0.7–1.4, contrast and brightness ×0.75–1.25, per-channel gain
    ×0.9–1.1, grey (10%) and Gaussian noise (30%, σ ≤ 3% of full scale)."""
    from PIL import Image, ImageFilter

    image = Image.fromarray(rgb)
    if rng.random() < 0.8:
        hue, saturation, value = image.convert("HSV").split()
        shift, gain = rng.randint(-12, 12), rng.uniform(0.6, 1.4)
        hue = hue.point([(v + shift) % 256 for v in range(256)])
        saturation = saturation.point([min(255, round(v * gain)) for v in range(256)])
        image = Image.merge("HSV", (hue, saturation, value)).convert("RGB")
    if rng.random() < 0.25:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    x = np.asarray(image, np.float32) / 255.0
    x = x ** math.exp(rng.uniform(math.log(0.7), math.log(1.4)))
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.75, 1.25) + mean
    x = x * rng.uniform(0.75, 1.25) * np.array([rng.uniform(0.9, 1.1) for _ in range(3)], np.float32)
    if rng.random() < 0.1:
        x = np.repeat(x.mean(2, keepdims=True), 3, 2)
    if rng.random() < 0.3:
        x = x + np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(0, 0.03), x.shape)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def draw_scene(seed: int):
    """Synthetic training scene `seed` at CROP × CROP: (rgb, boxes)."""
    rgb, boxes, _ = synth.scene(seed, (CROP, CROP))
    return rgb, boxes


def crown_cutouts(crops: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every annotated crown wholly inside its crop, as (rgb uint8 (h, w, 3), alpha float32 (h, w)):
    the box's pixels and an ellipse inscribed in the box, opaque to 80% of its radius and fading
    to 0 at the box's edge, so a pasted crown carries little of its own ground."""
    cutouts = []
    for rgb, boxes in crops:
        height, width = rgb.shape[:2]
        for x1, y1, x2, y2 in np.round(boxes).astype(int):
            if x1 <= 0 or y1 <= 0 or x2 >= width or y2 >= height or x2 - x1 < 4 or y2 - y1 < 4:
                continue
            h, w = y2 - y1, x2 - x1
            ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
            radius = np.sqrt(((xs - w / 2) / (w / 2)) ** 2 + ((ys - h / 2) / (h / 2)) ** 2)
            cutouts.append((rgb[y1:y2, x1:x2].copy(), np.clip((1 - radius) / 0.2, 0, 1)))
    return cutouts


def paste_crowns(rng: random.Random, cutouts: list[tuple[np.ndarray, np.ndarray]], size: int = CROP):
    """Copy-paste (Ghiasi et al., "Simple Copy-Paste is a Strong Data Augmentation Method for
    Instance Segmentation", arXiv:2012.07177): 3–30 real crowns, each flipped, turned, scaled
    (0.6–1.6× per window, ×0.85–1.15 per crown), with a soft drop shadow away from one sun
    azimuth, pasted onto synthetic ground (`synth.ground`: four palettes, tracks, bushes) at
    places overlapping earlier crowns by IoU ≤ 0.25. Shows the real crowns the two YELL crops
    have on ground those crops do not have. Returns (rgb uint8 (size, size, 3), boxes (N, 4)
    x1 y1 x2 y2, kept when half shows)."""
    from PIL import Image

    ground = synth.ground(np.random.default_rng(rng.getrandbits(64)), size, size).astype(np.float32)
    scale = math.exp(rng.uniform(math.log(0.6), math.log(1.6)))
    sun = rng.uniform(0, 2 * math.pi)
    placed = []  # (x0, y0, rgb, alpha)
    boxes = np.zeros((0, 4), np.float32)
    for _ in range(rng.randint(3, 30)):
        rgb, alpha = cutouts[rng.randrange(len(cutouts))]
        s = scale * rng.uniform(0.85, 1.15)
        w, h = max(2, round(rgb.shape[1] * s)), max(2, round(rgb.shape[0] * s))
        rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))
        alpha = np.asarray(Image.fromarray(alpha).resize((w, h), Image.BILINEAR))
        if rng.random() < 0.5:
            rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
        turns = rng.randrange(4)
        rgb, alpha = np.rot90(rgb, turns), np.rot90(alpha, turns)
        h, w = alpha.shape
        for _ in range(5):
            x0, y0 = rng.randrange(-w // 2, size - w // 2), rng.randrange(-h // 2, size - h // 2)
            box = np.array([[x0, y0, x0 + w, y0 + h]], np.float32)
            if not len(boxes) or common.iou_matrix(box, boxes).max() <= 0.25:
                placed.append((x0, y0, rgb, alpha))
                boxes = np.concatenate([boxes, box])
                break
    canvas = np.zeros((size, size), np.float32)

    def blend(layer: np.ndarray, x0: int, y0: int, patch: np.ndarray, weight: np.ndarray):
        """layer[window] ← layer · (1 − weight) + patch · weight, clipped to the canvas."""
        h, w = weight.shape
        ax, ay, bx, by = max(x0, 0), max(y0, 0), min(x0 + w, size), min(y0 + h, size)
        if ax >= bx or ay >= by:
            return
        wgt = weight[ay - y0 : by - y0, ax - x0 : bx - x0]
        if layer.ndim == 3:
            wgt = wgt[..., None]
        part = patch[ay - y0 : by - y0, ax - x0 : bx - x0]
        layer[ay:by, ax:bx] = layer[ay:by, ax:bx] * (1 - wgt) + part * wgt

    for x0, y0, _, alpha in placed:  # shadows first: the ground darkens, crowns go on top
        dx, dy = round(0.3 * alpha.shape[1] * math.cos(sun)), round(0.3 * alpha.shape[0] * math.sin(sun))
        blend(canvas, x0 + dx, y0 + dy, np.ones_like(alpha), alpha)
    ground *= 1 - rng.uniform(0.2, 0.5) * canvas[..., None]
    for x0, y0, rgb, alpha in placed:
        blend(ground, x0, y0, rgb.astype(np.float32), alpha)
    return np.clip(ground + 0.5, 0, 255).astype(np.uint8), common.clip_boxes(boxes, 0, 0, size, size)


class Crowns(torch.utils.data.IterableDataset):
    """Endless training windows: a share `REAL_SHARE` of real crops (the YELL crops less the
    validation rows, `common.training_crop`; scale 0.6–1.6), `PASTE_SHARE` of those crops'
    crowns pasted onto synthetic ground (`paste_crowns`), the rest drawn from a pool of
    `scenes` synthetic palm scenes (training seeds 0 … scenes − 1, 0.05–0.5 m), drawn once up
    front on every core: a scene takes about 50 ms to draw, as long as a training step's share
    of the CPU."""

    def __init__(self, seed: int, scenes: int):
        super().__init__()
        self.seed = seed
        seeds = range(common.SYNTH_TRAIN_SEED0, common.SYNTH_TRAIN_SEED0 + scenes)
        with multiprocessing.Pool(os.cpu_count()) as pool:
            self.synthetic = pool.map(draw_scene, seeds, chunksize=64)
        self.real = [common.training_crop(name) for name in common.TRAIN_REAL]
        self.cutouts = crown_cutouts(self.real)

    def real_crop(self, rng: random.Random):
        from PIL import Image

        rgb, boxes = self.real[rng.randrange(len(self.real))]
        scale = math.exp(rng.uniform(math.log(0.6), math.log(1.6)))
        side = min(int(CROP / scale), rgb.shape[0], rgb.shape[1])
        x0 = rng.randrange(rgb.shape[1] - side + 1)
        y0 = rng.randrange(rgb.shape[0] - side + 1)
        window = Image.fromarray(rgb[y0 : y0 + side, x0 : x0 + side]).resize((CROP, CROP), Image.BILINEAR)
        b = common.clip_boxes(boxes, x0, y0, side, side) * (CROP / side)
        return np.asarray(window), b

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker = info.id if info else 0
        rng = random.Random(self.seed * 1000 + worker)
        while True:
            draw = rng.random()
            if draw < REAL_SHARE:
                rgb, boxes = self.real_crop(rng)
            elif draw < REAL_SHARE + PASTE_SHARE:
                rgb, boxes = paste_crowns(rng, self.cutouts)
            else:
                rgb, boxes = self.synthetic[rng.randrange(len(self.synthetic))]
            rgb, boxes = augment(rng, rgb, boxes)
            heat, box, weight = targets(boxes, CROP)
            yield common.normalise(rgb), heat, box, weight


def bf16_supported(device: str) -> bool:
    """Whether autocast to bfloat16 is fast here: CUDA, or a CPU with native bf16 (AVX512-BF16, AMX)."""
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def train(steps: int, batch: int, scenes: int, out: Path, device: str, workers: int, bf16: bool):
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    net = CrownNet().to(device, memory_format=torch.channels_last)
    params = sum(p.numel() for p in net.parameters())
    precision = "bfloat16 autocast" if bf16 else "float32"
    start = time.time()
    print(f"CrownNet: {params:,} parameters, training {steps} steps of {batch} on {device} ({precision})", flush=True)
    data = Crowns(SEED, scenes)
    print(f"drew {scenes} synthetic scenes in {time.time() - start:.0f} s", flush=True)
    loader = torch.utils.data.DataLoader(
        data, batch_size=batch, num_workers=workers, persistent_workers=workers > 0
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
