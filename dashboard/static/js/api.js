// Talking to the dashboard's server: JSON with the session's CSRF token, and the live event stream.

let csrf = "";

export function setCsrf(token) {
  csrf = token || "";
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    headers["X-CSRF-Token"] = csrf;
  }
  const r = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 401) {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    throw new ApiError(401, "login required");
  }
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(r.status, data.error || `${r.status} ${r.statusText}`);
  return data;
}

// One EventSource for the page; handlers by message type. EventSource reconnects by itself.
export function stream(handlers, onState) {
  const es = new EventSource("/api/stream");
  for (const type of ["broker", "device", "live", "onset", "event", "gap", "notice"]) {
    es.addEventListener(type, (ev) => {
      const msg = JSON.parse(ev.data);
      const h = handlers[type];
      if (h) h(msg.data, msg);
    });
  }
  es.onopen = () => onState && onState(true);
  es.onerror = () => onState && onState(false);
  return es;
}
