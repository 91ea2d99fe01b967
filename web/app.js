// The upload page: files → Web Workers (tessera-wasm) → the upload worker (tessera-wasm too:
// IndexedDB queue, presigned PUTs). This page keeps the view.
import { Api } from './api.js';

const $ = (selector) => document.querySelector(selector);
const config = await fetch('config.json').then((r) => r.json());
const api = new Api(config);
const today = () => new Date().toISOString().slice(0, 10);

if ('serviceWorker' in navigator) {
  navigator.serviceWorker.register('sw.js').catch((e) => console.warn('service worker:', e));
}

// ---- Workers: preprocessing off the main thread -------------------------------------------
const workers = Array.from({ length: Math.max(1, Math.min(4, (navigator.hardwareConcurrency || 2) - 1)) },
  () => new Worker('worker.js', { type: 'module' }));
// Files wait here and go to a worker only when it has room for them (two per worker: one
// working, one ready), so a drop of hundreds of files costs the main thread nothing up front
// and each worker gets the next file as soon as it is free.
const PER_WORKER = 2;
const waiting = [];
const inFlight = new Map(); // id → { resolve, worker }
const busy = new Map(workers.map((w) => [w, 0]));
let nextId = 0;
// Uploads wait while files are being checked: on a small machine, checking and uploading at
// once share the cores with this page and hold key presses back.
let checking = false;
function setChecking(now) {
  if (now === checking) return;
  checking = now;
  uploads.postMessage({ type: 'pause', paused: now });
}
function dispatch() {
  setChecking(waiting.length > 0 || inFlight.size > 0);
  while (waiting.length > 0) {
    const [worker, load] = [...busy].reduce((a, b) => (b[1] < a[1] ? b : a));
    if (load >= PER_WORKER) return;
    const { file, resolve } = waiting.shift();
    const id = nextId++;
    inFlight.set(id, { resolve, worker });
    busy.set(worker, load + 1);
    worker.postMessage({ id, file, options: { project: config.project, fileName: file.name, fallbackDate: today() } });
  }
}
for (const worker of workers) {
  worker.onmessage = ({ data }) => {
    const { resolve } = inFlight.get(data.id);
    inFlight.delete(data.id);
    busy.set(worker, busy.get(worker) - 1);
    dispatch();
    setChecking(waiting.length > 0 || inFlight.size > 0);
    resolve(data);
  };
}
function preprocessInWorker(file) {
  return new Promise((resolve) => {
    waiting.push({ file, resolve });
    dispatch();
  });
}

// ---- The upload worker: the queue and the uploads ------------------------------------------
// Messages: wasm-client/src/upload_worker.rs. Each image the worker knows is kept here as it
// last said: { key, fileName, manifest, bodies: { kind: Blob }, state, stored, error, jobId,
// fraction }.
const uploads = new Worker('upload-worker.js', { type: 'module' });
const images = new Map();
const adding = new Map(); // id → resolve(added)
const made = new Map(); // key → the derivatives' Blobs of a file being added (made here)
let nextAdd = 0;
let uploadsReady;
const ready = new Promise((resolve) => { uploadsReady = resolve; });
uploads.onmessage = ({ data }) => {
  switch (data.type) {
    case 'image':
      // A file added here comes without its Blobs: the page made them.
      images.set(data.key, { ...data, bodies: data.bodies ?? made.get(data.key), fraction: 0 });
      made.delete(data.key);
      render(images.get(data.key));
      scheduleQueueRender();
      break;
    case 'changes':
      for (const change of data.states) {
        const changed = images.get(change.key);
        if (!changed) continue;
        Object.assign(changed, { state: change.state, stored: change.stored, error: change.error, jobId: change.jobId });
        render(changed);
      }
      for (const [key, fraction] of Object.entries(data.progress)) {
        const sending = images.get(key);
        if (!sending) continue;
        sending.fraction = fraction;
        if (sending.state === 'uploading') cards.get(key).querySelector('.progress').value = fraction;
      }
      scheduleQueueRender();
      break;
    case 'added':
      adding.get(data.id)?.(data.added);
      adding.delete(data.id);
      break;
    case 'error':
      console.error(`upload queue: ${data.message}`);
      uploadsReady(); // the page still searches and shows jobs
      break;
    case 'ready':
      uploadsReady();
      break;
    default:
      console.warn('upload worker said', data);
  }
};
uploads.onerror = (e) => console.error('upload worker:', e.message);
uploads.postMessage({ type: 'start', config, online: navigator.onLine });

/** Hands a preprocessed file (its derivatives as Blobs) to the upload worker; false when the
 * same original is already queued or uploaded. The page keeps the Blobs to show them. */
function queueUpload(file, { manifest, bodies }) {
  const id = nextAdd++;
  const key = `${config.project}/${original(manifest).sha256.hex}`;
  made.set(key, bodies);
  return new Promise((resolve) => {
    adding.set(id, (added) => {
      if (!added) made.delete(key);
      resolve(added);
    });
    uploads.postMessage({ type: 'add', id, file, manifest, bodies });
  });
}

/** The manifest's original: the file as uploaded. */
function original(manifest) {
  return manifest.objects.find((o) => o.kind === 'original');
}

// ---- Plain words for refusals --------------------------------------------------------------
const TITLES = {
  too_large: 'Too large',
  unsupported_type: 'Not an image',
  side_too_long: 'Too many pixels',
  too_many_pixels: 'Too many pixels',
  empty_image: 'Empty image',
  corrupt: 'Damaged file',
  unsupported_feature: 'Unsupported image',
};
// The title is chosen by the stable code (tessera-core's ErrorCode); the message is the
// core's own plain words with the value and the limit.
function plainWords({ code, message }) {
  return `${TITLES[code] ?? 'Could not read this file'}: ${message}.`;
}

// ---- Cards ---------------------------------------------------------------------------------
const cards = new Map(); // entry key or temporary id → card element
const stats = { total: 0, processed: 0, failed: 0 };

function newCard(name) {
  const card = $('#file-card').content.firstElementChild.cloneNode(true);
  card.querySelector('.name').textContent = name;
  $('#results').prepend(card);
  return card;
}

function setStatus(card, text, kind) {
  card.querySelector('.status').textContent = text;
  card.classList.toggle('error', kind === 'error');
  card.classList.toggle('done', kind === 'done');
}

const ROTATION_LABELS = [['processed', 'Letterbox'], ['augmented-90', '90°'], ['augmented-180', '180°'], ['augmented-270', '270°']];

// Thumbnails are made when the page is idle, a card at a time: with hundreds of files, making
// them as the files arrive would hold key presses back.
const idle = window.requestIdleCallback ?? ((f) => setTimeout(f, 1));
function showDerivatives(card, entry) {
  if (card.dataset.shown) return;
  card.dataset.shown = '1';
  idle(() => makeThumbnails(card, entry), { timeout: 2000 });
}

function makeThumbnails(card, entry) {
  const { bodies } = entry;
  const thumbs = card.querySelector('.thumbs');
  for (const [kind, label] of ROTATION_LABELS) {
    const figure = document.createElement('figure');
    const img = document.createElement('img');
    img.src = URL.createObjectURL(bodies[kind]);
    img.alt = `${entry.fileName}, ${label}`;
    img.width = 64;
    img.height = 64;
    const caption = document.createElement('figcaption');
    caption.textContent = label;
    figure.append(img, caption);
    thumbs.append(figure);
  }
  showFacts(card, entry.manifest);
}

function showFacts(card, manifest) {
  const facts = card.querySelector('.facts');
  facts.replaceChildren();
  const add = (term, value) => {
    const dt = document.createElement('dt');
    dt.textContent = term;
    const dd = document.createElement('dd');
    dd.textContent = value;
    facts.append(dt, dd);
  };
  const exif = manifest.exif ?? {};
  add('Date', manifest.date_source === 'exif' ? `${exif.taken_at?.replace('T', ' ') ?? manifest.date} (EXIF)` : `${manifest.date} (no EXIF date)`);
  add('GPS', exif.gps ? `${exif.gps.latitude.toFixed(6)}, ${exif.gps.longitude.toFixed(6)}${exif.gps.altitude_m != null ? `, ${exif.gps.altitude_m.toFixed(1)} m` : ''}` : 'none');
  const { width, height, size_bytes: size } = original(manifest);
  add('Size', `${width}×${height} px, ${(size / 1048576).toFixed(2)} MB`);
  return add;
}

function render(entry) {
  let card = cards.get(entry.key);
  if (!card) {
    card = newCard(entry.fileName);
    card.dataset.key = entry.key;
    cards.set(entry.key, card);
  }
  showDerivatives(card, entry);
  const progress = card.querySelector('.progress');
  if (entry.state === 'done') {
    progress.value = 1;
    if (!watched.has(entry.jobId)) setStatus(card, `Uploaded. Job ${entry.jobId}: checking…`, 'done');
    watchJob(card, entry.jobId);
  } else if (entry.state === 'failed') {
    setStatus(card, `Upload failed: ${entry.error}`, 'error');
    if (!card.querySelector('.retry')) {
      const retry = document.createElement('button');
      retry.className = 'retry';
      retry.type = 'button';
      retry.textContent = 'Retry upload';
      retry.onclick = () => {
        retry.remove();
        uploads.postMessage({ type: 'retry', key: entry.key });
      };
      card.append(retry);
    }
  } else {
    progress.value = entry.fraction;
    setStatus(card, navigator.onLine ? 'Uploading…' : 'Ready; waiting for the network.');
  }
  card.dataset.state = entry.state;
}

const watched = new Set();
const RESULT_NAMES = { coco: 'COCO JSON', geojson: 'GeoJSON', stac: 'STAC Item', mosaic: 'Mosaic (COG)' };

/** The job's progress and, once it has ended, its results: the preview with the detections
 * drawn, download links, and each input that failed with its reason. */
function renderJob(card, job) {
  const stage = job.stage && job.state === 'running' ? `, ${job.stage}` : '';
  const percent = Math.round((job.progress.fraction ?? 0) * 100);
  const eta = job.progress.eta_seconds != null ? `, about ${job.progress.eta_seconds} s left` : '';
  const failed = job.progress.failed ? `, ${job.progress.failed} failed` : '';
  setStatus(card, `Uploaded. Job ${job.job_id}: ${job.state}${stage}, ${percent} % (${job.progress.done} of ${job.progress.total} images checked${failed}${eta}).`, 'done');
  card.dataset.job = job.state;
  let box = card.querySelector('.job');
  if (!box) {
    box = document.createElement('div');
    box.className = 'job';
    card.append(box);
  }
  const parts = [];
  const bar = document.createElement('progress');
  bar.max = 1;
  bar.value = job.progress.fraction ?? 0;
  bar.setAttribute('aria-label', 'job progress');
  parts.push(bar);
  const results = job.results ?? {};
  if (results.preview?.url) {
    const img = document.createElement('img');
    img.className = 'preview';
    img.src = results.preview.url;
    img.alt = `Detections of job ${job.job_id}`;
    parts.push(img);
  }
  // Each photo's detections: its preview (upright, boxes drawn) and count, named as uploaded.
  const names = new Map((job.inputs ?? []).map((i) => [i.image_id, i.original_key.split('/').pop()]));
  if (results.photos?.length) {
    const list = document.createElement('ul');
    list.className = 'photos';
    for (const photo of results.photos) {
      const item = document.createElement('li');
      const name = names.get(photo.image_id) ?? photo.image_id;
      if (photo.preview?.url) {
        const img = document.createElement('img');
        img.src = photo.preview.url;
        img.alt = `Detections on ${name}`;
        item.append(img);
      }
      const caption = document.createElement('span');
      caption.textContent = `${name}: ${photo.detections} detection${photo.detections === 1 ? '' : 's'}`;
      item.append(caption);
      list.append(item);
    }
    parts.push(list);
  }
  const links = Object.entries(RESULT_NAMES).filter(([name]) => results[name]?.url).map(([name, label]) => {
    const a = document.createElement('a');
    a.href = results[name].url;
    a.textContent = label;
    a.download = '';
    return a;
  });
  if (links.length) {
    const p = document.createElement('p');
    p.className = 'downloads';
    p.append('Download: ', ...links.flatMap((a, i) => (i ? [' · ', a] : [a])));
    parts.push(p);
  }
  for (const input of (job.inputs ?? []).filter((i) => i.state === 'failed')) {
    const p = document.createElement('p');
    p.className = 'input-failed';
    p.textContent = `${input.original_key.split('/').pop()}: ${input.reason}`;
    parts.push(p);
  }
  if (job.error) {
    const p = document.createElement('p');
    p.className = 'input-failed';
    p.textContent = job.error;
    parts.push(p);
  }
  box.replaceChildren(...parts);
}

/** Event streams open at once. Each holds one of the browser's six HTTP/1.1 connections to
 * the API until its job ends, and uploads need the others: two hundred queued jobs must not
 * take them all. Jobs beyond it wait for a stream in upload order. */
const MAX_EVENT_STREAMS = 2;
let openStreams = 0;
const streamWaiters = [];

async function takeStream() {
  if (openStreams < MAX_EVENT_STREAMS) {
    openStreams += 1;
    return;
  }
  // The releasing watcher hands its stream over without freeing it.
  await new Promise((resolve) => streamWaiters.push(resolve));
}

function releaseStream() {
  const next = streamWaiters.shift();
  if (next) next();
  else openStreams -= 1;
}

async function watchJob(card, jobId) {
  if (watched.has(jobId)) return;
  watched.add(jobId);
  await takeStream();
  try {
    await followJob(card, jobId);
  } finally {
    releaseStream();
    watched.delete(jobId);
  }
}

/** Server-sent events until the job ends; when the server closes the stream first (Workers
 * send one frame), reconnect after its `retry`. A reload watches the job again. */
async function followJob(card, jobId) {
  const path = `/v1/jobs/${encodeURIComponent(jobId)}/events`;
  let ended = false;
  while (!ended && navigator.onLine) {
    let retry = 1000;
    try {
      retry = (await api.events(path, (name, data) => {
        const job = JSON.parse(data);
        if (name === 'progress' || name === 'end') renderJob(card, job);
        if (name === 'end' || name === 'error') ended = true;
      })) ?? retry;
    } catch (e) {
      setStatus(card, `Uploaded. Job ${jobId}: status unavailable (${e.message}).`, 'done');
      if (e.status === 404) break;
      retry = 5000;
    }
    if (!ended) await new Promise((resolve) => setTimeout(resolve, retry));
  }
}

function renderQueue() {
  const entries = [...images.values()];
  const waiting = entries.filter((e) => e.state === 'queued' || e.state === 'uploading');
  const list = $('#queue');
  list.replaceChildren(...waiting.map((e) => {
    const li = document.createElement('li');
    li.textContent = `${e.fileName}: ${e.state === 'uploading' ? `${e.stored} of 6 objects stored` : 'preprocessed, not sent yet'}`;
    return li;
  }));
  $('#queue-empty').hidden = waiting.length > 0;
  const done = entries.filter((e) => e.state === 'done').length;
  const bar = $('#overall-progress');
  const all = Math.max(stats.total, 1);
  bar.max = all + entries.length;
  bar.value = stats.processed + stats.failed + done;
  $('#overall-text').textContent = `${stats.processed + stats.failed} of ${stats.total} checked (${stats.failed} refused), ${done} of ${entries.length} uploaded${waiting.length ? `, ${waiting.length} waiting` : ''}.`;
  document.body.dataset.uploaded = String(done);
  document.body.dataset.waiting = String(waiting.length);
}

let renderScheduled = false;
function scheduleQueueRender() {
  if (renderScheduled) return;
  renderScheduled = true;
  requestAnimationFrame(() => {
    renderScheduled = false;
    renderQueue();
  });
}

// ---- Adding files --------------------------------------------------------------------------
async function addFiles(fileList) {
  // A copy: the picker's FileList is emptied when the input is reset, right after this call.
  const files = [...fileList];
  stats.total += files.length;
  scheduleQueueRender();
  await ready;
  await Promise.all(files.map(async (file) => {
    const result = await preprocessInWorker(file);
    if (!result.ok) {
      stats.failed += 1;
      const card = newCard(file.name);
      setStatus(card, plainWords(result.error), 'error');
      card.dataset.state = 'refused';
      card.dataset.code = result.error.code;
      card.querySelector('.progress').hidden = true;
    } else {
      stats.processed += 1;
      if (!await queueUpload(file, result)) {
        const card = newCard(file.name);
        setStatus(card, 'Already added: the same file is queued or uploaded.', 'done');
        card.dataset.state = 'duplicate';
      }
    }
    scheduleQueueRender();
  }));
  document.body.dataset.checked = String(stats.processed + stats.failed);
}

const drop = $('#drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  addFiles(e.dataTransfer.files);
});
drop.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); $('#files').click(); }
});
$('#files').addEventListener('change', (e) => {
  addFiles(e.target.files);
  e.target.value = '';
});

// ---- Network -------------------------------------------------------------------------------
function networkChanged() {
  $('#network').textContent = navigator.onLine ? 'Online: uploads go straight to storage.' : 'Offline: files are checked and kept until the network is back.';
  document.body.dataset.online = String(navigator.onLine);
  uploads.postMessage({ type: 'online', online: navigator.onLine });
  scheduleQueueRender();
}
addEventListener('online', networkChanged);
addEventListener('offline', networkChanged);

// ---- Search --------------------------------------------------------------------------------
async function search(cursor) {
  const form = new FormData($('#search'));
  const params = new URLSearchParams({ project: config.project, limit: '24' });
  if (form.get('from')) params.set('from', form.get('from'));
  if (form.get('to')) params.set('to', form.get('to'));
  const box = ['west', 'south', 'east', 'north'].map((k) => form.get(k));
  if (box.some((v) => v !== '')) {
    if (box.some((v) => v === '')) {
      $('#search-status').textContent = 'Give all four sides of the bounding box, or none.';
      return;
    }
    params.set('bbox', box.join(','));
  }
  if (cursor) params.set('cursor', cursor);
  else $('#search-results').replaceChildren();
  $('#search-status').textContent = 'Searching…';
  try {
    const page = await api.json('GET', `/v1/images?${params}`);
    for (const image of page.images) {
      const card = newCard(image.file_name);
      $('#search-results').append(card);
      card.querySelector('.progress').hidden = true;
      setStatus(card, `Image ${image.image_id}`);
      showFacts(card, image);
      api.json('GET', `/v1/images/${encodeURIComponent(image.image_id)}`).then((answer) => {
        const key = image.objects.find((o) => o.kind === 'processed').key;
        const img = document.createElement('img');
        img.src = answer.downloads[key].url;
        img.alt = `${image.file_name}, letterbox`;
        img.width = 128;
        img.height = 128;
        card.querySelector('.thumbs').append(img);
      }).catch(() => {});
    }
    const shown = $('#search-results').children.length;
    $('#search-status').textContent = `${shown} image${shown === 1 ? '' : 's'} found${page.next_cursor ? ' so far' : ''}.`;
    $('#search-more').hidden = !page.next_cursor;
    $('#search-more').onclick = () => search(page.next_cursor);
  } catch (e) {
    $('#search-status').textContent = `Search failed: ${e.message}`;
  }
}
$('#search').addEventListener('submit', (e) => {
  e.preventDefault();
  search(null);
});

// ---- Start: the upload worker has shown what the queue kept across reloads ------------------
await ready;
networkChanged();
document.body.dataset.ready = 'true';
