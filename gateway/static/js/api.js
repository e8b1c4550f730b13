// The dashboard's only door to the data: the public /api/v1 routes, JSON in, problem+json errors out.

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

/** GET a JSON resource; throws ApiError with the API's own `detail` when the answer is not 2xx. */
export async function getJson(path, params = {}, { signal } = {}) {
  let response;
  try {
    response = await fetch(apiUrl(path, params), { headers: { Accept: "application/json" }, signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "Network error", `the gateway did not answer: ${error.message}`);
  }
  const type = response.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await response.json().catch(() => null) : null;
  if (!response.ok) {
    throw new ApiError(response.status, body?.title || response.statusText, body?.detail, body?.invalid_params);
  }
  if (body === null) throw new ApiError(response.status, "Unexpected answer", `expected JSON, got ${type || "nothing"}`);
  return body;
}
