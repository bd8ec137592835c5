// The login form: POST /api/login, then back to the page that sent us here.
const form = document.getElementById("login");
form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = Object.fromEntries(new FormData(form));
  const r = await fetch("/api/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  if (r.ok) {
    const next = new URLSearchParams(location.search).get("next");
    location.href = next && next.startsWith("/") ? next : "/";
  } else {
    const data = await r.json().catch(() => ({}));
    document.getElementById("error").textContent = data.error || `login failed (${r.status})`;
  }
});
