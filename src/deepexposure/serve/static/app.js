// deepexposure serve: the page. Plain JavaScript, no build step, nothing loaded from elsewhere.
// All image work happens in the server (the library's own read/plan/render/write functions);
// this file only sends recipes and shows the JPEG previews that come back.
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255]]; // as explain.py
const METHOD_LABELS = {
  deepexposure: "DeepExposure (learned, per region)",
  exposure: "White-box filters (learned)",
  fusion: "Exposure fusion (fixed bracket)",
  identity: "Identity (no change)",
  auto: "Auto exposure",
  clahe: "CLAHE (local contrast)",
  exposures: "Your exposure per region",
};

const state = {
  session: null, info: null, photos: [], current: null, recipe: null, loadedRecipe: null,
  inflight: false, pending: false, highlight: null, jobs: {}, polling: false, renders: 0,
};

// ------------------------------------------------------------------ messages and requests

function showMessage(text, kind) {
  const m = $("message");
  m.textContent = String(text).split("\n")[0];
  m.className = kind || "";
  m.hidden = !text;
}

function busy(text) { $("busy").textContent = text || ""; }

async function api(path, opts = {}) {
  const res = await fetch(`/api/s/${state.session}${path}`, opts);
  if (res.status === 404 && (await res.clone().text()).includes("unknown session")) {
    throw new Error("the server restarted and forgot this page's photos; reload the page");
  }
  return res;
}

async function jsonOrThrow(res) {
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) throw new Error((body && body.error) || `request failed (HTTP ${res.status})`);
  return body;
}

function postJSON(path, body) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

// ------------------------------------------------------------------ start

async function start() {
  try {
    state.info = await jsonOrThrow(await fetch("/api/info"));
    state.session = (await jsonOrThrow(await fetch("/api/session", { method: "POST" }))).session;
  } catch (e) {
    showMessage(`cannot reach the server: ${e.message}`);
    return;
  }
  const sel = $("method");
  for (const m of state.info.methods) {
    const o = document.createElement("option");
    o.value = m; o.textContent = METHOD_LABELS[m] || m;
    sel.appendChild(o);
  }
  sel.addEventListener("change", methodFields);
  methodFields();
  const accept = state.info.extensions.join(",");
  $("files").accept = accept;
  $("files").addEventListener("change", (e) => { uploadFiles([...e.target.files]); e.target.value = ""; });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    uploadFiles([...e.dataTransfer.files]);
  });
  $("retouch").addEventListener("click", () => retouchCurrent());
  $("retouch-all").addEventListener("click", () => startJob("retouch", state.photos.map((p) => p.id)));
  $("split").addEventListener("input", applySplit);
  $("show-regions").addEventListener("change", drawOverlay);
  $("after").addEventListener("load", () => { drawOverlay(); });
  $("export").addEventListener("click", () => startJob("export", [state.current]));
  $("export-all").addEventListener("click", () => startJob("export", state.photos.map((p) => p.id)));
  $("save-recipe").addEventListener("click", saveRecipe);
  $("recipe-file").addEventListener("change", (e) => { loadRecipe(e.target.files[0]); e.target.value = ""; });
  $("apply-recipe").addEventListener("click", () => startJob("apply", [state.current]));
  $("apply-recipe-all").addEventListener("click", () => startJob("apply", state.photos.map((p) => p.id)));
  $("explain-sheet").addEventListener("click", showSheet);
  window.addEventListener("resize", drawOverlay);
  applySplit();
  document.body.dataset.ready = "1";
}

function methodFields() {
  const m = $("method").value;
  $("ev-field").hidden = !(m === "fusion" || m === "exposures");
  $("ev").placeholder = m === "exposures" ? "1,0.5,0 (one per region)" : "-1,0,1,2";
  $("model-field").hidden = !(m === "deepexposure" || m === "exposure");
  $("segments-field").hidden = m !== "deepexposure";
}

function methodSpec() {
  const spec = { method: $("method").value };
  if (!$("model-field").hidden && $("model").value.trim()) spec.model = $("model").value.trim();
  if (!$("ev-field").hidden && $("ev").value.trim()) spec.ev = $("ev").value.trim();
  if (!$("segments-field").hidden && $("segments").value) spec.segments = parseInt($("segments").value, 10);
  return spec;
}

// ------------------------------------------------------------------ photos

async function uploadFiles(files) {
  if (!files.length) return;
  showMessage("");
  let n = 0;
  const errors = [];
  for (const f of files) {
    n += 1;
    busy(`uploading ${n}/${files.length}: ${f.name}`);
    if (f.size > state.info.max_upload_bytes) {
      errors.push(`${f.name}: ${(f.size / 2 ** 20).toFixed(0)} MB is over the upload limit of ${(state.info.max_upload_bytes / 2 ** 20).toFixed(0)} MB`);
      continue;
    }
    const fd = new FormData();
    fd.append("files", f, f.name);
    try {
      const res = await api("/photos", { method: "POST", body: fd });
      let body = null;
      try { body = await res.json(); } catch (e) { body = null; }
      if (!body) { errors.push(`${f.name}: upload failed (HTTP ${res.status})`); continue; }
      for (const e of body.errors || []) errors.push(e.error);
      if (!res.ok && !(body.errors || []).length) errors.push(body.error || `${f.name}: upload failed`);
      for (const p of body.photos || []) {
        state.photos.push(p);
        if (!state.current) await selectPhoto(p.id);
      }
    } catch (e) {
      errors.push(`${f.name}: ${e.message}`);
    }
    renderPhotoList();
  }
  busy("");
  if (errors.length) showMessage(errors.length > 1 ? `${errors[0]} (and ${errors.length - 1} more)` : errors[0]);
}

function photoById(id) { return state.photos.find((p) => p.id === id); }

function renderPhotoList() {
  const ul = $("photos");
  ul.replaceChildren();
  for (const p of state.photos) {
    const li = document.createElement("li");
    li.dataset.id = p.id;
    if (p.id === state.current) li.classList.add("current");
    const img = document.createElement("img");
    img.src = `/api/s/${state.session}/photos/${p.id}/original.jpg?thumb=1`;
    img.alt = "";
    const name = document.createElement("span");
    name.className = "name"; name.textContent = p.name; name.title = `${p.name} (${p.width}x${p.height}, ${p.format})`;
    const st = document.createElement("span");
    st.className = "state"; st.textContent = p.retouched ? "✓" : "";
    const rm = document.createElement("button");
    rm.className = "remove"; rm.textContent = "×"; rm.title = "remove"; rm.setAttribute("aria-label", `remove ${p.name}`);
    rm.addEventListener("click", (e) => { e.stopPropagation(); removePhoto(p.id); });
    li.append(img, name, st, rm);
    li.addEventListener("click", () => selectPhoto(p.id));
    ul.appendChild(li);
  }
  const any = state.photos.length > 0;
  $("retouch").disabled = !state.current;
  $("retouch-all").disabled = !any;
  $("export").disabled = !state.current;
  $("export-all").disabled = !any;
  $("apply-recipe").disabled = !(state.current && state.loadedRecipe);
  $("apply-recipe-all").disabled = !(any && state.loadedRecipe);
  $("stage").hidden = !state.current;
  $("empty").hidden = !!state.current;
}

async function removePhoto(id) {
  try { await jsonOrThrow(await api(`/photos/${id}`, { method: "DELETE" })); } catch (e) { showMessage(e.message); return; }
  state.photos = state.photos.filter((p) => p.id !== id);
  if (state.current === id) {
    state.current = null; state.recipe = null;
    if (state.photos.length) await selectPhoto(state.photos[0].id);
    else { renderEditor(); renderExplain(); }
  }
  renderPhotoList();
}

async function selectPhoto(id) {
  state.current = id;
  let p;
  try { p = await jsonOrThrow(await api(`/photos/${id}`)); } catch (e) { showMessage(e.message); return; }
  Object.assign(photoById(id) || {}, p);
  state.recipe = p.recipe || null;
  const base = `/api/s/${state.session}/photos/${id}`;
  $("before").src = `${base}/original.jpg`;
  $("after").src = p.retouched ? `${base}/result.jpg?v=${p.version}` : `${base}/original.jpg`;
  $("sheet").hidden = true;
  renderPhotoList();
  renderEditor();
  renderExplain();
}

// ------------------------------------------------------------------ retouch and render

async function retouchCurrent() {
  const id = state.current;
  if (!id) return;
  showMessage("");
  busy("retouching…");
  $("retouch").disabled = true;
  try {
    const p = await jsonOrThrow(await postJSON(`/photos/${id}/retouch`, methodSpec()));
    Object.assign(photoById(id), p);
    if (state.current === id) {
      state.recipe = p.recipe;
      setAfter(`/api/s/${state.session}/photos/${id}/result.jpg?v=${p.version}`);
      renderEditor(); renderExplain();
    }
    renderPhotoList();
  } catch (e) {
    showMessage(e.message);
  } finally {
    busy(""); $("retouch").disabled = !state.current;
  }
}

function setAfter(url) {
  const img = $("after");
  const old = img.dataset.blob;
  img.src = url;
  if (old) URL.revokeObjectURL(old);
  img.dataset.blob = url.startsWith("blob:") ? url : "";
  state.renders += 1;
  img.dataset.renders = String(state.renders);
}

// A slider being dragged asks for a draft render (half-size preview); letting it go asks for the
// full preview. While a render is on its way, later requests are folded into one (a final one wins).
function scheduleRender(draft = false) {
  if (state.inflight) {
    state.pending = state.pending === "final" || !draft ? "final" : "draft";
    return;
  }
  doRender(draft);
}

async function doRender(draft = false) {
  const id = state.current;
  if (!id || !state.recipe) return;
  state.inflight = true; state.pending = false;
  const t0 = performance.now();
  try {
    const res = await postJSON(`/photos/${id}/render`, { recipe: state.recipe, draft });
    if (!res.ok) throw new Error((await res.json().catch(() => ({}))).error || `render failed (HTTP ${res.status})`);
    const blob = await res.blob();
    if (state.current === id) {
      setAfter(URL.createObjectURL(blob));
      $("timing").textContent = `${draft ? "draft" : "preview"}: ${res.headers.get("X-Render-Ms")} ms render, ${(performance.now() - t0).toFixed(0)} ms round trip`;
      showMessage("");
    }
    const p = photoById(id);
    if (p) { p.retouched = true; p.recipe = state.recipe; }
  } catch (e) {
    showMessage(e.message);
  } finally {
    state.inflight = false;
    if (state.pending) doRender(state.pending === "draft");
  }
}

function applySplit() {
  const v = $("split").value;
  $("after").style.clipPath = `inset(0 0 0 ${v}%)`;
  $("divider").style.left = `${v}%`;
}

// ------------------------------------------------------------------ regions overlay

function segmentLabels() {
  const r = state.recipe;
  if (!r || !r.segment_map || !r.segment_map.length) return null;
  return r.segment_map.map((row) => [...row].map((c) => parseInt(c, 36)));
}

function drawOverlay() {
  const cv = $("overlay");
  const img = $("after");
  const labels = segmentLabels();
  const show = $("show-regions").checked || state.highlight !== null;
  const ctx = cv.getContext("2d");
  cv.width = img.clientWidth || 1; cv.height = img.clientHeight || 1;
  ctx.clearRect(0, 0, cv.width, cv.height);
  const foreign = state.recipe && photoById(state.current) && photoById(state.current).recipe_from;
  if (!labels || !show || foreign) return;
  const h = labels.length, w = labels[0].length;
  const small = document.createElement("canvas");
  small.width = w; small.height = h;
  const sctx = small.getContext("2d");
  const data = sctx.createImageData(w, h);
  const sums = {};
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const t = labels[y][x], c = PALETTE[t % PALETTE.length], k = 4 * (y * w + x);
    const on = state.highlight === null || state.highlight === t;
    data.data[k] = c[0]; data.data[k + 1] = c[1]; data.data[k + 2] = c[2]; data.data[k + 3] = on ? 110 : 0;
    const s = sums[t] || (sums[t] = [0, 0, 0]); s[0] += x; s[1] += y; s[2] += 1;
  }
  sctx.putImageData(data, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(small, 0, 0, cv.width, cv.height);
  ctx.font = "bold 15px system-ui, sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
  for (const [t, s] of Object.entries(sums)) {
    if (state.highlight !== null && state.highlight !== Number(t)) continue;
    const x = (s[0] / s[2] + 0.5) * cv.width / w, y = (s[1] / s[2] + 0.5) * cv.height / h;
    ctx.fillStyle = "rgba(0,0,0,.65)"; ctx.fillRect(x - 11, y - 10, 22, 20);
    ctx.fillStyle = "#fff"; ctx.fillText(t, x, y);
  }
}

// ------------------------------------------------------------------ the editor

function fmt(v) { return Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2); }

function slider({ label, sub, min, max, step, value, onInput, region, name }) {
  const wrap = document.createElement("div");
  wrap.className = "slider";
  const lbl = document.createElement("span");
  lbl.className = "lbl";
  if (region !== undefined) {
    const sw = document.createElement("span");
    sw.className = "swatch";
    const c = PALETTE[region % PALETTE.length];
    sw.style.background = `rgb(${c[0]},${c[1]},${c[2]})`;
    lbl.appendChild(sw);
  }
  lbl.appendChild(document.createTextNode(label));
  if (sub) { const s = document.createElement("small"); s.textContent = ` ${sub}`; lbl.appendChild(s); }
  const input = document.createElement("input");
  input.type = "range"; input.min = min; input.max = max; input.step = step; input.value = value;
  input.setAttribute("aria-label", label);
  if (name) input.name = name;
  const out = document.createElement("output");
  out.textContent = fmt(Number(value));
  input.addEventListener("input", () => { out.textContent = fmt(Number(input.value)); onInput(Number(input.value), true); });
  input.addEventListener("change", () => onInput(Number(input.value), false));
  if (region !== undefined) {
    const on = () => { state.highlight = region; drawOverlay(); };
    const off = () => { state.highlight = null; drawOverlay(); };
    for (const el of [input, lbl]) { el.addEventListener("mouseenter", on); el.addEventListener("mouseleave", off); }
    input.addEventListener("focus", on); input.addEventListener("blur", off);
  }
  wrap.append(lbl, input, out);
  return wrap;
}

function opBox(title, sub, onRemove) {
  const box = document.createElement("div");
  box.className = "op";
  const head = document.createElement("header");
  const h = document.createElement("h3");
  h.textContent = title;
  head.appendChild(h);
  if (onRemove) {
    const b = document.createElement("button");
    b.textContent = "remove"; b.title = "remove this step";
    b.addEventListener("click", onRemove);
    head.appendChild(b);
  }
  box.appendChild(head);
  if (sub) { const p = document.createElement("p"); p.className = "sub"; p.textContent = sub; box.appendChild(p); }
  return box;
}

function renderEditor() {
  const ed = $("editor");
  ed.replaceChildren();
  const r = state.recipe;
  $("save-recipe").disabled = !r;
  $("explain-sheet").disabled = !r;
  if (!r) {
    const p = document.createElement("p"); p.className = "hint";
    p.textContent = state.current ? "Choose a method and press Retouch." : "Retouch a photo to see what was done, step by step.";
    ed.appendChild(p);
    return;
  }
  const p = photoById(state.current);
  if (p && p.recipe_from) {
    const n = document.createElement("p"); n.className = "hint";
    n.textContent = `Recipe loaded from ${p.recipe_from}: its regions belong to that photo, so they are not drawn here.`;
    ed.appendChild(n);
  }
  const filters = state.info.filters;
  r.ops.forEach((op, i) => {
    if (op.op === "exposure_fusion") {
      const segs = r.segments && r.segments.length === op.evs.length;
      const box = opBox(segs ? "Exposure per region" : "Exposure bracket",
        segs ? "Each value is the exposure chosen for region t; the re-exposed versions of the whole photo are fused (Mertens), so a region's slider mostly changes that region."
             : "Exposures of the whole photo, fused (Mertens).");
      op.evs.forEach((ev, t) => {
        const s = segs ? r.segments[t] : null;
        box.appendChild(slider({
          label: segs ? `Region ${t}` : `Exposure ${t + 1}`,
          sub: segs ? `exposure chosen for region ${t}, fused · ${(100 * s.area).toFixed(0)}% of the photo, luma ${s.mean_luma.toFixed(2)}` : "EV, fused",
          min: -5, max: 5, step: 0.05, value: ev, region: segs ? t : undefined, name: `ev-${i}-${t}`,
          onInput: (v, draft) => { op.evs[t] = v; scheduleRender(draft); },
        }));
      });
      const inc = document.createElement("label");
      const cb = document.createElement("input");
      cb.type = "checkbox"; cb.checked = op.include_original !== false;
      cb.addEventListener("change", () => { op.include_original = cb.checked; scheduleRender(); });
      inc.append(cb, document.createTextNode(" fuse the original too"));
      box.appendChild(inc);
      ed.appendChild(box);
    } else if (op.op === "filter" && filters[op.name]) {
      const spec = filters[op.name];
      const box = opBox(`Step ${i + 1}: ${op.name.replace(/_/g, " ")}`, null, () => { r.ops.splice(i, 1); renderEditor(); scheduleRender(); });
      const many = spec.n_params > 3;
      const holder = many ? document.createElement("details") : box;
      if (many) {
        const sm = document.createElement("summary");
        sm.textContent = `${spec.n_params} parameters`;
        holder.appendChild(sm); box.appendChild(holder);
      }
      op.params.forEach((v, k) => {
        const lo = spec.low[k], hi = spec.high[k];
        holder.appendChild(slider({
          label: spec.n_params === 1 ? op.name.replace(/_/g, " ") : `${op.name.replace(/_/g, " ")} ${k + 1}`,
          min: lo, max: hi, step: (hi - lo) / 200, value: v, name: `p-${i}-${k}`,
          onInput: (x, draft) => { op.params[k] = x; scheduleRender(draft); },
        }));
      });
      ed.appendChild(box);
    } else if (op.op === "clahe") {
      const box = opBox(`Step ${i + 1}: CLAHE`, "contrast-limited adaptive histogram equalisation on luminance");
      box.appendChild(slider({ label: "clip limit", min: 0.001, max: 0.1, step: 0.001, value: op.clip_limit || 0.01,
        onInput: (x, draft) => { op.clip_limit = x; scheduleRender(draft); } }));
      ed.appendChild(box);
    } else {
      // an operation this page has no sliders for yet: edit its JSON
      const box = opBox(`Step ${i + 1}: ${op.op}`, "edit the values, then leave the box to re-render");
      const ta = document.createElement("textarea");
      ta.value = JSON.stringify(op, null, 1);
      ta.addEventListener("change", () => {
        try { r.ops[i] = JSON.parse(ta.value); scheduleRender(); } catch (e) { showMessage(`step ${i + 1}: not valid JSON (${e.message})`); }
      });
      box.appendChild(ta);
      ed.appendChild(box);
    }
  });
  if (r.ops.some((o) => o.op === "filter")) {
    const add = document.createElement("div");
    add.className = "row";
    const sel = document.createElement("select");
    for (const n of Object.keys(filters)) { const o = document.createElement("option"); o.value = n; o.textContent = n.replace(/_/g, " "); sel.appendChild(o); }
    const b = document.createElement("button");
    b.textContent = "add step";
    b.addEventListener("click", () => {
      r.ops.push({ op: "filter", name: sel.value, params: [...filters[sel.value].neutral] });
      renderEditor(); scheduleRender();
    });
    add.append(sel, b);
    ed.appendChild(add);
  }
  drawOverlay();
}

// ------------------------------------------------------------------ explain

function renderExplain() {
  const ex = $("explain");
  ex.replaceChildren();
  const r = state.recipe;
  if (!r) { const p = document.createElement("p"); p.className = "hint"; p.textContent = "Nothing yet."; ex.appendChild(p); return; }
  const m = document.createElement("p");
  const meth = r.method || {};
  m.textContent = `method: ${meth.name || "?"}${meth.model ? ` · model ${meth.model}` : ""} · ${r.ops.length} step(s)`;
  ex.appendChild(m);
  if (r.segments && r.segments.length) {
    const evs = (r.ops.find((o) => o.op === "exposure_fusion") || {}).evs || [];
    const tb = document.createElement("table");
    tb.innerHTML = "<tr><th>region</th><th>area</th><th>luma</th><th>EV</th></tr>";
    r.segments.forEach((s, t) => {
      const tr = document.createElement("tr");
      for (const v of [String(t), `${(100 * s.area).toFixed(0)}%`, s.mean_luma.toFixed(2), evs[t] !== undefined ? (evs[t] >= 0 ? "+" : "") + Number(evs[t]).toFixed(2) : ""]) {
        const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
      }
      tr.addEventListener("mouseenter", () => { state.highlight = t; drawOverlay(); });
      tr.addEventListener("mouseleave", () => { state.highlight = null; drawOverlay(); });
      tb.appendChild(tr);
    });
    ex.appendChild(tb);
  }
  if (r.notes && r.notes.length) {
    const ul = document.createElement("ul");
    for (const n of r.notes) { const li = document.createElement("li"); li.textContent = n; ul.appendChild(li); }
    ex.appendChild(ul);
  }
}

async function showSheet() {
  const id = state.current;
  if (!id) return;
  // render first so the sheet shows the current values
  const p = photoById(id);
  const img = $("sheet");
  img.hidden = false;
  img.src = `/api/s/${state.session}/photos/${id}/explain.jpg?v=${Date.now()}`;
  img.onerror = () => { img.hidden = true; showMessage(`${p ? p.name : "photo"}: the explain sheet could not be made`); };
}

// ------------------------------------------------------------------ recipes

function saveRecipe() {
  if (!state.recipe) return;
  const p = photoById(state.current);
  const blob = new Blob([JSON.stringify(state.recipe, null, 2) + "\n"], { type: "application/json" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `${(p && p.name) || "photo"}.recipe.json`;
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 5000);
}

async function loadRecipe(file) {
  if (!file) return;
  let recipe;
  try {
    if (file.size > 4 * 2 ** 20) throw new Error("larger than 4 MB");
    recipe = JSON.parse(await file.text());
  } catch (e) {
    showMessage(`${file.name}: not a recipe (${e.message})`);
    return;
  }
  try {
    const body = await jsonOrThrow(await postJSON("/recipe/check", { recipe, source: file.name }));
    state.loadedRecipe = body.recipe;
    const r = body.recipe;
    $("loaded-recipe").textContent = `${file.name}: ${(r.method || {}).name || "?"}, ${r.ops.length} step(s)`;
    showMessage(`loaded ${file.name}; apply it to this photo or to all`, "info");
  } catch (e) {
    state.loadedRecipe = null;
    $("loaded-recipe").textContent = "";
    showMessage(e.message);
  }
  renderPhotoList();
}

// ------------------------------------------------------------------ the queue

async function startJob(kind, ids) {
  ids = ids.filter(Boolean);
  if (!ids.length) return;
  const body = { kind, photos: ids };
  if (kind === "retouch") Object.assign(body, methodSpec());
  if (kind === "apply") body.recipe = state.loadedRecipe;
  if (kind === "export") {
    Object.assign(body, methodSpec());
    body.format = $("format").value || null;
    body.quality = parseInt($("quality").value, 10) || 95;
    if (ids.length === 1 && ids[0] === state.current && state.recipe) {
      // export what is on screen: make sure the server has the latest edit
      if (state.inflight || state.pending) await new Promise((res) => { const w = () => (state.inflight || state.pending) ? setTimeout(w, 50) : res(); w(); });
    }
  }
  try {
    const job = await jsonOrThrow(await postJSON("/jobs", body));
    state.jobs[job.id] = job;
    showMessage("");
    renderQueue();
    poll();
  } catch (e) {
    showMessage(e.message);
  }
}

async function poll() {
  if (state.polling) return;
  state.polling = true;
  try {
    for (;;) {
      const open = Object.values(state.jobs).filter((j) => j.state === "queued" || j.state === "running");
      if (!open.length) break;
      await new Promise((r) => setTimeout(r, 400));
      for (const j of open) {
        try {
          const nj = await jsonOrThrow(await api(`/jobs/${j.id}`));
          state.jobs[j.id] = nj;
          if (nj.state === "done" || nj.state === "cancelled") await jobFinished(nj);
        } catch (e) { showMessage(e.message); j.state = "done"; }
      }
      renderQueue();
    }
  } finally {
    state.polling = false;
  }
}

async function jobFinished(job) {
  const errs = job.items.filter((it) => it.status === "error");
  if (errs.length) showMessage(errs.length > 1 ? `${errs[0].error} (and ${errs.length - 1} more)` : errs[0].error);
  for (const it of job.items) {
    if (it.status !== "done") continue;
    const p = photoById(it.photo);
    if (p) p.retouched = true;
    if (it.url) addDownloads(it);
  }
  if (job.kind !== "export" || job.items.some((it) => it.photo === state.current)) {
    if (state.current) await selectPhoto(state.current);
  }
  renderPhotoList();
}

function addDownloads(it) {
  const li = document.createElement("li");
  const a = document.createElement("a");
  a.href = it.url; a.textContent = it.file; a.download = it.file; a.className = "export-file";
  const b = document.createElement("a");
  b.href = it.recipe_url; b.textContent = "recipe"; b.download = it.recipe; b.className = "export-recipe";
  li.append(a, document.createTextNode(` (${(it.bytes / 2 ** 20).toFixed(1)} MB) · `), b);
  $("downloads").prepend(li);
}

function renderQueue() {
  const ul = $("queue");
  ul.replaceChildren();
  const jobs = Object.values(state.jobs).reverse().slice(0, 8);
  for (const j of jobs) {
    const li = document.createElement("li");
    li.className = `job ${j.state}`;
    const title = document.createElement("div");
    title.textContent = `${j.kind} · ${j.done}/${j.total} · ${j.state}`;
    const pr = document.createElement("progress");
    pr.max = j.total; pr.value = j.done;
    li.append(title, pr);
    if (j.state === "queued" || j.state === "running") {
      const c = document.createElement("button");
      c.textContent = "cancel";
      c.addEventListener("click", async () => { try { await jsonOrThrow(await api(`/jobs/${j.id}/cancel`, { method: "POST" })); } catch (e) { showMessage(e.message); } });
      li.appendChild(c);
    }
    for (const it of j.items.filter((x) => x.status === "error")) {
      const e = document.createElement("div"); e.className = "err"; e.textContent = it.error; li.appendChild(e);
    }
    ul.appendChild(li);
  }
}

document.addEventListener("DOMContentLoaded", start);
