// The upload path end to end in headless Chromium against `tessera up`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, basename } from 'node:path';
import { execFileSync } from 'node:child_process';
import { ARTIFACTS, TESSERA, cliManifests, dropFiles, fixture, launch, sha256, startUp, storedObjects, waitFor } from './stack.mjs';

const PHOTOS = [
  'exif-0.6.0/sony-alpha-6000.jpg', // 6000×4000, EXIF date
  'exif-0.6.0/short-ascii-II.jpg', // Xiaomi 4208×3120
  'deepforest-2.1.0/AWPE Pigeon Lake 2020 DJI_0005.JPG', // drone, GPS 45.038, -94.349
  'exif-parser-0.1.12/starfish.jpg', // phone, GPS
  'exif-0.6.0/right.jpg', // EXIF orientation 6
  'deepforest-2.1.0/OSBS_029.tif', // GeoTIFF
].map(fixture);

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function openPage(stack) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e));
  page.on('console', (m) => { if (m.type() !== 'debug') console.error(`page ${m.type()}: ${m.text()}`); });
  await page.goto(stack.url);
  await waitFor(page, 'ready', 'true', 30_000);
  return { context, page };
}

test('dropped photos are stored under their keys with their checksums, searchable, shown', async () => {
  const stack = await startUp();
  try {
    const { context, page } = await openPage(stack);
    await dropFiles(page, PHOTOS.map((path) => ({ name: basename(path), bytes: readFileSync(path) })));
    await waitFor(page, 'uploaded', PHOTOS.length);
    await waitFor(page, 'waiting', 0);

    // Storage: six objects and a sidecar per photo, each with the manifest's SHA-256.
    const stored = storedObjects(stack.bucket);
    const page1 = await stack.api('/v1/images?project=local&limit=50');
    assert.equal(page1.images.length, PHOTOS.length);
    assert.equal(stored.size, PHOTOS.length * 7);
    const cli = cliManifests(PHOTOS);
    for (const image of page1.images) {
      assert.ok(stored.has(image.metadata_key), image.metadata_key);
      for (const object of image.objects) {
        assert.equal(stored.get(object.key), object.sha256.hex, object.key);
      }
      // Byte-identical to `tessera preprocess` on the same file (ids and keys are the server's).
      const native = cli.get(image.objects.find((o) => o.kind === 'original').sha256.hex);
      assert.ok(native, `the CLI processed ${image.file_name}`);
      assert.deepEqual(image.objects.map((o) => [o.kind, o.sha256.hex, o.size_bytes]),
        native.objects.map((o) => [o.kind, o.sha256.hex, o.size_bytes]), image.file_name);
      assert.deepEqual(image.exif, native.exif, image.file_name);
    }
    for (const path of PHOTOS) {
      assert.ok(page1.images.some((i) => i.objects.find((o) => o.kind === 'original').sha256.hex === sha256(readFileSync(path))), path);
    }

    // The results grid: every file uploaded, its four 256×256 images decoded, its job reported.
    const cards = page.locator('#results .card[data-state="done"]');
    assert.equal(await cards.count(), PHOTOS.length);
    await page.waitForFunction((n) => {
      const imgs = [...document.querySelectorAll('#results .card figure img')];
      return imgs.length === n && imgs.every((i) => i.complete);
    }, PHOTOS.length * 4);
    const sizes = await page.$$eval('#results .card figure img', (imgs) => imgs.map((i) => [i.naturalWidth, i.naturalHeight]));
    assert.equal(sizes.length, PHOTOS.length * 4);
    assert.ok(sizes.every(([w, h]) => w === 256 && h === 256), JSON.stringify(sizes));
    // Each upload's job runs in tessera up's worker: photos are checked (checksums, derivatives
    // re-derived) and the job ends succeeded at 100 %.
    await page.waitForFunction(() => [...document.querySelectorAll('#results .card')].every((c) => c.dataset.job === 'succeeded'), null, { timeout: 120_000 });
    const bars = await page.$$eval('#results .card .job progress', (ps) => ps.map((p) => p.value));
    assert.equal(bars.length, PHOTOS.length);
    assert.ok(bars.every((v) => v === 1), JSON.stringify(bars));
    // The GeoTIFF's job stitched and ran the detector: its preview, with the detections
    // drawn, and the downloads.
    const geotiff = page.locator('#results .card', { hasText: 'OSBS_029' });
    await geotiff.locator('img.preview').waitFor();
    await page.waitForFunction(() => {
      const img = document.querySelector('#results .card img.preview');
      return img && img.complete && img.naturalWidth > 0;
    });
    assert.deepEqual(await geotiff.locator('.downloads a').allInnerTexts(), ['COCO JSON', 'GeoJSON', 'STAC Item', 'Mosaic (COG)']);
    const coco = await (await fetch(await geotiff.locator('.downloads a', { hasText: 'COCO JSON' }).getAttribute('href'))).json();
    assert.ok(coco.annotations.length >= 15, `${coco.annotations.length} detections`);
    await geotiff.screenshot({ path: join(ARTIFACTS, 'job-results.png') });
    const drone = page.locator('#results .card', { hasText: 'DJI_0005' });
    assert.match(await drone.locator('.facts').innerText(), /45\.03\d+, -94\.34\d+/);
    // Each photo's job ran the detector on the photo, upright: its preview with the boxes
    // drawn and its count, matching its job's COCO JSON.
    const photoPreview = drone.locator('ul.photos img');
    await photoPreview.waitFor();
    await photoPreview.evaluate((img) => img.complete || new Promise((resolve) => { img.onload = resolve; }));
    assert.ok(await photoPreview.evaluate((img) => img.naturalWidth) > 0, 'the photo preview loads');
    const caption = await drone.locator('ul.photos li span').innerText();
    const count = Number(caption.match(/: (\d+) detections?$/)[1]);
    const droneCoco = await (await fetch(await drone.locator('.downloads a', { hasText: 'COCO JSON' }).getAttribute('href'))).json();
    assert.equal(droneCoco.annotations.length, count, caption);
    await drone.screenshot({ path: join(ARTIFACTS, 'photo-detections.png') });

    // The search form: the drone photo's bounding box finds it alone.
    await page.fill('input[name=west]', '-94.4');
    await page.fill('input[name=south]', '45.0');
    await page.fill('input[name=east]', '-94.3');
    await page.fill('input[name=north]', '45.1');
    await page.click('#search button[type=submit]');
    await page.waitForFunction(() => /found/.test(document.querySelector('#search-status').textContent));
    assert.deepEqual(await page.$$eval('#search-results .name', (n) => n.map((e) => e.textContent)),
      ['AWPE Pigeon Lake 2020 DJI_0005.JPG']);
    await page.screenshot({ path: join(ARTIFACTS, 'uploaded.png'), fullPage: true });

    // Phone-sized screen: nothing wider than the viewport.
    await page.setViewportSize({ width: 390, height: 844 });
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 390));
    await page.screenshot({ path: join(ARTIFACTS, 'phone.png') });

    // The API reference at /docs: Swagger UI from the page's own assets (no other origin),
    // the edge's document, and "Try it out" answering with the local key already filled in.
    const requested = [];
    const docs = await context.newPage();
    docs.on('request', (r) => requested.push(r.url()));
    // The document arrives after config.json (as it did once under load in CI): the key must
    // still be filled in.
    await docs.route('**/v1/openapi.json', async (route) => { await new Promise((r) => setTimeout(r, 1000)); await route.continue(); });
    await docs.setViewportSize({ width: 1280, height: 900 });
    await docs.goto(`${stack.url}/docs/`);
    await docs.locator('.swagger-ui .info .title', { hasText: 'Tessera edge API' }).waitFor();
    await docs.screenshot({ path: join(ARTIFACTS, 'docs.png') });
    const listJobs = docs.locator('#operations-default-listJobs');
    await listJobs.locator('.opblock-summary').click();
    await listJobs.locator('.try-out__btn').click();
    await listJobs.locator('.execute').click();
    await listJobs.locator('.live-responses-table .response-col_status', { hasText: '200' }).waitFor();
    assert.ok(await docs.locator('#operations-default-jobEvents').count() === 1, 'the events route is documented');
    await docs.screenshot({ path: join(ARTIFACTS, 'docs-try-it-out.png') });
    const foreign = requested.filter((url) => !url.startsWith(stack.url) && !url.startsWith('data:'));
    assert.deepEqual(foreign, [], 'the reference loads nothing from another origin');
    await context.close();
  } finally {
    await stack.stop();
  }
});

/** A real PNG whose IHDR (CRC fixed up) claims width × height: a decompression bomb. */
function pngBomb(width, height) {
  const png = Buffer.from(readFileSync(fixture('scikit-image-0.26.0/chelsea.png')));
  png.writeUInt32BE(width, 16);
  png.writeUInt32BE(height, 20);
  let crc = ~0;
  for (const byte of png.subarray(12, 29)) {
    crc ^= byte;
    for (let k = 0; k < 8; k += 1) crc = (crc >>> 1) ^ (0xEDB88320 & -(crc & 1));
  }
  png.writeUInt32BE(~crc >>> 0, 29);
  return png;
}

/** A real progressive JPEG whose SOF2 claims width × height. */
function jpegBomb(width, height) {
  const jpeg = Buffer.from(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'rocket-progressive.jpg')));
  const sof = jpeg.indexOf(Buffer.from([0xFF, 0xC2]));
  jpeg.writeUInt16BE(height, sof + 5);
  jpeg.writeUInt16BE(width, sof + 7);
  return jpeg;
}

test('a non-image, a file over 10 MiB and decompression bombs get plain messages; nothing is uploaded', async () => {
  const stack = await startUp();
  try {
    const { context, page } = await openPage(stack);
    const bad = [
      { name: 'survey.jpg', bytes: Buffer.from('plot,lat,lon\nA1,45.03,-94.34\n'), code: 'unsupported_type', words: /^Not an image: only JPEG, PNG and TIFF/ },
      { name: 'crop2.png', bytes: readFileSync(fixture('deepforest-2.1.0/2019_YELL_2_528000_4978000_image_crop2.png')), code: 'too_large', words: /^Too large: file is 14\.6 MiB .* the limit is 10\.0 MiB/ },
      { name: 'bomb.png', bytes: pngBomb(100_000, 100_000), code: 'side_too_long', words: /^Too many pixels: image is 100000×100000 px; the limit is 12000 px a side/ },
      { name: 'bomb.jpg', bytes: jpegBomb(11_000, 11_000), code: 'too_many_pixels', words: /^Too many pixels: image is 11000×11000 px \(121\.0 megapixels\); the limit is 100 megapixels/ },
      { name: 'cut.jpg', bytes: readFileSync(fixture('exif-parser-0.1.12/starfish.jpg')).subarray(0, 100_000), code: 'corrupt', words: /^Damaged file: damaged JPEG file/ },
    ];
    // Keyboard only: Tab to the drop zone, Enter opens the file picker (the picker itself is
    // the browser's; its files are then set as a person would choose them).
    await page.evaluate(() => {
      document.querySelector('#files').click = () => { window.pickerOpened = true; };
    });
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'drop');
    await page.keyboard.press('Enter');
    assert.equal(await page.evaluate(() => window.pickerOpened), true);
    await page.setInputFiles('#files', bad.map(({ name, bytes }) => ({ name, mimeType: 'application/octet-stream', buffer: bytes })));
    await waitFor(page, 'checked', bad.length);
    for (const { name, code, words } of bad) {
      const card = page.locator('#results .card', { has: page.locator('.name', { hasText: name }) });
      assert.equal(await card.getAttribute('data-code'), code, name);
      assert.match(await card.locator('.status').innerText(), words, name);
    }
    assert.equal(await page.locator('#queue li').count(), 0);
    await page.screenshot({ path: join(ARTIFACTS, 'refused.png'), fullPage: true });
    await context.close();
    assert.equal(storedObjects(stack.bucket).size, 0);
    assert.equal((await stack.api('/v1/images?project=local')).images.length, 0);
  } finally {
    await stack.stop();
  }
});

test('offline: files are checked, kept across a reload, and uploaded exactly once when back online', async () => {
  const stack = await startUp();
  try {
    const { context, page } = await openPage(stack);
    await page.evaluate(() => navigator.serviceWorker.ready);
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null);
    await context.setOffline(true);
    const photos = PHOTOS.slice(2, 5);
    await dropFiles(page, photos.map((path) => ({ name: basename(path), bytes: readFileSync(path) })));
    await waitFor(page, 'checked', photos.length);
    await waitFor(page, 'waiting', photos.length);
    // The same file again is not queued twice.
    await dropFiles(page, [{ name: 'again.jpg', bytes: readFileSync(photos[0]) }]);
    await page.locator('#results .card[data-state="duplicate"]').waitFor();

    // Reload while offline: the service worker serves the page, IndexedDB kept the queue.
    await page.reload();
    await waitFor(page, 'ready', 'true', 30_000);
    assert.equal(await page.evaluate(() => navigator.onLine), false);
    await waitFor(page, 'waiting', photos.length);
    assert.equal(await page.locator('#queue li').count(), photos.length);
    await page.waitForFunction((n) => document.querySelectorAll('#results .card figure img').length === n, photos.length * 4);
    await page.screenshot({ path: join(ARTIFACTS, 'offline-queue.png'), fullPage: true });
    assert.equal(storedObjects(stack.bucket).size, 0);

    await context.setOffline(false);
    await waitFor(page, 'uploaded', photos.length);
    await waitFor(page, 'waiting', 0);
    // A second reload online must not upload anything again.
    await page.reload();
    await waitFor(page, 'ready', 'true', 30_000);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const records = (await stack.api('/v1/images?project=local')).images;
    assert.equal(records.length, photos.length);
    assert.deepEqual(new Set(records.map((r) => r.objects.find((o) => o.kind === 'original').sha256.hex)),
      new Set(photos.map((p) => sha256(readFileSync(p)))));
    assert.equal(storedObjects(stack.bucket).size, photos.length * 7);
    await context.close();
  } finally {
    await stack.stop();
  }
});

test('files queued by the previous page version (derivatives in an array) upload after the upgrade', async () => {
  const stack = await startUp();
  try {
    const path = PHOTOS[2];
    const out = mkdtempSync(join(tmpdir(), 'tessera-v1-'));
    execFileSync(TESSERA, ['preprocess', '--project', 'local', '--out', out, path], { stdio: 'pipe' });
    const [manifest] = [...cliManifests([path]).values()];
    const b64 = (file) => readFileSync(file).toString('base64');
    const seed = {
      manifest,
      fileName: basename(path),
      original: b64(path),
      bodies: manifest.objects.filter((o) => o.kind !== 'original').map((o) => b64(join(out, o.key))),
    };
    const context = await browser.newContext();
    const page = await context.newPage();
    // Same origin, without the app: leave IndexedDB as version 1 of the page did.
    await page.goto(`${stack.url}/config.json`);
    await page.evaluate(async ({ manifest, fileName, original, bodies }) => {
      const blob = (b64) => new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))]);
      const open = indexedDB.open('tessera-uploads', 1);
      open.onupgradeneeded = () => {
        open.result.createObjectStore('entries', { keyPath: 'key' });
        open.result.createObjectStore('files');
      };
      const db = await new Promise((resolve) => { open.onsuccess = () => resolve(open.result); });
      const key = `local/${manifest.objects.find((o) => o.kind === 'original').sha256.hex}`;
      const tx = db.transaction(['entries', 'files'], 'readwrite');
      tx.objectStore('entries').put({
        key, project: 'local', fileName, manifest, state: 'queued', upload: null, stored: {},
        result: null, error: null, addedAt: Date.now(),
      });
      tx.objectStore('files').put({ original: blob(original), bodies: bodies.map(blob) }, key);
      await new Promise((resolve) => { tx.oncomplete = resolve; });
      db.close();
    }, seed);
    await page.goto(stack.url);
    await waitFor(page, 'uploaded', 1);
    const stored = [...storedObjects(stack.bucket).values()];
    for (const object of manifest.objects) assert.ok(stored.includes(object.sha256.hex), object.kind);
    await context.close();
  } finally {
    await stack.stop();
  }
});

test('the page keeps answering input while 200 files are processed (95% of key presses within 50 ms)', async () => {
  // The page is measured, not the jobs: no worker runs the detector on the cores the page
  // shares (the jobs stay queued).
  const stack = await startUp(['--workers', '0']);
  try {
    // 200 distinct files: real photos with a different comment after the image data.
    const sources = ['exif-parser-0.1.12/starfish.jpg', 'scikit-image-0.26.0/retina.jpg', 'scikit-image-0.26.0/hubble_deep_field.jpg',
      'scikit-image-0.26.0/coffee.png', 'scikit-image-0.26.0/astronaut.png', 'scikit-image-0.26.0/chelsea.png',
      'exif-0.6.0/test1.jpg', 'deepforest-2.1.0/SOAP_061.png', 'deepforest-2.1.0/OSBS_029.tif',
      'deepforest-2.1.0/AWPE Pigeon Lake 2020 DJI_0005.JPG'].map((rel) => readFileSync(fixture(rel)));
    const dir = mkdtempSync(join(tmpdir(), 'tessera-200-'));
    const paths = Array.from({ length: 200 }, (_, i) => {
      const source = sources[i % sources.length];
      const path = join(dir, `file-${String(i).padStart(3, '0')}.${source[0] === 0xFF ? 'jpg' : source[0] === 0x89 ? 'png' : 'tif'}`);
      writeFileSync(path, Buffer.concat([source, Buffer.from(`tessera copy ${i}`)]));
      return path;
    });
    const { context, page } = await openPage(stack);
    await page.evaluate(() => {
      window.inputDelays = [];
      const field = document.querySelector('input[name=west]');
      field.addEventListener('keydown', (e) => {
        // From the key press to its handler, then to the next frame that shows it.
        const handled = performance.now();
        requestAnimationFrame(() => window.inputDelays.push([handled - e.timeStamp, performance.now() - e.timeStamp]));
      });
    });
    await page.setInputFiles('#files', paths);
    await page.focus('input[name=west]');
    let typed = 0;
    while (await page.evaluate(() => Number(document.body.dataset.checked ?? 0)) < 200) {
      await page.keyboard.type('1');
      await page.keyboard.press('Backspace');
      typed += 2;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const delays = await page.evaluate(() => window.inputDelays);
    assert.ok(typed >= 20, `typed ${typed} keys while processing`);
    assert.equal(delays.length, typed);
    // The main thread must not do the work: 95% of key presses reach their handler within
    // 50 ms and paint within 100 ms while 200 files are processed (preprocessing on the main
    // thread would hold most of them back by one file's decode, 50 to 300 ms). The worst single
    // press is bounded at 300 ms, not 100 ms: on this 2-core machine the page shares the cores
    // with the worker, the compositor and `tessera up` hashing every PUT, and the scheduler
    // alone delays one press in a few hundred by 118 to 238 ms (seen in 4 of 14 runs, at
    // random points of the run). The worst press is written to input-delays.json.
    const handled = delays.map(([h]) => h).sort((a, b) => a - b);
    const p95Handled = handled[Math.ceil(handled.length * 0.95) - 1];
    const worstHandled = handled[handled.length - 1];
    const painted = delays.map(([, paint]) => paint).sort((a, b) => a - b);
    const p95 = painted[Math.ceil(painted.length * 0.95) - 1];
    const worst = painted[painted.length - 1];
    writeFileSync(join(ARTIFACTS, 'input-delays.json'),
      JSON.stringify({ typed, p95_handled_ms: p95Handled, worst_handled_ms: worstHandled, p95_painted_ms: p95, worst_painted_ms: worst, delays }, null, 1));
    assert.ok(p95Handled < 50, `95th percentile key press to handler: ${p95Handled.toFixed(1)} ms`);
    assert.ok(worstHandled < 300, `worst key press to handler: ${worstHandled.toFixed(1)} ms`);
    assert.ok(p95 < 100, `95th percentile key press to paint: ${p95.toFixed(1)} ms (worst ${worst.toFixed(1)} ms)`);
    await page.screenshot({ path: join(ARTIFACTS, 'two-hundred.png') });
    assert.equal(await page.locator('#results .card.error').count(), 0);
    await waitFor(page, 'uploaded', 200, 300_000);
    assert.equal((await stack.api('/v1/images?project=local&limit=200')).images.length, 200);
    await context.close();
  } finally {
    await stack.stop();
  }
});

test('storage failures: transient ones are retried with backoff, refusals are not, at most 4 PUTs at once', async () => {
  const stack = await startUp();
  try {
    // Routes see the page's own requests only without a service worker in between.
    const context = await browser.newContext({ serviceWorkers: 'block' });
    const page = await context.newPage();
    const attempts = new Map(); // kind of object and file → PUTs seen
    let inFlight = 0;
    let maxInFlight = 0;
    const storage = (url) => url.pathname.startsWith('/tessera/');
    await page.route(storage, async (route) => {
      const request = route.request();
      if (request.method() !== 'PUT') return route.continue();
      const key = decodeURIComponent(new URL(request.url()).pathname);
      const what = `${key.includes('starfish') ? 'starfish' : 'drone'} ${key.split('/')[2]}`;
      const seen = (attempts.get(what) ?? 0) + 1;
      attempts.set(what, seen);
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 150));
      inFlight -= 1;
      if (what === 'drone processed' && seen <= 2) return route.fulfill({ status: 503, body: 'SlowDown' });
      if (what === 'starfish original-uploads') return route.fulfill({ status: 403, body: 'AccessDenied' });
      return route.continue();
    });
    await page.goto(stack.url);
    await waitFor(page, 'ready', 'true', 30_000);
    await dropFiles(page, ['deepforest-2.1.0/AWPE Pigeon Lake 2020 DJI_0005.JPG', 'exif-parser-0.1.12/starfish.jpg']
      .map((rel) => ({ name: basename(rel), bytes: readFileSync(fixture(rel)) })));
    await waitFor(page, 'uploaded', 1);
    const starfish = page.locator('#results .card', { has: page.locator('.name', { hasText: 'starfish.jpg' }) });
    await starfish.locator('.retry').waitFor();
    assert.match(await starfish.locator('.status').innerText(), /Upload failed: storage refused original: HTTP 403/);
    assert.equal(attempts.get('drone processed'), 3, 'two 503s, then success');
    assert.equal(attempts.get('starfish original-uploads'), 1, 'a 403 is not retried');
    assert.ok(maxInFlight <= 4 && maxInFlight >= 2, `at most 4 PUTs at once (saw ${maxInFlight})`);
    const records = (await stack.api('/v1/images?project=local')).images;
    assert.deepEqual(records.map((r) => r.file_name), ['AWPE Pigeon Lake 2020 DJI_0005.JPG']);

    // Once storage accepts it, "Retry upload" finishes the refused file.
    await page.unrouteAll({ behavior: 'wait' });
    await starfish.locator('.retry').click();
    await waitFor(page, 'uploaded', 2);
    assert.equal((await stack.api('/v1/images?project=local')).images.length, 2);
    await context.close();
  } finally {
    await stack.stop();
  }
});
