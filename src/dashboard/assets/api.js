// Talks to the hub. A pasted token rides in the Authorization header and is kept for this
// tab only (sessionStorage); without one, the browser's session cookie signs each request.

const TOKEN_KEY = 'm3shd.token';

export const credentials = {
  token: sessionStorage.getItem(TOKEN_KEY),
  use(token) {
    this.token = token;
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onSignedOut = () => {};
/** Called when the hub answers 401: the session ended or the token was revoked. */
export function whenSignedOut(callback) { onSignedOut = callback; }

export function url(path, query = {}) {
  const target = new URL(path, location.origin);
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') target.searchParams.set(key, value);
  }
  return target;
}

/** One JSON request; resolves to the parsed body, rejects with an ApiError. */
export async function api(path, { method = 'GET', body, query } = {}) {
  const headers = { Accept: 'application/json' };
  if (credentials.token) headers.Authorization = `Bearer ${credentials.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(url(path, query), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    if (response.status === 401 && path !== '/api/login') onSignedOut();
    throw new ApiError(response.status, data?.error || `${response.status} ${response.statusText}`, data?.code);
  }
  return data;
}

/** The event stream's address: EventSource cannot set headers, so a token goes in the query. */
export function streamUrl() {
  return url('/api/stream', { token: credentials.token }).toString();
}

/**
 * Downloads `path` as a file. With the session cookie the browser fetches it itself (and
 * streams it to disk); a pasted token must ride in a header, so the file is fetched here.
 */
export async function download(path, query, filename) {
  if (!credentials.token) {
    const link = document.createElement('a');
    link.href = url(path, query);
    link.download = filename;
    link.click();
    return;
  }
  const headers = credentials.token ? { Authorization: `Bearer ${credentials.token}` } : {};
  const response = await fetch(url(path, query), { headers, credentials: 'same-origin' });
  if (!response.ok) throw new ApiError(response.status, `${response.status} ${response.statusText}`);
  const link = document.createElement('a');
  link.href = URL.createObjectURL(await response.blob());
  link.download = filename;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}
