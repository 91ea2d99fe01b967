"""Synthetic aerial palm plantations with exact boxes.

Each scene is an RGB uint8 array (H, W, 3), top row first, and an (N, 4) float32 array of
boxes x1, y1, x2, y2 in pixels (the crowns' visible extent, clipped to the scene). A scene is
drawn at a ground sampling distance (GSD) between 0.05 and 0.5 m per pixel:

- background: fractal value noise mixing grass, soil and scrub colours, with tracks;
- distractors: round bushes (no fronds), rectangular roofs with shadows, bare-soil patches;
- palms: 7 to 16 tapered, slightly curved fronds around a crown 7 to 13 m across (so 14 to
  260 px), a drop shadow away from a random sun azimuth, per-frond colour jitter, random
  rotation; crowns may overlap (plantation grids with jitter, or scattered).

Everything is drawn 2x supersampled with Pillow and reduced with a box filter. Scenes are a
pure function of their seed (numpy PCG64 and the pinned Pillow), so the held-out synthetic set
is regenerated identically wherever `model/requirements.txt` is installed.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SS = 2  # supersampling factor


def _value_noise(rng: np.random.Generator, h: int, w: int, octaves: int = 5) -> np.ndarray:
    """Fractal value noise in [0, 1], shape (h, w)."""
    out = np.zeros((h, w), np.float32)
    amplitude, total = 1.0, 0.0
    for octave in range(octaves):
        cells = 2 ** (octave + 1)
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        layer = np.asarray(
            Image.fromarray((grid * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC),
            np.float32,
        ) / 255.0
        out += amplitude * layer
        total += amplitude
        amplitude *= 0.55
    return out / total


def _background(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    palettes = [
        [(96, 110, 60), (135, 120, 80), (70, 85, 45)],  # grass, soil, scrub
        [(150, 130, 95), (120, 105, 75), (95, 100, 60)],  # dry
        [(60, 80, 45), (85, 95, 55), (110, 100, 70)],  # lush
        [(160, 150, 130), (130, 120, 100), (100, 95, 75)],  # sandy
    ]
    palette = np.array(palettes[rng.integers(len(palettes))], np.float32)
    palette += rng.normal(0, 12, palette.shape)
    a = _value_noise(rng, h, w)[..., None]
    b = _value_noise(rng, h, w)[..., None]
    image = palette[0] * (1 - a) + palette[1] * a
    image = image * (1 - 0.5 * b) + palette[2] * 0.5 * b
    image += rng.normal(0, 6, (h, w, 1)) + rng.normal(0, 4, (h, w, 3))
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def _tracks(rng, draw: ImageDraw.ImageDraw, w: int, h: int, gsd: float) -> None:
    for _ in range(rng.integers(0, 3)):
        colour = tuple(int(c) for c in rng.integers(140, 200, 3))
        width = max(2, int(rng.uniform(3, 6) / gsd * SS))
        if rng.random() < 0.5:
            y = rng.uniform(0, h)
            draw.line([(0, y), (w, y + rng.uniform(-h / 3, h / 3))], fill=colour, width=width)
        else:
            x = rng.uniform(0, w)
            draw.line([(x, 0), (x + rng.uniform(-w / 3, w / 3), h)], fill=colour, width=width)


def _bush(rng, draw, cx, cy, r):
    base = np.array([50, 75, 35]) + rng.normal(0, 12, 3)
    for _ in range(rng.integers(4, 9)):
        ox, oy = rng.normal(0, r * 0.35, 2)
        rr = r * rng.uniform(0.4, 0.7)
        colour = tuple(int(np.clip(c, 0, 255)) for c in base + rng.normal(0, 10, 3))
        draw.ellipse([cx + ox - rr, cy + oy - rr, cx + ox + rr, cy + oy + rr], fill=colour)


def _roof(rng, draw, shadow, cx, cy, size, sun):
    angle = rng.uniform(0, math.pi)
    sw, sh = size * rng.uniform(0.6, 1.0), size * rng.uniform(0.4, 0.8)
    corners = []
    for dx, dy in [(-sw, -sh), (sw, -sh), (sw, sh), (-sw, sh)]:
        corners.append(
            (
                cx + dx * math.cos(angle) - dy * math.sin(angle),
                cy + dx * math.sin(angle) + dy * math.cos(angle),
            )
        )
    off = (size * 0.3 * math.cos(sun), size * 0.3 * math.sin(sun))
    shadow.polygon([(x + off[0], y + off[1]) for x, y in corners], fill=150)
    colours = [(170, 70, 50), (150, 150, 150), (200, 195, 185), (90, 90, 100)]
    colour = np.array(colours[rng.integers(len(colours))]) + rng.normal(0, 10, 3)
    draw.polygon(corners, fill=tuple(int(np.clip(c, 0, 255)) for c in colour))


def _frond(cx, cy, angle, length, width, bend):
    """A tapered, slightly curved leaf polygon from (cx, cy) at `angle`."""
    left, right = [], []
    steps = 8
    for i in range(steps + 1):
        t = i / steps
        a = angle + bend * t * t
        x = cx + math.cos(a) * length * t
        y = cy + math.sin(a) * length * t
        half = width * (0.35 + 0.65 * math.sin(math.pi * min(1.0, t * 1.15))) * (1 - t * 0.85)
        nx, ny = -math.sin(a), math.cos(a)
        left.append((x + nx * half, y + ny * half))
        right.append((x - nx * half, y - ny * half))
    return left + right[::-1]


def _palm(rng, draw, mask, shadow, cx, cy, r, sun):
    """Draws one crown of radius r (supersampled px); returns its box (x1, y1, x2, y2)."""
    n = int(rng.integers(7, 17))
    start = rng.uniform(0, 2 * math.pi)
    base = np.array([60, 110, 45]) + rng.normal(0, 15, 3)
    if rng.random() < 0.15:  # yellowing palms
        base += np.array([50, 30, -10])
    points = []
    fronds = []
    for i in range(n):
        angle = start + 2 * math.pi * i / n + rng.normal(0, 0.15)
        length = r * rng.uniform(0.8, 1.0)
        width = r * rng.uniform(0.16, 0.26)
        bend = rng.normal(0, 0.25)
        polygon = _frond(cx, cy, angle, length, width, bend)
        fronds.append((polygon, base + rng.normal(0, 12, 3)))
        points.extend(polygon)
    off = (r * 0.45 * math.cos(sun), r * 0.45 * math.sin(sun))
    for polygon, _ in fronds:
        shadow.polygon([(x + off[0], y + off[1]) for x, y in polygon], fill=170)
    for polygon, colour in fronds:
        draw.polygon(polygon, fill=tuple(int(np.clip(c, 0, 255)) for c in colour))
        mask.polygon(polygon, fill=255)
        # the midrib, lighter
        mid = polygon[: len(polygon) // 2]
        draw.line(mid[:-1], fill=tuple(int(np.clip(c + 35, 0, 255)) for c in colour), width=max(1, int(r * 0.03)))
    heart = r * 0.12
    draw.ellipse([cx - heart, cy - heart, cx + heart, cy + heart], fill=tuple(int(np.clip(c - 15, 0, 255)) for c in base))
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def ground(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Synthetic ground without palms, RGB uint8 (h, w, 3): the scenes' noise palettes, 0–2
    tracks and 0–14 round bushes 3–15 px across, drawn at 1× (the ground for copy-paste)."""
    gsd = math.exp(rng.uniform(math.log(0.05), math.log(0.5)))
    image = _background(rng, h, w)
    draw = ImageDraw.Draw(image)
    _tracks(rng, draw, w, h, gsd * SS)  # track widths assume supersampling; this is drawn at 1×
    for _ in range(int(rng.integers(0, 15))):
        _bush(rng, draw, rng.uniform(0, w), rng.uniform(0, h), rng.uniform(1.5, 7.5))
    return np.asarray(image)


def scene(seed: int, size: tuple[int, int] = (400, 400), gsd: float | None = None):
    """One synthetic scene: (rgb uint8 (H, W, 3), boxes float32 (N, 4) x1 y1 x2 y2, gsd)."""
    rng = np.random.default_rng(seed)
    w, h = size
    gsd = float(gsd if gsd is not None else math.exp(rng.uniform(math.log(0.05), math.log(0.5))))
    W, H = w * SS, h * SS
    image = _background(rng, H, W)
    draw = ImageDraw.Draw(image)
    _tracks(rng, draw, W, H, gsd)
    shadow = Image.new("L", (W, H), 0)
    shadow_draw = ImageDraw.Draw(shadow)
    sun = rng.uniform(0, 2 * math.pi)

    # Where things go: a jittered plantation grid or scattered crowns.
    crown_m = rng.uniform(7, 13)
    r = crown_m / 2 / gsd * SS
    centres = []
    if rng.random() < 0.6:
        spacing = crown_m * rng.uniform(0.85, 1.4) / gsd * SS
        angle = rng.uniform(0, math.pi / 2)
        keep = rng.uniform(0.6, 1.0)
        span = int(max(W, H) / spacing) + 3
        ox, oy = rng.uniform(0, spacing, 2)
        for i in range(-span, span):
            for j in range(-span, span):
                gx = ox + i * spacing + (j % 2) * spacing * 0.5 * (rng.random() < 0.5)
                gy = oy + j * spacing * 0.87
                x = W / 2 + (gx - W / 2) * math.cos(angle) - (gy - H / 2) * math.sin(angle)
                y = H / 2 + (gx - W / 2) * math.sin(angle) + (gy - H / 2) * math.cos(angle)
                x += rng.normal(0, spacing * 0.06)
                y += rng.normal(0, spacing * 0.06)
                if -r < x < W + r and -r < y < H + r and rng.random() < keep:
                    centres.append((x, y))
    else:
        for _ in range(int(rng.integers(1, 30))):
            centres.append((rng.uniform(-r / 2, W + r / 2), rng.uniform(-r / 2, H + r / 2)))
    max_palms = 400
    centres = centres[:max_palms]

    # Distractors first, palms on top.
    for _ in range(int(rng.integers(0, 25))):
        br = r * rng.uniform(0.2, 0.6)
        _bush(rng, draw, rng.uniform(0, W), rng.uniform(0, H), br)
    for _ in range(int(rng.integers(0, 4))):
        _roof(rng, draw, shadow_draw, rng.uniform(0, W), rng.uniform(0, H), r * rng.uniform(0.8, 2.0), sun)

    crowns = Image.new("RGB", (W, H), 0)
    mask = Image.new("L", (W, H), 0)
    crown_draw = ImageDraw.Draw(crowns)
    mask_draw = ImageDraw.Draw(mask)
    boxes = []
    for cx, cy in centres:
        rr = r * rng.uniform(0.8, 1.15)
        boxes.append(_palm(rng, crown_draw, mask_draw, shadow_draw, cx, cy, rr, sun))
    # shadows darken the ground, then crowns are pasted over
    shadow = shadow.filter(ImageFilter.GaussianBlur(max(1.0, r * 0.05)))
    ground = np.asarray(image, np.float32) * (1 - np.asarray(shadow, np.float32)[..., None] / 255 * 0.6)
    image = Image.fromarray(np.clip(ground, 0, 255).astype(np.uint8))
    crown_pixels = np.asarray(crowns)
    covered = np.asarray(mask) > 0
    out = np.asarray(image).copy()
    out[covered] = crown_pixels[covered]
    image = Image.fromarray(out)

    # colour jitter, blur and reduction to the final size
    image = image.resize((w, h), Image.BOX)
    rgb = np.asarray(image, np.float32)
    rgb = rgb * rng.uniform(0.8, 1.2) + rng.uniform(-15, 15)
    rgb = rgb * (1 + rng.normal(0, 0.05, 3))
    rgb += rng.normal(0, rng.uniform(0, 5), rgb.shape)
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)

    out_boxes = []
    for x1, y1, x2, y2 in boxes:
        x1, y1, x2, y2 = x1 / SS, y1 / SS, x2 / SS, y2 / SS
        visible = (min(x2, w) - max(x1, 0)) * (min(y2, h) - max(y1, 0))
        area = (x2 - x1) * (y2 - y1)
        if visible <= 0 or visible < 0.25 * area:
            continue
        out_boxes.append((max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)))
    return rgb, np.array(out_boxes, np.float32).reshape(-1, 4), gsd


if __name__ == "__main__":
    import sys

    rgb, boxes, gsd = scene(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    for box in boxes:
        draw.rectangle(box.tolist(), outline=(255, 0, 0))
    image.save("/tmp/synth.png")
    print(f"{len(boxes)} palms at {gsd:.3f} m/px -> /tmp/synth.png")
