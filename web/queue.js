// The upload queue, persisted in IndexedDB and uploaded with presigned PUTs when the browser is
// online, resumed after a reload. Two object stores: `entries` (manifest and upload state,
// small, rewritten as objects land) and `files` (the original and the five derivative JPEGs as
// Blobs, written once, the original dropped after upload).
//
// Entry state: 'queued' → 'uploading' (upload planned: upload_id and presigned targets saved,
// each stored object recorded as it lands) → 'done' (completed: job_id) or 'failed'.
// Exactly once: an entry's key is the project and the original's SHA-256, so the same file is
// never queued twice; a planned upload is resumed, never re-planned, unless its URLs expired
// before every object landed (then the unfinished upload is abandoned, never completed).
import init, { retry_delay_ms, retryable_status, max_in_flight } from './pkg/tessera_wasm.js';

const DB = 'tessera-uploads';
const STORE = 'entries';
const FILES = 'files';

function request(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

/** Opens the queue (and loads the wasm module whose retry policy the uploader follows). */
export async function openQueue() {
  await init();
  const open = indexedDB.open(DB, 2);
  open.onupgradeneeded = ({ oldVersion }) => {
    if (oldVersion < 1) {
      open.result.createObjectStore(STORE, { keyPath: 'key' });
      open.result.createObjectStore(FILES);
    } else if (oldVersion < 2) {
      keyBodiesByKind(open.transaction);
    }
  };
  return new Queue(await request(open));
}

/** Version 1 kept an entry's derivative Blobs as an array in the manifest's order after the
 * original; version 2 keys them by object kind. Runs inside the upgrade transaction. */
function keyBodiesByKind(tx) {
  const files = tx.objectStore(FILES);
  tx.objectStore(STORE).getAll().onsuccess = ({ target: { result: entries } }) => {
    for (const entry of entries) {
      files.get(entry.key).onsuccess = ({ target: { result: stored } }) => {
        if (!stored || !Array.isArray(stored.bodies)) return;
        const kinds = entry.manifest.objects.map((o) => o.kind).filter((kind) => kind !== 'original');
        const bodies = Object.fromEntries(kinds.map((kind, i) => [kind, stored.bodies[i]]));
        files.put({ ...stored, bodies }, entry.key);
      };
    }
  };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class HttpError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export class Queue extends EventTarget {
  constructor(db) {
    super();
    this.db = db;
    this.pumping = false;
    this.progress = new Map(); // entry key → bytes sent so far
  }

  async tx(mode, fn, stores = [STORE]) {
    const tx = this.db.transaction(stores, mode);
    const result = await fn(...stores.map((name) => tx.objectStore(name)));
    await new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
    return result;
  }

  all() { return this.tx('readonly', (s) => request(s.getAll())); }
  /** An entry's Blobs: `{ original, bodies: { processed, 'augmented-90', … } }`, bodies keyed by object kind. */
  files(key) { return this.tx('readonly', (f) => request(f.get(key)), [FILES]); }
  get(key) { return this.tx('readonly', (s) => request(s.get(key))); }
  async put(entry) {
    await this.tx('readwrite', (s) => request(s.put(entry)));
    this.dispatchEvent(new CustomEvent('change', { detail: entry }));
  }

  /** Adds a preprocessed file; null when the same original is already queued or done. */
  async add({ project, file, manifest, bodies }) {
    const key = `${project}/${original(manifest).sha256.hex}`;
    const entry = {
      key, project, fileName: file.name, manifest,
      state: 'queued', upload: null, stored: {}, result: null, error: null, addedAt: Date.now(),
    };
    const files = {
      original: file,
      bodies: Object.fromEntries(Object.entries(bodies).map(([kind, b]) => [kind, new Blob([b], { type: 'image/jpeg' })])),
    };
    const added = await this.tx('readwrite', async (s, f) => {
      if (await request(s.getKey(key)) !== undefined) return false;
      await Promise.all([request(s.add(entry)), request(f.put(files, key))]);
      return true;
    }, [STORE, FILES]);
    if (added) this.dispatchEvent(new CustomEvent('change', { detail: entry }));
    return added ? entry : null;
  }

  /** Uploads every waiting entry while online, three at a time; safe to call any number of times. */
  async pump(api) {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (;;) {
        if (!navigator.onLine) return;
        const waiting = (await this.all())
          .filter((e) => e.state === 'queued' || e.state === 'uploading')
          .sort((a, b) => a.addedAt - b.addedAt);
        if (waiting.length === 0) return;
        // Lanes share the max_in_flight() PUT slots; entries added meanwhile are picked up by
        // the next pass.
        let next = 0;
        await Promise.all([0, 1, 2].map(async () => {
          while (next < waiting.length && navigator.onLine) await this.upload(api, waiting[next++]);
        }));
      }
    } finally {
      this.pumping = false;
    }
  }

  async upload(api, entry) {
    try {
      if (!entry.upload || expired(entry.upload)) {
        if (entry.upload) entry.stored = {}; // abandoned: never completed, so never recorded
        const planned = await api.withRetry(() => api.json('POST', '/v1/uploads', {
          project: entry.project, files: [entry.manifest],
        }));
        entry.upload = planned;
        entry.state = 'uploading';
        await this.put(entry);
      }
      const files = await this.files(entry.key);
      const bodyOf = (kind) => (kind === 'original' ? files.original : files.bodies[kind]);
      const pending = entry.upload.objects.filter((t) => !entry.stored[t.key]);
      const sent = new Map();
      await Promise.all(pending.map((target) => api.withSlot(() => api.withRetry(() => api.put(
        target, bodyOf(target.kind), (loaded) => {
          sent.set(target.key, loaded);
          this.progress.set(entry.key, sentBytes(entry) + [...sent.values()].reduce((a, b) => a + b, 0));
          this.dispatchEvent(new CustomEvent('progress', { detail: entry }));
        },
      ))).then(async () => {
        entry.stored[target.key] = true;
        await this.put(entry);
      })));
      const completed = await api.withRetry(() => api.json(
        'POST', `/v1/uploads/${encodeURIComponent(entry.upload.upload_id)}/complete`, null,
      ));
      entry.state = 'done';
      entry.result = completed;
      // The original is in storage now; keep only the small derivatives for the results view.
      await this.tx('readwrite', (s, f) => Promise.all([
        request(s.put(entry)), request(f.put({ original: null, bodies: files.bodies }, entry.key)),
      ]), [STORE, FILES]);
      this.dispatchEvent(new CustomEvent('change', { detail: entry }));
    } catch (e) {
      if (!navigator.onLine || e.status === 0) return; // still waiting for the network
      entry.state = 'failed';
      entry.error = e.message;
      await this.put(entry);
    }
  }
}

/** The manifest's original: the file as uploaded. */
export function original(manifest) {
  return manifest.objects.find((o) => o.kind === 'original');
}

function expired(upload) {
  const soonest = Math.min(...upload.objects.map((t) => t.expires_at));
  return Date.now() / 1000 > soonest - 30;
}

function sentBytes(entry) {
  const size = (kind) => entry.manifest.objects.find((o) => o.kind === kind).size_bytes;
  return entry.upload.objects
    .filter((t) => entry.stored[t.key])
    .reduce((sum, t) => sum + size(t.kind), 0);
}

/** The edge API and storage, with retries and at most max_in_flight() PUTs at once. */
export class Api {
  constructor({ api_base, api_key }) {
    this.base = api_base;
    this.key = api_key;
    this.slots = max_in_flight();
    this.waiters = [];
  }

  async withSlot(fn) {
    while (this.slots === 0) await new Promise((resolve) => this.waiters.push(resolve));
    this.slots -= 1;
    try {
      return await fn();
    } finally {
      this.slots += 1;
      this.waiters.shift()?.();
    }
  }

  /** Retries transient failures (the core's policy: full-jitter backoff), waiting out offline spells. */
  async withRetry(fn) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await fn();
      } catch (e) {
        if (!(e instanceof HttpError) || !retryable_status(e.status)) throw e;
        if (!navigator.onLine) throw e; // the queue resumes on 'online'
        const delay = retry_delay_ms(attempt, Math.random(), e.retryAfter);
        if (delay === undefined) throw e;
        console.info(`retrying in ${Math.round(delay)} ms after: ${e.message}`);
        await sleep(delay);
      }
    }
  }

  async json(method, path, body) {
    let response;
    try {
      response = await fetch(this.base + path, {
        method,
        headers: { authorization: `Bearer ${this.key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
    } catch (e) {
      throw new HttpError(0, 'network', `no answer from the API: ${e.message}`);
    }
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const retryAfter = Number(response.headers.get('retry-after')) || undefined;
      throw new HttpError(response.status, answer.code ?? 'http', answer.message ?? `HTTP ${response.status}`, retryAfter);
    }
    return answer;
  }

  /**
   * Reads the server-sent events at `path` (fetch, not EventSource: the API key goes in a
   * header), calling `onEvent(name, data)` for each frame, and returns the stream's `retry`
   * (ms) when the server closes it. Frames follow the HTML standard's event-stream format.
   */
  async events(path, onEvent) {
    const response = await fetch(this.base + path, { headers: { authorization: `Bearer ${this.key}` } });
    if (!response.ok) {
      const answer = await response.json().catch(() => ({}));
      throw new HttpError(response.status, answer.code ?? 'http', answer.message ?? `HTTP ${response.status}`);
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let retry;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return retry;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = 'message';
        const data = [];
        for (const line of frame.split('\n')) {
          const colon = line.indexOf(':');
          if (colon === 0) continue; // a comment: keep-alive
          const [field, text] = colon < 0 ? [line, ''] : [line.slice(0, colon), line.slice(colon + 1).replace(/^ /, '')];
          if (field === 'event') name = text;
          else if (field === 'data') data.push(text);
          else if (field === 'retry') retry = Number(text);
        }
        if (data.length > 0) onEvent(name, data.join('\n'));
      }
    }
  }

  /** PUTs one object to its presigned URL with exactly the signed headers, reporting progress. */
  put(target, body, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('PUT', target.url);
      for (const [name, value] of target.headers) {
        if (name !== 'content-length') xhr.setRequestHeader(name, value);
      }
      xhr.upload.onprogress = (e) => onProgress(e.loaded);
      xhr.onload = () => (xhr.status < 300
        ? resolve()
        : reject(new HttpError(xhr.status, 'storage', `storage refused ${target.kind}: HTTP ${xhr.status}`)));
      xhr.onerror = () => reject(new HttpError(0, 'network', `no answer from storage for ${target.kind}`));
      xhr.send(body);
    });
  }
}
