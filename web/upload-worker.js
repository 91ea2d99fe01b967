// The upload worker: tessera-wasm's start_upload_worker owns the IndexedDB queue and uploads
// with tessera-core's uploader (batches, retries, expiry, offline). Messages are documented in
// wasm-client/src/upload_worker.rs. What the page sends while the module loads is kept here
// and handed over first.
import init, { start_upload_worker } from './pkg/tessera_wasm.js';

const early = [];
self.onmessage = ({ data }) => early.push(data);
await init();
start_upload_worker(early);
