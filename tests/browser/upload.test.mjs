// The upload path end to end in headless Chromium against `tessera up`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, basename } from 'node:path';
import { ARTIFACTS, cliManifests, dropFiles, fixture, launch, sha256, startUp, storedObjects, waitFor } from './stack.mjs';

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
      const native = cli.get(image.objects[0].sha256.hex);
      assert.ok(native, `the CLI processed ${image.file_name}`);
      assert.deepEqual(image.objects.map((o) => [o.kind, o.sha256.hex, o.size_bytes]),
        native.objects.map((o) => [o.kind, o.sha256.hex, o.size_bytes]), image.file_name);
      assert.deepEqual(image.exif, native.exif, image.file_name);
    }
    for (const path of PHOTOS) {
      assert.ok(page1.images.some((i) => i.objects[0].sha256.hex === sha256(readFileSync(path))), path);
    }

    // The results grid: every file uploaded, its four 256×256 images decoded, its job reported.
    const cards = page.locator('#results .card[data-state="done"]');
    assert.equal(await cards.count(), PHOTOS.length);
    const sizes = await page.$$eval('#results .card img', (imgs) => imgs.map((i) => [i.naturalWidth, i.naturalHeight]));
    assert.equal(sizes.length, PHOTOS.length * 4);
    assert.ok(sizes.every(([w, h]) => w === 256 && h === 256), JSON.stringify(sizes));
    await page.waitForFunction(() => [...document.querySelectorAll('#results .card')].every((c) => c.dataset.job === 'queued'));
    const drone = page.locator('#results .card', { hasText: 'DJI_0005' });
    assert.match(await drone.locator('.facts').innerText(), /45\.03\d+, -94\.34\d+/);

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
    await context.close();
  } finally {
    await stack.stop();
  }
});
