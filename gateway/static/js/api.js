// The dashboard's only door to the data: the public /api/v1 routes, JSON in, problem+json errors out.
// Every request carries the API key the user entered (kept in this browser's localStorage) as
// `Authorization: Bearer <key>`; a link to a CSV or a figure is fetched the same way, never with the
// key in its URL.

const KEY_STORAGE = "meterdata.apiKey";

/** The API key of this browser ("" when none is stored). */
export function apiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

/** Keep `key` for the next visits (an empty key forgets it). */
export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

/** An error answered by the API: its HTTP status and the problem+json `title` and `detail`. */
export class ApiError extends Error {
  constructor(status, title, detail, invalidParams) {
    super(detail || title || `HTTP ${status}`);
    this.status = status;
    this.title = title || `HTTP ${status}`;
    this.detail = detail || "";
    this.invalidParams = invalidParams || [];
  }
}

/** A same-origin URL for `path` with the non-empty `params` as query string. */
export function apiUrl(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(name, value);
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

/** fetch() with the API key; a network failure becomes an ApiError, a non-2xx answer one with the API's `detail`. */
export async function apiFetch(url, { accept = "application/json", signal } = {}) {
  const headers = { Accept: accept };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(url, { headers, signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "Network error", `the gateway did not answer: ${error.message}`);
  }
  if (!response.ok) {
    const type = response.headers.get("Content-Type") || "";
    const body = type.includes("json") ? await response.json().catch(() => null) : null;
    throw new ApiError(response.status, body?.title || response.statusText, body?.detail, body?.invalid_params);
  }
  return response;
}

/** GET a JSON resource; throws ApiError with the API's own `detail` when the answer is not 2xx. */
export async function getJson(path, params = {}, { signal } = {}) {
  const response = await apiFetch(apiUrl(path, params), { signal });
  const type = response.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await response.json().catch(() => null) : null;
  if (body === null) throw new ApiError(response.status, "Unexpected answer", `expected JSON, got ${type || "nothing"}`);
  return body;
}

/** Download `url` (a CSV) with the key, under the file name the API gives in Content-Disposition. */
export async function download(url) {
  const response = await apiFetch(url, { accept: "text/csv" });
  const disposition = response.headers.get("Content-Disposition") || "";
  const name = /filename="?([^";]+)"?/.exec(disposition)?.[1] || "download.csv";
  const href = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement("a"), { href, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10_000);
}
