// The browser benchmark (issue 4), in headless Chromium against `tessera up`:
//  - Tessera: tessera-wasm's preprocess (validate, orient, letterbox, 3 rotations, 4 JPEG
//    encodes, SHA-256s), file bytes → upload-ready set;
//  - canvas: the same work with createImageBitmap (EXIF orientation), drawImage letterbox and
//    rotations, convertToBlob JPEG q0.9 ×4, crypto.subtle SHA-256 ×5 (no bomb protection);
//  - the resize step alone: pica (npm) beside tessera-wasm's letterbox (fast_image_resize,
//    Lanczos3), both from the same full-resolution RGBA pixels; and Tessera's resize as its
//    pipeline runs it (from the DCT-scaled decode).
// Medians of interleaved rounds, single-threaded unless named. Writes out/browser/bench.json
// and the `browser` section of BENCHMARKS.md (through scripts/benchmarks.py, its one writer).
//
//   node tests/browser/bench.mjs [rounds]     (after scripts/build-web.sh and a release build)
import { readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { ARTIFACTS, ROOT, fixture, launch, startUp, waitFor } from './stack.mjs';

const ROUNDS = Number(process.argv[2] ?? 7);
const PHOTOS = [
  ['sony 6000×4000', 'exif-0.6.0/sony-alpha-6000.jpg'],
  ['xiaomi 4208×3120', 'exif-0.6.0/short-ascii-II.jpg'],
];

const stack = await startUp();
const browser = await launch();
try {
  // The service worker would fetch the photos itself, past Playwright's routes.
  const context = await browser.newContext({ serviceWorkers: 'block' });
  const page = await context.newPage();
  await page.route('**/bench/photo/*', (route) => {
    const index = Number(route.request().url().split('/').pop());
    route.fulfill({ body: readFileSync(fixture(PHOTOS[index][1])), contentType: 'application/octet-stream' });
  });
  await page.goto(stack.url);
  await waitFor(page, 'ready', 'true', 30_000);
  await page.addScriptTag({ path: join(ROOT, 'node_modules/pica/dist/pica.min.js') });

  const results = await page.evaluate(async ({ photos, rounds }) => {
    const wasm = await import('/pkg/tessera_wasm.js');
    await wasm.default();
    const picaSingle = window.pica({ features: ['js', 'wasm'] });
    const picaWorkers = window.pica({ features: ['js', 'wasm', 'ww'] });
    const SIZE = 256;
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const time = async (fn) => { const t0 = performance.now(); await fn(); return performance.now() - t0; };

    async function canvasPipeline(bytes) {
      const blob = new Blob([bytes]);
      const bitmap = await createImageBitmap(blob, { imageOrientation: 'from-image' });
      const scale = Math.min(SIZE / bitmap.width, SIZE / bitmap.height);
      const w = Math.round(bitmap.width * scale);
      const h = Math.round(bitmap.height * scale);
      const letterbox = new OffscreenCanvas(SIZE, SIZE);
      const ctx = letterbox.getContext('2d');
      ctx.fillStyle = '#fff';
      ctx.fillRect(0, 0, SIZE, SIZE);
      ctx.imageSmoothingQuality = 'high';
      ctx.drawImage(bitmap, Math.floor((SIZE - w) / 2), Math.floor((SIZE - h) / 2), w, h);
      bitmap.close();
      const canvases = [letterbox];
      for (const quarter of [1, 2, 3]) {
        const rotated = new OffscreenCanvas(SIZE, SIZE);
        const r = rotated.getContext('2d');
        r.translate(SIZE / 2, SIZE / 2);
        r.rotate(-quarter * Math.PI / 2); // counter-clockwise, as Tessera
        r.drawImage(letterbox, -SIZE / 2, -SIZE / 2);
        canvases.push(rotated);
      }
      const jpegs = await Promise.all(canvases.map((c) => c.convertToBlob({ type: 'image/jpeg', quality: 0.9 })));
      const buffers = [bytes.buffer, ...(await Promise.all(jpegs.map((j) => j.arrayBuffer())))];
      return Promise.all(buffers.map((b) => crypto.subtle.digest('SHA-256', b)));
    }

    async function fullPixels(bytes) {
      const bitmap = await createImageBitmap(new Blob([bytes]), { imageOrientation: 'from-image' });
      const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
      canvas.getContext('2d').drawImage(bitmap, 0, 0);
      bitmap.close();
      return canvas;
    }

    const out = [];
    for (const [index, [name]] of photos.entries()) {
      const bytes = new Uint8Array(await (await fetch(`/bench/photo/${index}`)).arrayBuffer());
      const options = { project: 'bench', fileName: 'bench.jpg', fallbackDate: '2026-01-01' };
      const source = await fullPixels(bytes);
      const rgba = source.getContext('2d').getImageData(0, 0, source.width, source.height).data;
      const scale = Math.min(SIZE / source.width, SIZE / source.height);
      const target = () => {
        const c = document.createElement('canvas');
        c.width = Math.round(source.width * scale);
        c.height = Math.round(source.height * scale);
        return c;
      };
      const sourceCanvas = document.createElement('canvas');
      sourceCanvas.width = source.width;
      sourceCanvas.height = source.height;
      sourceCanvas.getContext('2d').drawImage(source, 0, 0);
      const t = { tessera: [], canvas: [], pica: [], picaWorkers: [], firFull: [] };
      // Warm up every path once (wasm compilation, pica's wasm and workers, codecs).
      wasm.preprocess(bytes, options);
      await canvasPipeline(bytes);
      await picaSingle.resize(sourceCanvas, target(), { filter: 'lanczos3' });
      await picaWorkers.resize(sourceCanvas, target(), { filter: 'lanczos3' });
      for (let round = 0; round < rounds; round += 1) {
        t.tessera.push(await time(() => wasm.preprocess(bytes, options)));
        t.canvas.push(await time(() => canvasPipeline(bytes)));
        t.pica.push(await time(() => picaSingle.resize(sourceCanvas, target(), { filter: 'lanczos3' })));
        t.picaWorkers.push(await time(() => picaWorkers.resize(sourceCanvas, target(), { filter: 'lanczos3' })));
        t.firFull.push(await time(() => wasm.letterbox_rgba(rgba, source.width, source.height)));
      }
      out.push({ name, width: source.width, height: source.height, bytes: bytes.length,
        ms: Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v)])), samples: t });
    }
    return out;
  }, { photos: PHOTOS, rounds: ROUNDS });

  // Tessera's resize step as its pipeline runs it, from the DCT-scaled decode: the criterion
  // stage benchmark's letterbox share, natively (there is no stage timer inside wasm).
  writeFileSync(join(ARTIFACTS, 'bench.json'), JSON.stringify(results, null, 1));
  const chromium = execFileSync('/usr/bin/chromium', ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)[1];
  const cores = readFileSync('/proc/cpuinfo', 'utf8').match(/^processor/gm).length;
  const f = (x) => x.toFixed(1);
  const rows = results.map(({ name, ms }) => `| ${name} | ${f(ms.tessera)} ms | ${f(ms.canvas)} ms (Tessera ${f(ms.tessera / ms.canvas)}× its time) |`);
  const resize = results.map(({ name, ms }) => `| ${name} | ${f(ms.firFull)} ms | ${f(ms.pica)} ms (${f(ms.pica / ms.firFull)}×) | ${f(ms.picaWorkers)} ms (${f(ms.picaWorkers / ms.firFull)}×) | ${f(ms.pica / ms.tessera)}× |`);
  const body = `## In the browser (issue 4)

Machine: ${cpu}, ${cores} cores; ${chromium} headless (Playwright ${JSON.parse(readFileSync(join(ROOT, 'node_modules/playwright-core/package.json'))).version}), pica ${JSON.parse(readFileSync(join(ROOT, 'node_modules/pica/package.json'))).version};
tessera-wasm built by \`scripts/build-web.sh\` (release, simd128, wasm-opt -O3). Medians of ${ROUNDS} interleaved rounds
in one run, main thread (the page runs the same code in a Web Worker). \`node tests/browser/bench.mjs\`.

File bytes → the upload-ready set (validate, orient, letterbox 256×256, rotations, JPEG encodes,
SHA-256s). The canvas path (\`createImageBitmap\` with EXIF orientation, \`drawImage\`,
\`convertToBlob\` JPEG q0.9 ×4, \`crypto.subtle\` SHA-256 ×5) decodes with Chromium's
libjpeg-turbo at full resolution, has no bomb protection, and its bytes differ between browsers.
Target: within 1.5× of it.

| photo | Tessera (wasm) | canvas |
|---|---|---|
${rows.join('\n')}

The resize step alone, 24 or 13 megapixels RGBA → the letterbox's scaled size, Lanczos3, from the
same full-resolution pixels: tessera-wasm's \`letterbox_rgba\` (fast_image_resize, simd128,
single thread) beside pica 10 single-threaded (\`features: ['js', 'wasm']\`) and with its Web
Workers (default features). The last column compares pica's resize with Tessera's whole
pipeline, which never resizes full-resolution pixels: it decodes at the smallest DCT scale
that keeps twice the letterbox resolution. Target: 5× faster than pica.

| photo | Tessera resize | pica (×Tessera) | pica + workers (×Tessera) | pica resize ÷ Tessera's whole pipeline |
|---|---|---|---|---|
${resize.join('\n')}`;
  // BENCHMARKS.md has one writer, scripts/benchmarks.py.
  console.log(execFileSync('python3', [join(ROOT, 'scripts/benchmarks.py'), 'browser', 'tests/browser/bench.mjs'], { input: body }).toString());
} finally {
  await browser.close();
  await stack.stop();
}
