// The public HTTP API, as the worker page uses it: the key from sessionStorage as a bearer
// header, JSON in and out, errors as ApiError carrying the server's code, message and errors.

const KEY_ITEM = "marketplace.worker.key";

export const storedKey = {
  get: () => sessionStorage.getItem(KEY_ITEM),
  set: (key) => sessionStorage.setItem(KEY_ITEM, key),
  clear: () => sessionStorage.removeItem(KEY_ITEM),
};

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `The server answered ${status}.`);
    this.status = status;
    this.code = body && body.code !== undefined ? body.code : status;
    this.errors = (body && body.errors) || null;
  }
}

export class NetworkError extends Error {}

/** A random Idempotency-Key (crypto.getRandomValues works outside HTTPS too). */
export function newIdempotencyKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Call the API. `retries` repeats the call on a network error or a 5xx answer: give it only
 * to calls safe to repeat (reads, and posts with an `idempotencyKey`, sent unchanged each time).
 * Resolves to {status, body, date} (date: the server's clock, from its Date header).
 */
export async function call(method, path, { body, key = storedKey.get(), idempotencyKey, retries = 0, onRetry } = {}) {
  const headers = { Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  for (let attempt = 0; ; attempt += 1) {
    const delay = Math.min(16, 2 ** attempt);
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
        referrerPolicy: "no-referrer",
      });
    } catch (error) {
      if (attempt < retries) {
        if (onRetry) onRetry(attempt + 1, delay);
        await sleep(delay * 1000);
        continue;
      }
      throw new NetworkError("The server could not be reached. Check your connection and try again.");
    }
    if (response.status >= 500 && attempt < retries) {
      if (onRetry) onRetry(attempt + 1, delay);
      await sleep(delay * 1000);
      continue;
    }
    const date = Date.parse(response.headers.get("Date") || "") || Date.now();
    if (response.status === 204) return { status: 204, body: null, date };
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, data);
    return { status: response.status, body: data, date };
  }
}
