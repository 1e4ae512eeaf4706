// The REST API as the pages call it: the key from sessionStorage in X-API-Key, errors as ApiError.

const KEY = "fathom.apiKey";
const root = window.FATHOM_UI.root;

export const auth = {
  get key() { return sessionStorage.getItem(KEY); },
  signIn(key) { sessionStorage.setItem(KEY, key.trim()); },
  signOut() { sessionStorage.removeItem(KEY); },
};

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** The message of an error answer in either API's shape ({detail} in v1, {message}/{error} in v3). */
function errorMessage(body, status) {
  if (!body) return `HTTP ${status}`;
  const d = body.detail ?? body.message ?? body.error;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
  if (d && typeof d === "object") return d.message || JSON.stringify(d);
  return `HTTP ${status}`;
}

export async function api(path, { method = "GET", body, params, raw = false } = {}) {
  const headers = { "X-API-Key": auth.key || "" };
  const init = { method, headers };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(`${root}${path}${query(params)}`, init);
  if (raw && res.ok) return res;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    if (res.status === 401) auth.signOut();
    throw new ApiError(res.status, errorMessage(data, res.status), data);
  }
  return data;
}
