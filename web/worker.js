// The module Web Worker that runs tessera-wasm, so the page never waits on pixels.
// Message in:  { id, file: File, options: { project, fileName, fallbackDate } }
// Message out: { id, ok: true, manifest, bodies: { processed, 'augmented-90', …: Blob } }
//              (JPEG Blobs, made here: making them costs the page's thread) or
//              { id, ok: false, error: { code, message } }.
import init, { check_size, preprocess } from './pkg/tessera_wasm.js';

const ready = init();

self.onmessage = async ({ data: { id, file, options } }) => {
  try {
    await ready;
    check_size(file.size); // refuse before reading a byte
    const bytes = new Uint8Array(await file.arrayBuffer());
    const { manifest, bodies } = preprocess(bytes, options);
    const blobs = Object.fromEntries(Object.entries(bodies).map(([kind, b]) => [kind, new Blob([b], { type: 'image/jpeg' })]));
    self.postMessage({ id, ok: true, manifest, bodies: blobs });
  } catch (e) {
    const error = { code: e.code ?? 'internal', message: e.message ?? String(e) };
    e.free?.();
    self.postMessage({ id, ok: false, error });
  }
};
