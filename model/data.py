"""The detector's training data path, without torch: windows, augmentation, copy-paste, targets.

Every function here takes and returns numpy arrays (RGB uint8 (H, W, 3), top row first; boxes
float32 (N, 4) x1 y1 x2 y2 in pixels) and a seeded `random.Random`, so it runs and is tested in
the evaluation venv (numpy, Pillow) as well as inside train.py's DataLoader workers. A training
window is CROP × CROP pixels: a share `REAL_SHARE` of real YELL crops, `PASTE_SHARE` of real
crowns pasted onto synthetic ground, the rest synthetic palm scenes (`Windows.sample`).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import random

import numpy as np

import common
import synth

CROP = 256  # training windows; the network is fully convolutional
REAL_SHARE = 0.45  # of training windows that are real crops
PASTE_SHARE = 0.2  # real crowns pasted onto synthetic ground (copy-paste); the rest are synthetic scenes
GAUSSIAN_ALPHA = 0.54  # TTFNet's α = β: Gaussian σ = α · side / 6, regression area the same


def targets(boxes: np.ndarray, size: int):
    """TTFNet targets (Liu et al., arXiv:1909.00700) for a size × size window with boxes (N, 4).

    Returns heatmap (1, S, S) with S = size / STRIDE: an elliptical Gaussian per crown peaking at
    1 in its centre cell, σ = α · (box side in cells) / 6; box (4, S, S): the x1 y1 x2 y2 that
    each cell regresses; weight (S, S): each crown's Gaussian over the cells inside its
    α-scaled box, normalised to sum to log(box area in pixels), so large crowns count more but
    not in proportion to their area. Smaller crowns are drawn last and own shared cells; boxes
    under half a cell on a side are skipped."""
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


def augment(rng: random.Random, rgb: np.ndarray, boxes: np.ndarray):
    """Flips and quarter turns of a square window (boxes follow), then `photometric` jitter."""
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
    """Every annotated crown wholly inside its crop (not touching an edge, at least 4 px a side,
    box rounded to whole pixels), as (rgb uint8 (h, w, 3), alpha float32 (h, w)): the box's
    pixels and an ellipse inscribed in the box, opaque to 80% of its radius and fading to 0 at
    the box's edge, so a pasted crown carries little of its own ground."""
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


def real_crop(rng: random.Random, rgb: np.ndarray, boxes: np.ndarray, size: int = CROP):
    """A random square of `rgb`, scaled by 0.6–1.6× (log-uniform) to size × size: (rgb, boxes kept
    when half shows). A crop smaller than the window is taken whole on its short side."""
    from PIL import Image

    scale = math.exp(rng.uniform(math.log(0.6), math.log(1.6)))
    side = min(int(size / scale), rgb.shape[0], rgb.shape[1])
    x0 = rng.randrange(rgb.shape[1] - side + 1)
    y0 = rng.randrange(rgb.shape[0] - side + 1)
    window = Image.fromarray(rgb[y0 : y0 + side, x0 : x0 + side]).resize((size, size), Image.BILINEAR)
    return np.asarray(window), common.clip_boxes(boxes, x0, y0, side, side) * (size / side)


class Windows:
    """Endless training windows: a share `REAL_SHARE` of real crops (the YELL crops less the
    validation rows, `common.training_crop`), `PASTE_SHARE` of those crops' crowns pasted onto
    synthetic ground (`paste_crowns`), the rest drawn from a pool of `scenes` synthetic palm
    scenes (training seeds 0 … scenes − 1, 0.05–0.5 m), drawn once up front on every core: a
    scene takes about 50 ms to draw, as long as a training step's share of the CPU."""

    def __init__(self, scenes: int):
        seeds = range(common.SYNTH_TRAIN_SEED0, common.SYNTH_TRAIN_SEED0 + scenes)
        with multiprocessing.Pool(os.cpu_count()) as pool:
            self.synthetic = pool.map(draw_scene, seeds, chunksize=64)
        self.real = [common.training_crop(name) for name in common.TRAIN_REAL]
        self.cutouts = crown_cutouts(self.real)

    def sample(self, rng: random.Random):
        """One augmented window and its targets: (normalised float32 (3, CROP, CROP), heatmap,
        box, weight) as `common.normalise` and `targets` give them."""
        draw = rng.random()
        if draw < REAL_SHARE:
            rgb, boxes = real_crop(rng, *self.real[rng.randrange(len(self.real))])
        elif draw < REAL_SHARE + PASTE_SHARE:
            rgb, boxes = paste_crowns(rng, self.cutouts)
        else:
            rgb, boxes = self.synthetic[rng.randrange(len(self.synthetic))]
        rgb, boxes = augment(rng, rgb, boxes)
        return (common.normalise(rgb), *targets(boxes, CROP))
