// The api client of the dashboard: JSON requests, problem+json errors, uploads with progress, bearer token.

const TOKEN_KEY = "soundcheck.token";

/** An error answer of the api, carrying the RFC 9457 problem's title and detail. */
export class ApiError extends Error {
  constructor(status, title, detail, body = {}) {
    super(detail || title || `HTTP ${status}`);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.body = body;
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function authHeaders() {
  const token = getToken();
  return token ? {Authorization: `Bearer ${token}`} : {};
}

// A 401 anywhere means the server wants a token: the header listens and shows a token field.
function signalUnauthorized(status) {
  if (status === 401) window.dispatchEvent(new CustomEvent("soundcheck:unauthorized"));
}

function problemFrom(status, statusText, text) {
  let body = {};
  try {
    body = JSON.parse(text);
  } catch {
    body = {title: statusText, detail: text ? text.slice(0, 500) : ""};
  }
  if (typeof body !== "object" || body === null) body = {detail: String(body)};
  // FastAPI's default errors use {"detail": ...} where detail may be a list; keep it readable.
  const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail ?? "");
  return new ApiError(status, body.title || statusText, detail || statusText || `HTTP ${status}`, body);
}

/** fetch JSON; throws ApiError with the problem detail on a non-2xx answer or a network failure. */
export async function request(method, path, body = undefined, {signal} = {}) {
  const init = {method, headers: {Accept: "application/json", ...authHeaders()}, signal};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "Network error", `the api at ${location.host} did not answer (${err.message})`);
  }
  const text = await response.text();
  if (!response.ok) {
    signalUnauthorized(response.status);
    throw problemFrom(response.status, response.statusText, text);
  }
  return text ? JSON.parse(text) : null;
}

export const api = {
  health: (opts) => request("GET", "/v1/health", undefined, opts),
  models: (opts) => request("GET", "/v1/models", undefined, opts),
  datasets: (opts) => request("GET", "/v1/datasets?limit=100", undefined, opts),
  jobs: (opts) => request("GET", "/v1/jobs?limit=50", undefined, opts),
  job: (id, opts) => request("GET", `/v1/jobs/${encodeURIComponent(id)}`, undefined, opts),
  submitJob: (spec) => request("POST", "/v1/jobs", spec),
  openapi: () => request("GET", "/openapi.json"),
  // listening (listen.js): a signed URL an <audio> element can play without the token
  metrics: (opts) => request("GET", "/v1/metrics", undefined, opts),
  audioUrl: (dataset, name) => request("GET", `/v1/datasets/${encodeURIComponent(dataset)}/files/`
    + `${name.split("/").map(encodeURIComponent).join("/")}/audio-url`),
  // comparisons
  comparison: (id, opts) => request("GET", `/v1/comparisons/${encodeURIComponent(id)}`, undefined, opts),
  submitComparison: (spec) => request("POST", "/v1/comparisons", spec),
};

/**
 * POST /v1/datasets as multipart (field `files`, optional `on_invalid`). XMLHttpRequest rather than fetch
 * because only XHR reports upload progress, which matters for multi-GB sets.
 * `parts` is [{file, name}], name being the relative path to send (subfolder = label).
 */
export function uploadDataset(parts, onInvalid, onProgress) {
  const form = new FormData();
  for (const {file, name} of parts) form.append("files", file, name);
  if (onInvalid) form.append("on_invalid", onInvalid);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/datasets");
    xhr.setRequestHeader("Accept", "application/json");
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.addEventListener("progress", (ev) => {
      if (ev.lengthComputable && onProgress) onProgress(ev.loaded, ev.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(JSON.parse(xhr.responseText));
      } else {
        signalUnauthorized(xhr.status);
        reject(problemFrom(xhr.status, xhr.statusText, xhr.responseText));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "Network error", "the upload did not reach the api")));
    xhr.send(form);
  });
}
