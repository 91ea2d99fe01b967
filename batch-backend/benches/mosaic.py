"""`tessera mosaic` beside GDAL's own tools, in one run, written into BENCHMARKS.md.

    python3 batch-backend/benches/mosaic.py [--rounds N]

For each input set, interleaved rounds of
- `tessera mosaic --out OUT DIR` (release build): probe, hash, plan, VRT, COG, rendition,
  preview;
- `gdalbuildvrt -strict -r bilinear` then `gdal_translate -of COG` with the same creation
  options and the same `GDAL_CACHEMAX` (gdal-bin).
Wall time and peak resident memory (each process's `ru_maxrss` from wait4; for GDAL's two
steps, the sum of times and the larger peak). Input sets:
- the 100 solaris tiles (900 × 900 UInt16, `tests/fetch-fixtures.sh`);
- 64 tiles of 2,000 × 2,000 RGB made from OSBS_029 (a 16,000² mosaic, 768 MB of pixels),
  cached in ~/.cache/tessera/bench-mosaic.

Needs: cargo, gdal-bin, python3-gdal's gdal_edit.py (scripts/test.sh installs them).
"""
import argparse
import os
import platform
import shutil
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
LARGE = os.path.expanduser("~/.cache/tessera/bench-mosaic/tiles")
TESSERA = os.path.join(TARGET, "release", "tessera")

# tessera-core's mosaic::cog_creation_options and GDAL_CACHE_MIB, restated for gdal_translate.
CREATION = ["COMPRESS=DEFLATE", "PREDICTOR=YES", "BLOCKSIZE=512", "OVERVIEW_RESAMPLING=AVERAGE",
            "BIGTIFF=IF_SAFER", "NUM_THREADS=ALL_CPUS"]
CACHE_MIB = "64"


def measured(cmd):
    """Runs cmd; returns (seconds, peak RSS in MiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()}")
    return seconds, usage.ru_maxrss / 1024


def tessera(tiles, out):
    return measured([TESSERA, "mosaic", "--out", out, tiles])


def gdal(tiles, out):
    vrt = out + ".vrt"
    files = sorted(os.path.join(tiles, f) for f in os.listdir(tiles) if f.endswith(".tif"))
    t1, m1 = measured(["gdalbuildvrt", "-q", "-strict", "-r", "bilinear", vrt, *files])
    co = [x for c in CREATION for x in ("-co", c)]
    t2, m2 = measured(["gdal_translate", "-q", "-of", "COG", *co,
                       "--config", "GDAL_CACHEMAX", CACHE_MIB, vrt, out])
    return t1 + t2, max(m1, m2)


def make_large():
    if os.path.isdir(LARGE) and len(os.listdir(LARGE)) == 64:
        return
    os.makedirs(LARGE, exist_ok=True)
    base = os.path.join(os.path.dirname(LARGE), "base.tif")
    subprocess.run(["gdal_translate", "-q", "-outsize", "2000", "2000", "-r", "bilinear",
                    "-co", "COMPRESS=DEFLATE", "-co", "TILED=YES",
                    os.path.join(FIXTURES, "deepforest-2.1.0", "OSBS_029.tif"), base], check=True)
    for i in range(8):
        for j in range(8):
            tile = os.path.join(LARGE, f"t{i}{j}.tif")
            shutil.copy(base, tile)
            x, y = 404211.9 + 200 * i, 3285142.9 - 200 * j
            subprocess.run(["gdal_edit.py", "-a_ullr", f"{x:.1f}", f"{y:.1f}", f"{x + 200:.1f}",
                            f"{y - 200:.1f}", tile], check=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "tessera-batch"],
                   cwd=ROOT, check=True)
    make_large()
    sets = [("100 solaris tiles, 900² UInt16", os.path.join(FIXTURES, "solaris-0.4.0",
                                                           "rastertile_test_expected")),
            ("64 tiles of 2,000² RGB, 16,000² mosaic", LARGE)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, tiles in sets:
            results = {"tessera": [], "gdal": []}
            for r in range(rounds):
                for tool, run in (("tessera", tessera), ("gdal", gdal)):
                    out = os.path.join(tmp, f"{tool}-{r}.tif")
                    results[tool].append(run(tiles, out))
                    for f in os.listdir(tmp):
                        os.remove(os.path.join(tmp, f))
                    print(name, tool, results[tool][-1], file=sys.stderr)
            med = {k: (statistics.median(s for s, _ in v), max(m for _, m in v))
                   for k, v in results.items()}
            rows.append((name, med))
    gdal_version = subprocess.run(["gdalinfo", "--version"], capture_output=True,
                                  text=True).stdout.strip()
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    lines = [
        "## Mosaics (issue 18)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Linux {platform.release()}; {rustc}; {gdal_version}.",
        "",
        f"`tessera mosaic` beside `gdalbuildvrt -strict` + `gdal_translate -of COG` with the same "
        f"creation options ({', '.join(CREATION)}) and GDAL_CACHEMAX {CACHE_MIB} MiB: median "
        f"wall time of {rounds} interleaved rounds and the largest peak resident memory, in one "
        "run of `python3 batch-backend/benches/mosaic.py`. Tessera's time includes what GDAL's "
        "tools do not do: hashing every input (SHA-256, for the provenance), the 8-bit "
        "rendition and the preview PNG.",
        "",
        "| inputs | tessera mosaic | gdalbuildvrt + gdal_translate | time ratio | peak RSS tessera / GDAL |",
        "|---|---|---|---|---|",
    ]
    for name, med in rows:
        (ts, tm), (gs, gm) = med["tessera"], med["gdal"]
        lines.append(f"| {name} | {ts:.2f} s | {gs:.2f} s | {ts / gs:.2f}× | "
                     f"{tm:.0f} MiB / {gm:.0f} MiB |")
    print(write_section("mosaic", "batch-backend/benches/mosaic.py", "\n".join(lines)))


if __name__ == "__main__":
    main()
