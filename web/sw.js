// The service worker: keeps the app shell (HTML, CSS, JS, the wasm and its glue, config) so
// the page loads and preprocesses offline. Network first, so a running stack always serves
// the latest page; the cache answers when the network cannot. The API is never cached.
const CACHE = 'tessera-shell-v2';
const SHELL = ['./', 'index.html', 'style.css', 'app.js', 'api.js', 'worker.js', 'upload-worker.js',
  'config.json',
  'pkg/tessera_wasm.js', 'pkg/tessera_wasm_bg.wasm'];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name);
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin
      || url.pathname.startsWith('/v1/') || url.pathname === '/health') return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const response = await fetch(event.request);
      if (response.ok) await cache.put(event.request, response.clone());
      return response;
    } catch (offline) {
      const cached = await cache.match(event.request, { ignoreSearch: true });
      if (cached) return cached;
      throw offline;
    }
  })());
});
