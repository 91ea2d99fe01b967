"""Runs the preprocessing benchmark side by side with its peers and writes BENCHMARKS.md.

    python3 core/benches/compare.py            # criterion bench + Pillow, then BENCHMARKS.md

1. `cargo bench -p tessera-core --bench pipeline`: Tessera's pipeline, each of its stages, the
   naive `image`-crate peer, and decompression-bomb refusal (core/benches/pipeline.rs).
2. In this process, right after: the Pillow peer, the library of the original design's Lambda,
   on the same photos: `ImageOps.exif_transpose`, `thumbnail` to 256 (its default BICUBIC with
   reducing_gap 2.0), paste on white, three `transpose` rotations, four `save(quality=90)`,
   SHA-256 of the original and each output. Also "Pillow + draft": the same job with
   `Image.draft` first (libjpeg DCT scaling, Pillow's fastest path), which the original design
   did not use: exif_transpose loads the full image before thumbnail can use draft.
3. Reads criterion's estimates (target/criterion/**/new/estimates.json) and writes the
   tables into BENCHMARKS.md between the markers for this benchmark.

Pillow is installed at the pinned version below if missing. Timings are medians; ratios are
taken within this one run, because shared machines are noisy.
"""
import hashlib
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

PILLOW = "13.0.0"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from benchmarks import write_section  # noqa: E402  (BENCHMARKS.md's one writer)
FIXTURES = os.environ.get("TESSERA_FIXTURES", os.path.expanduser("~/.cache/tessera/fixtures"))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
PHOTOS = [
    ("sony-6000x4000", "exif-0.6.0/sony-alpha-6000.jpg"),
    ("xiaomi-4208x3120", "exif-0.6.0/short-ascii-II.jpg"),
]
STAGES = ["1-probe", "2-exif", "3-decode", "4-orient", "5-letterbox", "6-rotate", "7-encode", "8-sha256"]


def ensure_pillow():
    try:
        import PIL
        if PIL.__version__ == PILLOW:
            return
    except ImportError:
        pass
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", f"pillow=={PILLOW}"], check=True)


def pillow_job(data, draft):
    from PIL import Image, ImageOps
    digests = [hashlib.sha256(data).hexdigest()]
    im = Image.open(io.BytesIO(data))
    if draft:
        im.draft("RGB", (512, 512))
    im = ImageOps.exif_transpose(im).convert("RGB")
    im.thumbnail((256, 256))
    canvas = Image.new("RGB", (256, 256), (255, 255, 255))
    canvas.paste(im, ((256 - im.width) // 2, (256 - im.height) // 2))
    turns = [canvas] + [canvas.transpose(t) for t in
                        (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)]
    for t in turns:
        out = io.BytesIO()
        t.save(out, "JPEG", quality=90)
        digests.append(hashlib.sha256(out.getvalue()).hexdigest())
    return digests


def time_median(fn, seconds=8.0, min_runs=10):
    fn()  # warm up
    runs, start = [], time.perf_counter()
    while len(runs) < min_runs or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def criterion_median(group, bench):
    path = os.path.join(TARGET, "criterion", group, bench, "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"] / 1e9


def fmt(seconds):
    return f"{seconds * 1e3:.1f} ms" if seconds >= 1e-3 else (
        f"{seconds * 1e6:.1f} µs" if seconds >= 1e-6 else f"{seconds * 1e9:.0f} ns")


def ratio(peer, ours):
    return f"{peer / ours:.1f}× faster" if peer >= ours else f"{ours / peer:.2f}× slower"


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except (OSError, AttributeError):
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    lock = open(os.path.join(ROOT, "Cargo.lock")).read()
    def locked(name):
        return re.search('name = "' + name + '"\nversion = "([^"]+)"', lock).group(1)
    versions = ", ".join(f"{name} {locked(name)}" for name in
                         ("jpeg-decoder", "jpeg-encoder", "fast_image_resize", "image", "kamadak-exif", "sha2"))
    import PIL
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; {rustc}; "
            f"{versions}; Python {platform.python_version()}, Pillow {PIL.__version__}")


def main():
    ensure_pillow()
    subprocess.run(["cargo", "bench", "-p", "tessera-core", "--bench", "pipeline"], cwd=ROOT, check=True)
    lines = [
        "## Preprocessing pipeline (issue 2)",
        "",
        f"Machine: {machine()}.",
        "",
        "One image from file bytes to the upload-ready set: validate, read EXIF, orient, letterbox "
        "256×256 on white, three rotations, four JPEG encodes (quality 90), SHA-256 of the "
        "original and of each derivative. Single-threaded medians from one run of "
        "`python3 core/benches/compare.py`.",
        "",
        "| photo | Tessera | naive `image` crate | Pillow (original design) | Pillow + draft "
        "| vs naive | vs Pillow | vs Pillow + draft |",
        "|---|---|---|---|---|---|---|---|",
    ]
    shares = []
    for name, rel in PHOTOS:
        with open(os.path.join(FIXTURES, rel), "rb") as f:
            data = f.read()
        ours = criterion_median(f"pipeline_{name}", "tessera")
        naive = criterion_median(f"pipeline_{name}", "naive-image-crate")
        pil = time_median(lambda: pillow_job(data, draft=False))
        pil_draft = time_median(lambda: pillow_job(data, draft=True))
        lines.append(
            f"| {name} | {fmt(ours)} | {fmt(naive)} | {fmt(pil)} | {fmt(pil_draft)} "
            f"| {ratio(naive, ours)} | {ratio(pil, ours)} | {ratio(pil_draft, ours)} |")
        stage_times = {s: criterion_median(f"stage_{name}", s) for s in STAGES}
        total = sum(stage_times.values())
        shares.append((name, stage_times, total))
    lines += ["", "Each stage of Tessera's pipeline alone (share of the stages' sum):", "",
              "| stage | " + " | ".join(n for n, _, _ in shares) + " |",
              "|---|" + "---|" * len(shares)]
    for s in STAGES:
        lines.append(f"| {s[2:]} | " + " | ".join(
            f"{fmt(t[s])} ({100 * t[s] / total:.1f}%)" for _, t, total in shares) + " |")
    lines += [
        "",
        "Decompression bombs, refused from the header (whole `preprocess` call): "
        f"PNG claiming 100,000×100,000 px: {fmt(criterion_median('bomb', 'png-100000x100000'))}; "
        f"JPEG claiming 65,535×65,535 px: {fmt(criterion_median('bomb', 'jpeg-65535x65535'))}.",
    ]
    print(write_section("preprocess", "core/benches/compare.py", "\n".join(lines)))


if __name__ == "__main__":
    main()
