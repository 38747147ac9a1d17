// The console's only way to the server: same-origin fetch with the session cookie (HttpOnly, never read
// here) and the CSRF token, which lives in this module's memory only (never in storage).
let csrf = null;
let onSignedOut = () => {};

export function setSession(token, signedOut) {
  csrf = token;
  if (signedOut) onSignedOut = signedOut;
}

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `The server answered HTTP ${status}.`);
    this.status = status;
    this.code = error.code || null;
  }
}

function headers(extra) {
  return { "x-openmaas-csrf": csrf || "", ...extra };
}

export async function request(method, path, body, extraHeaders = {}, signal = undefined) {
  const init = { method, credentials: "same-origin", headers: headers(extraHeaders), signal };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401 && !path.startsWith("/console/session")) onSignedOut("Your session has ended. Sign in again.");
  return response;
}

export async function api(method, path, body) {
  const response = await request(method, path, body);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const get = (path) => api("GET", path);

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

// Multipart upload with progress (fetch cannot report upload progress).
export function upload(path, files, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("x-openmaas-csrf", csrf || "");
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { data = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data); else reject(new ApiError(xhr.status, data));
    };
    xhr.onerror = () => reject(new ApiError(0, { error: { message: "The upload could not reach the server." } }));
    const form = new FormData();
    for (const f of files) form.append("file", f, f.name);
    xhr.send(form);
  });
}
