"""`tessera detect` beside the Python way and beside bare ONNX Runtime, in one run, written into
BENCHMARKS.md.

    python3 batch-backend/benches/detect.py [--rounds N]

Same model (model/tessera-crowns.onnx), same windows (400 px, stride 300, the last row and
column shifted inward), same decoding (model/common.py), on CPU with ONNX Runtime 1.31.1:
- `tessera detect --score 0.3 --out DIR FILE` (release build): GDAL reads on a reader thread
  overlapped with inference, world NMS, COCO + GeoJSON + STAC written;
- a Python loop as DeepForest's `predict_tile` works: GDAL windows (`ReadAsArray`), numpy
  normalisation, `InferenceSession.run` per window, `common.decode`, then greedy numpy NMS
  over all boxes in raster pixels, COCO written;
- bare ONNX Runtime (the floor): `InferenceSession.run` alone, over the same windows
  normalised beforehand, outside the timing.
Windows per second end to end and peak resident memory (each process's `ru_maxrss`). Inputs:
OSBS_029.tif (400², one window) and a 8,000² raster tiled from it (0.1 m, 729 windows).

Needs: cargo, Debian's python3-gdal (the loop runs in a venv that sees it) and PyPI's
onnxruntime 1.31.1, installed into that venv by this script.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from benchmarks import write_section  # noqa: E402  (BENCHMARKS.md's one writer)

TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
FIXTURES = os.environ.get("TESSERA_FIXTURES", os.path.expanduser("~/.cache/tessera/fixtures"))
CACHE = os.path.expanduser("~/.cache/tessera/bench-detect")
VENV = os.path.join(CACHE, "venv")
LARGE = os.path.join(CACHE, "osbs-8000.tif")
OSBS = os.path.join(FIXTURES, "deepforest-2.1.0", "OSBS_029.tif")
MODEL = os.path.join(ROOT, "model", "tessera-crowns.onnx")
WINDOW, STRIDE = 400, 300


def measured(cmd, env=None):
    """Runs cmd; returns (seconds, peak RSS in MiB, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()}")
    return seconds, usage.ru_maxrss / 1024, out.decode()


STAGES = ("read", "normalise", "infer", "decode", "merge", "write")


def stage_times(out):
    """The seconds of each stage from `tessera detect`'s `time:` line."""
    line = next(l for l in out.splitlines() if l.startswith("time: "))
    return {s: float(line.split(f"{s} ")[1].split(" s")[0]) for s in STAGES}


def starts(extent):
    if extent <= WINDOW:
        return [0]
    return list(range(0, extent - WINDOW, STRIDE)) + [extent - WINDOW]


def python_loop(path, out, floor):
    """The Python way (or, with `floor`, ONNX Runtime alone); prints windows and seconds."""
    sys.path.insert(0, os.path.join(ROOT, "model"))
    import numpy as np
    import onnxruntime as ort
    from osgeo import gdal

    import common

    session = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
    ds = gdal.Open(path)
    windows = [(x, y) for y in starts(ds.RasterYSize) for x in starts(ds.RasterXSize)]
    if floor:
        # Pre-cut and normalised outside the timing; only `run` is timed (one buffer reused
        # per window, so memory stays small).
        inputs = [common.normalise(ds.ReadAsArray(x, y, WINDOW, WINDOW).transpose(1, 2, 0))[None]
                  for x, y in windows[:8]]
        start = time.perf_counter()
        for i in range(len(windows)):
            session.run(None, {"images": inputs[i % len(inputs)]})
        print(len(windows), time.perf_counter() - start)
        return
    start = time.perf_counter()
    boxes, scores = [], []
    for x, y in windows:
        rgb = ds.ReadAsArray(x, y, WINDOW, WINDOW).transpose(1, 2, 0)
        output = session.run(None, {"images": common.normalise(rgb)[None]})[0]
        b, s = common.decode(output)
        boxes.append(b + np.array([x, y, x, y], np.float32))
        scores.append(s)
    boxes, scores = np.concatenate(boxes), np.concatenate(scores)
    # As DeepForest: threshold, then one greedy NMS over every window's boxes.
    boxes, scores = boxes[scores >= 0.3], scores[scores >= 0.3]
    keep = common.nms(boxes, scores, 0.5)
    json.dump({"annotations": [{"bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                                "score": float(scores[i])} for i, b in zip(keep, boxes[keep])]}, open(out, "w"))
    print(len(windows), time.perf_counter() - start)


def prepare():
    os.makedirs(CACHE, exist_ok=True)
    if not os.path.exists(os.path.join(VENV, "bin", "python")):
        # Debian's Python, whose site-packages hold python3-gdal (osgeo).
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", "onnxruntime==1.31.1", "pillow"],
                       check=True)
    if not os.path.exists(LARGE):
        make = ("from osgeo import gdal; import numpy as np; s = gdal.Open(%r); a = s.ReadAsArray(); "
                "t = np.tile(a, (1, 20, 20)); gt = s.GetGeoTransform(); "
                "d = gdal.GetDriverByName('GTiff').Create(%r, 8000, 8000, 3, gdal.GDT_Byte, "
                "['TILED=YES', 'COMPRESS=DEFLATE']); d.SetGeoTransform(gt); d.SetProjection(s.GetProjection()); "
                "d.WriteArray(t); d = None") % (OSBS, LARGE)
        subprocess.run([os.path.join(VENV, "bin", "python"), "-c", make], check=True)
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "tessera-batch"], cwd=ROOT, check=True)


def main():
    if len(sys.argv) == 4 and sys.argv[1] in ("--loop", "--floor"):
        return python_loop(sys.argv[2], sys.argv[3], sys.argv[1] == "--floor")
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    prepare()
    env = dict(os.environ)
    if "ORT_DYLIB_PATH" not in env:
        sys.exit("ORT_DYLIB_PATH is not set: `source scripts/env.sh && ensure_onnxruntime` first")
    python = os.path.join(VENV, "bin", "python")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in (("OSBS_029, 400²", OSBS), ("8,000² tiled from OSBS_029", LARGE)):
            results = {"tessera": [], "loop": [], "floor": []}
            stages = []
            for _ in range(rounds):
                seconds, rss, out = measured([os.path.join(TARGET, "release", "tessera"), "detect",
                                              "--out", tmp, path], env)
                windows = int(out.split(" window(s)")[0].split()[-1])
                results["tessera"].append((windows / seconds, rss))
                stages.append((seconds, stage_times(out), windows))
                for tool in ("loop", "floor"):
                    seconds, rss, out = measured([python, __file__, f"--{tool}", path,
                                                  os.path.join(tmp, "loop.json")], env)
                    n, inner = out.split()
                    # End to end: process start to exit, as for tessera.
                    results[tool].append((int(n) / (seconds if tool == "loop" else float(inner)), rss))
                print(name, {k: v[-1] for k, v in results.items()}, file=sys.stderr)
            rows.append((name, {k: (statistics.median(r for r, _ in v), max(m for _, m in v))
                                for k, v in results.items()},
                         sorted(stages)[len(stages) // 2]))
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    lines = [
        "## Detection (issue 19)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}; {rustc}; "
        "ONNX Runtime 1.31.1 (CPU); GDAL 3.6.2.",
        "",
        f"Windows per second, end to end (process start to exit), median of {rounds} interleaved "
        "rounds, and the largest peak resident memory, in one run of `python3 "
        "batch-backend/benches/detect.py`. Same model, same 400 px windows at stride 300, same "
        "decoding. The floor is `InferenceSession.run` alone on windows normalised beforehand.",
        "",
        "| raster | tessera detect | Python loop (GDAL + onnxruntime + numpy NMS) | bare onnxruntime (floor) | tessera / loop | tessera / floor | peak RSS tessera / loop |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r, _ in rows:
        (t, tm), (l, lm), (f, _) = r["tessera"], r["loop"], r["floor"]
        lines.append(f"| {name} | {t:.1f} | {l:.1f} | {f:.1f} | {t / l:.2f}× | {t / f:.2f}× | "
                     f"{tm:.0f} MiB / {lm:.0f} MiB |")
    lines += [
        "",
        "Where `tessera detect`'s time goes (the median round's own report, seconds and share of the "
        "wall time). Reading and normalising run on the reader thread, overlapped with inference; "
        "the rest of the wall time is process start, loading the model and waiting.",
        "",
        "| raster | wall | " + " | ".join(STAGES) + " |",
        "|---|---|" + "---|" * len(STAGES),
    ]
    for name, _, (wall, times, _) in rows:
        cells = [f"{times[s]:.2f} ({times[s] / wall:.0%})" for s in STAGES]
        lines.append(f"| {name} | {wall:.2f} | " + " | ".join(cells) + " |")
    name, r, (wall, times, windows) = rows[-1]
    lines += [
        "",
        f"On the {name} raster, `tessera detect`'s inference alone ran at "
        f"{windows / times['infer']:.1f} windows/s beside the floor's {r['floor'][0]:.1f}. The rest of "
        f"its wall time is reading (DEFLATE decoding) and normalising, which on {os.cpu_count()} cores "
        "share the CPUs with ONNX Runtime's threads, and process start; the floor counts neither.",
    ]
    print(write_section("detect", "batch-backend/benches/detect.py", "\n".join(lines)))


if __name__ == "__main__":
    main()
