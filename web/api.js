// The edge API for the page's own reads: search (`GET /v1/images`) and each job's
// server-sent events. Uploads are the upload worker's (upload-worker.js).

export class HttpError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** The edge API at `api_base` with the API key. */
export class Api {
  constructor({ api_base, api_key }) {
    this.base = api_base;
    this.key = api_key;
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
}
