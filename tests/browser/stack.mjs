// Shared by the browser tests: start `tessera up` on free ports with a fresh data folder,
// launch Debian's Chromium with Playwright, read storage straight from s3s-fs's folder.
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, statSync, mkdirSync } from 'node:fs';
import { tmpdir, homedir } from 'node:os';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const TARGET = process.env.CARGO_TARGET_DIR ?? join(homedir(), '.cache/tessera/target');
export const TESSERA = process.env.TESSERA_BIN ?? join(TARGET, 'release', 'tessera');
export const FIXTURES = process.env.TESSERA_FIXTURES ?? join(homedir(), '.cache/tessera/fixtures');
export const ARTIFACTS = join(ROOT, 'out', 'browser');
mkdirSync(ARTIFACTS, { recursive: true });

export const fixture = (rel) => join(FIXTURES, rel);
export const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

/** `tessera up` on free ports, with `extra` arguments; resolves once it prints its URL. */
export async function startUp(extra = []) {
  const data = mkdtempSync(join(tmpdir(), 'tessera-up-'));
  const child = spawn(TESSERA, ['up', '--listen', '127.0.0.1:0', '--s3-listen', '127.0.0.1:0',
    '--data', data, '--web', join(ROOT, 'web'), ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const match = out.match(/open (http:\/\/\S+)/);
      if (match) resolve(match[1]);
    });
    child.on('exit', (code) => reject(new Error(`tessera up exited ${code}: ${log}`)));
  });
  const credentials = JSON.parse(readFileSync(join(data, 'local.json'), 'utf8'));
  return {
    url, data, log: () => log,
    bucket: join(data, 's3', 'tessera'),
    async api(path) {
      const response = await fetch(url + path, { headers: { authorization: `Bearer ${credentials.api_key}` } });
      if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${await response.text()}`);
      return response.json();
    },
    async stop() {
      child.kill('SIGINT');
      const code = await new Promise((resolve) => child.on('exit', (c) => resolve(c)));
      if (code !== 0) throw new Error(`tessera up exited ${code} on SIGINT: ${log}`);
    },
  };
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage'],
    headless: true,
  });
}

/** Every object the uploads stored: key → sha256 hex (s3s-fs keeps each object as a file at its
 * key); jobs' outputs under results/ are left out. */
export function storedObjects(bucket) {
  const objects = new Map();
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      // Jobs' outputs (results/{job_id}/…) are not what the uploads stored.
      if (dir === bucket && name === 'results') continue;
      if (statSync(path).isDirectory()) walk(path);
      else if (!name.startsWith('.')) objects.set(relative(bucket, path), sha256(readFileSync(path)));
    }
  };
  walk(bucket);
  return objects;
}

/** Drops files on the page's drop zone with a real DataTransfer (drag-and-drop path). */
export async function dropFiles(page, files) {
  const payload = files.map(({ name, bytes }) => ({ name, b64: Buffer.from(bytes).toString('base64') }));
  const dataTransfer = await page.evaluateHandle((files) => {
    const dt = new DataTransfer();
    for (const { name, b64 } of files) {
      const bin = atob(b64);
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i += 1) bytes[i] = bin.charCodeAt(i);
      dt.items.add(new File([bytes], name));
    }
    return dt;
  }, payload);
  await page.dispatchEvent('#drop', 'drop', { dataTransfer });
}

/** The manifests `tessera preprocess` writes for `paths`, keyed by the original's SHA-256. */
export function cliManifests(paths) {
  const out = mkdtempSync(join(tmpdir(), 'tessera-cli-'));
  execFileSync(TESSERA, ['preprocess', '--project', 'local', '--out', out, ...paths], { stdio: 'pipe' });
  const manifests = new Map();
  const dir = join(out, 'metadata', 'local');
  for (const name of readdirSync(dir)) {
    const manifest = JSON.parse(readFileSync(join(dir, name), 'utf8'));
    manifests.set(manifest.objects.find((o) => o.kind === 'original').sha256.hex, manifest);
  }
  return manifests;
}

export async function waitFor(page, attribute, value, timeout = 120_000) {
  await page.waitForFunction(([a, v]) => document.body.dataset[a] === v, [attribute, String(value)], { timeout });
}
