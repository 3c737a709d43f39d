// snap console: one page over the JSON API (docs/api.md). No framework, no
// network beyond this server.
"use strict";
let csrf = null;
let current = null; // {id, short, path}
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    // An async handler's failure (e.g. a 404) is shown, not lost in the console.
    if (k === "onclick") e.addEventListener("click", (ev) => Promise.resolve(v(ev)).catch(showError));
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

function human(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return i === 0 ? n + " B" : n.toFixed(2) + " " + u[i];
}

async function api(method, url, body, raw) {
  const opts = { method, headers: {} };
  if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf || "";
  if (raw !== undefined) { opts.body = raw; opts.headers["Content-Type"] = "application/x-tar"; }
  else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
  const r = await fetch(url, opts);
  const j = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(j.error || r.statusText);
  return j;
}

function showError(e) { $("error").textContent = e ? String(e.message || e) : ""; }

async function start() {
  const s = await api("GET", "/api/session");
  $("repo").textContent = s.repository || "";
  if (!s.logged_in) { $("login").hidden = false; $("app").hidden = true; return; }
  csrf = s.csrf;
  $("login").hidden = true; $("app").hidden = false;
  $("logout").hidden = !s.login_required;
  await Promise.all([loadSnapshots(), loadProfiles(), loadJobs(), loadStatus()]);
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await api("POST", "/api/login", { password: $("login-password").value });
    $("login-password").value = "";
    $("login-error").textContent = "";
    await start();
  } catch (e) { $("login-error").textContent = e.message; }
});
$("logout").addEventListener("click", async () => { await api("POST", "/api/logout", {}); location.reload(); });

let snaps = [];
async function loadSnapshots() {
  const q = new URLSearchParams({ host: $("f-host").value, tag: $("f-tag").value, path: $("f-path").value });
  snaps = await api("GET", "/api/snapshots?" + q);
  const tb = $("snapshots").querySelector("tbody");
  tb.replaceChildren();
  for (const s of snaps.slice().reverse()) {
    tb.append(el("tr", { "data-id": s.id },
      el("td", {}, el("input", { type: "checkbox", class: "pick", value: s.id })),
      el("td", {}, el("a", { class: "browse", onclick: () => browse(s, "") }, s.short_id)),
      el("td", {}, s.time.replace("T", " ").slice(0, 19)),
      el("td", {}, s.host),
      el("td", {}, ...s.tags.map((t) => el("span", { class: "tag" }, t))),
      el("td", {}, s.description || ""),
      el("td", { class: "num" }, human(s.size)),
      el("td", { class: "num" }, human(s.bytes_added)),
      el("td", {}, el("a", { href: "/api/snapshots/" + s.id + "/tar" }, "tar"), " ", el("a", { class: "zip", href: "/api/snapshots/" + s.id + "/zip" }, "zip"))));
  }
  drawCharts(snaps);
}
$("filters").addEventListener("submit", (ev) => { ev.preventDefault(); loadSnapshots().catch(showError); });

function chart(title, values, labels) {
  const W = 360, H = 140, P = 24;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H);
  const t = document.createElementNS(ns, "text");
  t.setAttribute("x", 6); t.setAttribute("y", 14); t.textContent = title + (values.length ? " (max " + human(Math.max(...values)) + ")" : "");
  svg.append(t);
  const max = Math.max(1, ...values);
  const bw = (W - 2 * P) / Math.max(1, values.length);
  values.forEach((v, i) => {
    const h = (H - 2 * P) * v / max;
    const r = document.createElementNS(ns, "rect");
    r.setAttribute("x", P + i * bw + 1); r.setAttribute("y", H - P - h);
    r.setAttribute("width", Math.max(1, bw - 2)); r.setAttribute("height", h);
    r.setAttribute("fill", "#4a8");
    const tip = document.createElementNS(ns, "title");
    tip.textContent = labels[i] + ": " + human(v);
    r.append(tip);
    svg.append(r);
  });
  return svg;
}

function drawCharts(list) {
  let total = 0;
  const stored = list.map((s) => (total += s.bytes_added));
  const labels = list.map((s) => s.time.slice(0, 16));
  $("charts").replaceChildren(
    chart("Repository size (stored)", stored, labels),
    chart("Bytes added per snapshot", list.map((s) => s.bytes_added), labels));
}

function age(secs) {
  if (secs == null) return "";
  const d = Math.floor(secs / 86400), h = Math.floor(secs % 86400 / 3600), m = Math.floor(secs % 3600 / 60);
  return d > 0 ? d + " d " + h + " h" : h > 0 ? h + " h " + m + " min" : m > 0 ? m + " min" : secs + " s";
}

async function loadStatus() {
  const st = await api("GET", "/api/status");
  const tb = $("status").querySelector("tbody");
  tb.replaceChildren();
  for (const p of st) {
    const sched = (p.schedule || []).map((x) => x.kind + ": " + x.schedule).join("; ") || "not scheduled";
    const rot = [p.check_every ? "check every " + p.check_every : "", p.restore_test_every ? "restore-test every " + p.restore_test_every : "", p.max_age ? "max age " + p.max_age : ""].filter((x) => x).join(", ");
    const ops = p.operations.length ? p.operations : [{ operation: "", repository: "" }];
    ops.forEach((o, i) => {
      const result = o.operation === "" ? "" : o.last_run_failed ? "failed: " + (o.error || "") : o.stale ? "STALE" : o.last_success ? "ok" : "never";
      tb.append(el("tr", { class: "status-row", "data-profile": p.profile, "data-operation": o.operation },
        el("td", {}, i === 0 ? p.profile : ""),
        el("td", {}, i === 0 ? sched + (rot ? " (" + rot + ")" : "") : ""),
        el("td", {}, o.operation), el("td", {}, o.repository),
        el("td", {}, o.last_success ? o.last_success.replace("T", " ").replace("Z", "") : "never"),
        el("td", {}, age(o.age_seconds)),
        el("td", { class: "result " + (o.last_run_failed || o.stale ? "state-failed" : o.last_success ? "state-done" : "") }, result)));
    });
  }
}

async function loadProfiles() {
  const ps = await api("GET", "/api/profiles");
  const box = $("profiles");
  box.replaceChildren();
  for (const p of ps) {
    const last = p.last_runs[0];
    const keep = ["keep_last", "keep_daily", "keep_weekly", "keep_monthly"].filter((k) => p[k] != null).map((k) => k.replace("keep_", "") + " " + p[k]).join(", ");
    box.append(el("div", { class: "profile" },
      el("b", {}, p.name), " → ", p.repository, " · ", (p.paths || []).join(" "),
      keep ? " · keeps " + keep : "",
      " · last run: ", last ? last.time.replace("T", " ").slice(0, 19) + " (" + human(last.bytes_added) + " added)" : "never",
      " ", el("button", { class: "run-profile", onclick: () => startJob("/api/jobs/backup", { profile: p.name }) }, "Back up " + p.name + " now")));
  }
}

$("backup-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const paths = $("backup-paths").value.split(/\s+/).filter((x) => x);
  startJob("/api/jobs/backup", { paths });
});

async function startJob(url, body, raw) {
  showError(null);
  try {
    const j = await api("POST", url, body, raw);
    watch(j.id);
    return true;
  } catch (e) { showError(e); return false; }
}

const jobViews = {};
function jobView(j) {
  let v = jobViews[j.id];
  if (!v) {
    v = jobViews[j.id] = {
      row: el("div", { class: "job", id: "job-" + j.id }),
      bar: el("div", {}),
      text: el("span", { class: "job-state" }),
      stop: el("button", { class: "job-stop", onclick: () => stopJob(j.id) }, "Stop"),
    };
    v.row.append(el("span", {}, "#" + j.id + " " + j.title + " "), el("span", { class: "bar" }, v.bar), " ", v.text, " ", v.stop);
    $("jobs").prepend(v.row);
  }
  // An ended job stays ended: the Stop request's answer (sent while it ran)
  // may arrive after the event that it ended.
  if (v.ended) return;
  v.ended = j.state !== "running";
  const pct = j.state === "done" ? 1 : (j.percent || 0);
  v.bar.style.width = Math.round(pct * 100) + "%";
  v.text.className = "job-state state-" + j.state;
  v.text.textContent = j.state + (j.state === "running" ? " " + Math.round(pct * 100) + "% (" + human(j.bytes_done) + ")" + (j.stop_requested ? ", stopping" : "") : "") + (j.error ? ": " + j.error : "");
  v.stop.hidden = j.state !== "running";
}

async function stopJob(id) {
  showError(null);
  try { jobView(await api("POST", "/api/jobs/" + id + "/stop", {})); } catch (e) { showError(e); }
}

function watch(id) {
  const es = new EventSource("/api/jobs/" + id + "/events");
  es.addEventListener("job", (ev) => {
    const j = JSON.parse(ev.data);
    jobView(j);
    if (j.state !== "running") {
      es.close();
      loadSnapshots().catch(showError);
      loadProfiles().catch(showError);
      loadStatus().catch(showError);
    }
  });
  es.onerror = () => es.close();
}

async function loadJobs() {
  const js = await api("GET", "/api/jobs");
  for (const j of js) { jobView(j); if (j.state === "running") watch(j.id); }
}

async function browse(s, path) {
  current = { id: s.id, short: s.short_id, path };
  const t = await api("GET", "/api/snapshots/" + s.id + "/tree?path=" + encodeURIComponent(path));
  $("browser").hidden = false;
  $("browse-title").textContent = s.short_id + " (" + s.time.slice(0, 19) + ")";
  const crumbs = $("crumbs");
  crumbs.replaceChildren(el("a", { onclick: () => browse(s, "") }, "/"));
  let acc = "";
  for (const part of path.split("/").filter((x) => x)) {
    acc = acc ? acc + "/" + part : part;
    const to = acc;
    crumbs.append(" ", el("a", { onclick: () => browse(s, to) }, part), " /");
  }
  const tb = $("tree").querySelector("tbody");
  tb.replaceChildren();
  for (const e of t.entries) {
    const q = "?path=" + encodeURIComponent(e.path);
    const name = e.type === "dir"
      ? el("a", { class: "dir", onclick: () => browse(s, e.path) }, e.name + "/")
      : el("span", {}, e.name);
    const link = e.type === "file"
      ? el("a", { class: "download", href: "/api/snapshots/" + s.id + "/file" + q, download: e.name }, "download")
      : e.type === "dir" ? el("span", {}, el("a", { href: "/api/snapshots/" + s.id + "/tar" + q }, "tar"), " ", el("a", { class: "zip", href: "/api/snapshots/" + s.id + "/zip" + q }, "zip")) : "";
    tb.append(el("tr", {}, el("td", {}, name), el("td", {}, e.type), el("td", { class: "num" }, e.type === "file" ? human(e.size) : ""), el("td", {}, e.mtime), el("td", {}, link)));
  }
  $("tar-link").href = "/api/snapshots/" + s.id + "/tar?path=" + encodeURIComponent(path);
  $("zip-link").href = "/api/snapshots/" + s.id + "/zip?path=" + encodeURIComponent(path);
  $("restore-db-button").hidden = !(s.streams && s.streams.length);
}

$("restore-button").addEventListener("click", () => {
  $("restore-snap").textContent = current.short;
  $("restore-what").textContent = current.path ? "(only /" + current.path + ")" : "(everything)";
  $("restore-confirm").checked = false;
  $("restore-dialog").showModal();
});
$("restore-dialog").addEventListener("close", () => {
  if ($("restore-dialog").returnValue !== "ok") return;
  if (!$("restore-confirm").checked) { showError("restore not started: tick the confirmation"); return; }
  startJob("/api/jobs/restore", { snapshot: current.id, target: $("restore-target").value, path: current.path || null });
});

$("restore-db-button").addEventListener("click", () => {
  const s = snaps.find((x) => x.id === current.id);
  $("restore-db-snap").textContent = current.short;
  $("restore-db-streams").textContent = s && s.streams.length ? s.streams.join(", ") : "none";
  for (const k of ["create", "clean", "force", "confirm"]) $("restore-db-" + k).checked = false;
  $("restore-db-dialog").showModal();
});
$("restore-db-kind").addEventListener("change", () => {
  const k = $("restore-db-kind").value;
  $("restore-db-target").placeholder = k === "pg" ? "host=db1 user=postgres dbname=app" : k === "mysql" ? "host=db1 user=root database=app" : "/var/lib/app/app.db";
});
$("restore-db-dialog").addEventListener("close", () => {
  if ($("restore-db-dialog").returnValue !== "ok") return;
  if (!$("restore-db-confirm").checked) { showError("database restore not started: tick the confirmation"); return; }
  const body = { snapshot: current.id, kind: $("restore-db-kind").value, target: $("restore-db-target").value, confirm: true,
    create: $("restore-db-create").checked, clean: $("restore-db-clean").checked, force: $("restore-db-force").checked };
  if ($("restore-db-stream").value) body.stream = $("restore-db-stream").value;
  startJob("/api/jobs/restore-db", body);
});

$("meta-button").addEventListener("click", async () => {
  const s = snaps.find((x) => x.id === current.id);
  const d = prompt("Description", (s && s.description) || "");
  if (d === null) return;
  const t = prompt("Tags (comma-separated)", s ? s.tags.join(",") : "");
  if (t === null) return;
  try {
    const r = await api("POST", "/api/snapshots/" + current.id + "/meta", { description: d, tags: t.split(",").map((x) => x.trim()) });
    await loadSnapshots();
    // The snapshot has a new id: the open tree (title, links) follows it.
    const renamed = snaps.find((x) => x.id === r.id);
    if (renamed) await browse(renamed, current.path);
    else $("browser").hidden = true; // filtered out of the table
  } catch (e) { showError(e); }
});

$("upload-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = $("upload-file").files[0];
  if (!f) { showError("choose a .tar file first"); return; }
  // Once sent, the file is cleared: a second click must not import it again.
  startJob("/api/jobs/import?name=" + encodeURIComponent(f.name), undefined, f)
    .then((ok) => { if (ok) $("upload-file").value = ""; });
});

$("diff-button").addEventListener("click", async () => {
  const picked = [...document.querySelectorAll(".pick:checked")].map((x) => x.value);
  if (picked.length !== 2) { showError("check exactly two snapshots"); return; }
  const order = snaps.map((s) => s.id);
  picked.sort((a, b) => order.indexOf(a) - order.indexOf(b));
  try {
    const d = await api("GET", "/api/diff?from=" + picked[0] + "&to=" + picked[1]);
    $("diff").textContent = d.changes.map((c) => c.change + "  " + c.path).join("\n") || "no changes";
  } catch (e) { showError(e); }
});

start().catch(showError);
