// Sfumato web UI: plain JavaScript, no external resources. Talks to the /v1 API of the same server.
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const el = (tag, attrs, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  };

  const JOBS_KEY = "sfumato.jobs";
  const TOKEN_KEY = "sfumato.token";
  const POLL_MS = 1000;
  const state = { options: null, picked: [], jobs: new Map(), blobs: new Map(), polling: false };

  // ---------------------------------------------------------------- API
  function authHeaders() {
    const t = sessionStorage.getItem(TOKEN_KEY);
    return t ? { Authorization: "Bearer " + t } : {};
  }

  class ApiError extends Error {
    constructor(status, detail, retryAfter) {
      super(detail);
      this.status = status;
      this.retryAfter = retryAfter;
    }
  }

  async function api(path, opts) {
    const o = Object.assign({}, opts || {});
    o.headers = Object.assign({}, authHeaders(), o.headers || {});
    const r = await fetch(path, o);
    if (r.status === 401) $("#token-panel").hidden = false;
    if (!r.ok) {
      let detail = r.status + " " + r.statusText;
      try {
        const j = await r.json();
        if (j && j.detail) detail = typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail);
      } catch (_) { /* not JSON */ }
      throw new ApiError(r.status, detail, Number(r.headers.get("Retry-After")) || 0);
    }
    return r;
  }

  async function blobUrl(url) {
    if (!state.blobs.has(url)) {
      state.blobs.set(url, api(url).then((r) => r.blob()).then((b) => URL.createObjectURL(b)));
    }
    return state.blobs.get(url);
  }

  function forgetBlobs(prefix) {
    for (const [k, p] of state.blobs) {
      if (k.startsWith(prefix)) {
        p.then((u) => URL.revokeObjectURL(u)).catch(() => {});
        state.blobs.delete(k);
      }
    }
  }

  async function download(url, name) {
    const r = await api(url);
    const b = await r.blob();
    const u = URL.createObjectURL(b);
    const a = el("a", { href: u, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(u), 60000);
  }

  // ---------------------------------------------------------------- formatting
  function fmtSpan(s) {
    if (s < 90) return Math.max(1, Math.ceil(s)) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    return (s / 3600).toFixed(1) + " h";
  }
  // The time left, as the server estimated it (eta_s ± eta_error_s). The shown value never rises by more
  // than the error it stated before (the server keeps the same rule: sfumato.server.eta.monotone), and a
  // running stage never reads "1 s left": under 10 s it says "finishing…".
  const shownEta = new Map();
  function fmtEta(key, s, err, running) {
    if (s === null || s === undefined) return "estimating…";
    const now = Date.now() / 1000;
    const prev = shownEta.get(key);
    let e = err || 0;
    if (prev) {
      const cap = Math.max(prev.s - (now - prev.at), 0) + prev.e;
      if (s > cap) { e = Math.max(e, s - cap); s = cap; }
    }
    shownEta.set(key, { s, e, at: now });
    if (running && s < 10) return "finishing…";
    if (!running && s < 10) return "starting soon";
    const band = e >= 5 && e >= 0.15 * s ? " (± " + fmtSpan(e) + ")" : "";
    return "~" + fmtSpan(s) + " left" + band;
  }
  function fmtDuration(s) {
    if (typeof s !== "number") return "?";
    if (s < 90) return "about " + Math.max(5, Math.round(s / 5) * 5) + " s";
    if (s < 5400) return "about " + Math.round(s / 60) + " min";
    return "about " + (s / 3600).toFixed(1) + " h";
  }
  const fmtBytes = (n) => (n > 1048576 ? (n / 1048576).toFixed(1) + " MB" : Math.ceil(n / 1024) + " KB");
  const fmt = (x, d) => (typeof x === "number" ? x.toFixed(d) : "–");

  function message(text, isError) {
    const m = $("#message");
    m.textContent = text || "";
    m.classList.toggle("error", !!isError);
  }

  // ---------------------------------------------------------------- options form
  function fillSelect(sel, values, labels, chosen) {
    sel.replaceChildren(...values.map((v) => el("option", { value: v, text: labels ? labels(v) : v, selected: v === chosen })));
  }

  function currentMode() {
    const r = document.querySelector('input[name="mode"]:checked');
    return r ? r.value : "cloak";
  }

  function renderOptions(o) {
    const modes = $("#modes");
    modes.querySelectorAll(".mode").forEach((n) => n.remove());
    const poison = o.poison || { available: true, reason: null };
    for (const [name, m] of Object.entries(o.modes)) {
      const needsAnchors = name !== "cloak" && !poison.available;
      const usable = m.available && !needsAnchors;
      modes.append(el("label", { class: "mode" + (usable ? "" : " off"), "data-mode": name },
        el("input", { type: "radio", name: "mode", value: name, checked: name === o.defaults.mode, disabled: !usable, onchange: onModeChange }),
        el("span", { class: "t", text: m.title }),
        el("span", { class: "d", text: m.description }),
        !m.available ? el("span", { class: "na", text: "Not available in this version yet" }) :
          needsAnchors ? el("span", { class: "na", text: "Needs anchor images, which this server has none of (see below)" }) : null));
    }
    $("#poison-off").hidden = poison.available;
    $("#poison-off-why").textContent = poison.reason || "";
    const intensity = (k) => o.intensities[k].label || k;
    fillSelect($("#intensity"), Object.keys(o.intensities), (k) => intensity(k) + (k === "default" ? " (recommended)" : ""),
      o.defaults.intensity);
    fillSelect($("#quality"), Object.keys(o.qualities), (k) => {
      const q = o.qualities[k];
      return (q.label || k) + " · " + fmtDuration(q.expected_s) + " per image";
    }, o.defaults.quality);
    fillSelect($("#target_style"), o.target_styles, null, o.defaults.target_style);
    const pretty = (c) => c.replace(/_/g, " ");
    const anchored = o.anchor_targets || [];
    const target = o.defaults.target || anchored[0] || o.concepts[1];
    const concept = o.defaults.concept || o.concepts.find((c) => c !== target);
    fillSelect($("#concept"), o.concepts, pretty, concept);
    fillSelect($("#target"), anchored.length ? anchored : o.concepts, pretty, target);
    $("#ai_view").checked = !!o.defaults.ai_view;
    $("#check").checked = false;
    $("#check-note").textContent = o.check_available ? "" : "(not available in this version)";
    const L = o.limits;
    $("#limits").textContent = "up to " + L.max_images_per_job + " per job, " + fmtBytes(L.max_upload_bytes) +
      " and " + (L.max_pixels / 1e6).toFixed(0) + " MP each; results kept " + L.ttl_hours + " h";
    $("#intensity").onchange = () => hint("intensity");
    $("#quality").onchange = () => hint("quality");
    hint("intensity");
    hint("quality");
    onModeChange();
  }

  function hint(kind) {
    const o = state.options;
    const k = $("#" + kind).value;
    let text = "";
    if (kind === "intensity") {
      const b = o.intensities[k];
      text = (b.hint ? b.hint.charAt(0).toUpperCase() + b.hint.slice(1) + "; " : "") + "each colour value moves at most " +
        Math.round(b.linf_255) + "/255, perceptual distance (LPIPS) ≤ " + b.lpips + ".";
    } else {
      const q = o.qualities[k];
      text = (q.hint ? q.hint.charAt(0).toUpperCase() + q.hint.slice(1) + ": " : "") + q.steps + " steps at " + q.resolution +
        " px; " + fmtDuration(q.expected_s) + " per image on this server (the first image takes longest)" +
        (typeof o.measured_image_s === "number" ? "; recent images here took " + fmtDuration(o.measured_image_s) + " each." : ".");
    }
    $("#" + kind + "-help").textContent = text;
  }

  function onModeChange() {
    const mode = currentMode();
    const m = state.options && state.options.modes[mode];
    document.querySelectorAll(".for-poison").forEach((n) => (n.hidden = mode === "cloak"));
    document.querySelectorAll(".for-style").forEach((n) => (n.hidden = mode === "poison"));
    $("#mode-note").textContent = m && !m.available ? m.unavailable_reason : "";
    renderPicked();
  }

  function collectOptions() {
    const mode = currentMode();
    const o = { mode, intensity: $("#intensity").value, quality: $("#quality").value, ai_view: $("#ai_view").checked ? "true" : "false" };
    if (mode !== "poison") o.target_style = $("#target_style").value;
    if (mode !== "cloak") { o.concept = $("#concept").value; o.target = $("#target").value; }
    if ($("#check").checked) o.check = "true";
    return o;
  }

  // ---------------------------------------------------------------- picking files
  function addFiles(list) {
    for (const f of list) {
      if (state.picked.some((p) => p.file.name === f.name && p.file.size === f.size && p.file.lastModified === f.lastModified)) continue;
      state.picked.push({ file: f, url: URL.createObjectURL(f) });
    }
    renderPicked();
  }

  function renderPicked() {
    const ul = $("#picked");
    ul.replaceChildren(...state.picked.map((p, i) => el("li", {},
      el("img", { src: p.url, alt: "" }),
      el("span", { class: "name", title: p.file.name, text: p.file.name }),
      el("small", { text: fmtBytes(p.file.size) }),
      el("button", { class: "x", title: "remove", "aria-label": "remove " + p.file.name, text: "×", onclick: () => {
        URL.revokeObjectURL(p.url);
        state.picked.splice(i, 1);
        renderPicked();
      } }))));
    $("#submit").disabled = state.picked.length === 0;
    $("#clear").disabled = state.picked.length === 0;
    const cloak = currentMode() === "cloak";
    $("#preview").disabled = state.picked.length === 0 || !cloak || $("#preview-box").dataset.state === "running";
    $("#preview").title = cloak ? "a quick look at the first image: small, few steps, nothing saved" : "the preview shows the style cloak";
    $("#submit").textContent = state.picked.length > 1 ? "Protect " + state.picked.length + " images" : "Protect image";
  }

  function setupDrop() {
    const drop = $("#drop"), input = $("#files");
    drop.addEventListener("click", () => input.click());
    drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
    input.addEventListener("change", () => { addFiles(input.files); input.value = ""; });
    ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
    ["dragleave", "dragend"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      if (e.dataTransfer && e.dataTransfer.files) addFiles(e.dataTransfer.files);
    });
    // Dropping outside the zone must not navigate away from the page.
    window.addEventListener("dragover", (e) => e.preventDefault());
    window.addEventListener("drop", (e) => e.preventDefault());
    $("#clear").addEventListener("click", () => {
      state.picked.forEach((p) => URL.revokeObjectURL(p.url));
      state.picked = [];
      renderPicked();
    });
  }

  // ---------------------------------------------------------------- submitting
  async function submit(attempt) {
    const fd = new FormData();
    for (const [k, v] of Object.entries(collectOptions())) fd.append(k, v);
    for (const p of state.picked) fd.append("images", p.file, p.file.name);
    $("#submit").disabled = true;
    message("Uploading " + state.picked.length + " image(s)…");
    try {
      const r = await api("/v1/jobs", { method: "POST", body: fd });
      const j = await r.json();
      rememberJob(j.id);
      state.picked.forEach((p) => URL.revokeObjectURL(p.url));
      state.picked = [];
      renderPicked();
      message("Job queued.");
      setTimeout(() => { if ($("#message").textContent.startsWith("Job queued")) message(""); }, 5000);
      await refreshJob(j.id);
      poll();
    } catch (e) {
      if (e.status === 429 && (attempt || 0) < 3) {
        const wait = Math.max(1, Math.min(e.retryAfter || 5, 120));
        message("The queue is full; retrying in " + wait + " s…");
        setTimeout(() => submit((attempt || 0) + 1), wait * 1000);
        return;
      }
      message(e.message, true);
      $("#submit").disabled = state.picked.length === 0;
    }
  }

  // ---------------------------------------------------------------- jobs
  function savedJobs() {
    try { return JSON.parse(localStorage.getItem(JOBS_KEY) || "[]").filter((x) => /^[0-9a-f]{32}$/.test(x)); } catch (_) { return []; }
  }
  function rememberJob(id) {
    const ids = savedJobs().filter((x) => x !== id);
    ids.unshift(id);
    localStorage.setItem(JOBS_KEY, JSON.stringify(ids.slice(0, 50)));
  }
  function forgetJob(id) {
    localStorage.setItem(JOBS_KEY, JSON.stringify(savedJobs().filter((x) => x !== id)));
    const card = document.querySelector('.job[data-id="' + id + '"]');
    if (card) card.remove();
    state.jobs.delete(id);
    forgetBlobs("/v1/jobs/" + id + "/");
  }

  async function refreshJob(id) {
    try {
      const r = await api("/v1/jobs/" + id);
      const job = await r.json();
      const before = state.jobs.get(id);
      state.jobs.set(id, job);
      if (before && before.status !== job.status) health();
      renderJob(job);
      return job;
    } catch (e) {
      if (e.status === 404) forgetJob(id);
      else if (e.status !== 401) message("Could not refresh job " + id.slice(0, 8) + ": " + e.message, true);
      return null;
    }
  }

  async function poll() {
    if (state.polling) return;
    state.polling = true;
    try {
      for (;;) {
        const active = [...state.jobs.values()].filter((j) => j.status === "queued" || j.status === "running");
        if (!active.length) break;
        await Promise.all(active.map((j) => refreshJob(j.id)));
        await new Promise((res) => setTimeout(res, POLL_MS));
      }
    } finally {
      state.polling = false;
    }
  }

  function statusPill(status) {
    const cls = { done: "ok", failed: "bad", running: "run" }[status] || "";
    return el("span", { class: "pill status " + cls, text: status });
  }

  function jobCard(job) {
    let card = document.querySelector('.job[data-id="' + job.id + '"]');
    if (!card) {
      card = el("article", { class: "job", "data-id": job.id });
      const head = el("div", { class: "job-head" },
        el("h3", { text: "Job " + job.id.slice(0, 8) }),
        el("span", { class: "pill status" }),
        el("span", { class: "job-sub note" }),
        el("span", { class: "spacer" }),
        el("span", { class: "eta job-eta" }),
        el("button", { class: "small dl-zip", text: "Download all (zip)", disabled: true,
          onclick: () => download(job.zip_url, "sfumato-" + job.id.slice(0, 8) + ".zip").catch((e) => message(e.message, true)) }),
        el("button", { class: "small ghost del", text: "Delete", onclick: async () => {
          if (!confirm("Delete this job and its results from the server?")) return;
          try { await api("/v1/jobs/" + job.id, { method: "DELETE" }); } catch (e) { if (e.status !== 404) { message(e.message, true); return; } }
          forgetJob(job.id);
        } }));
      card.append(head, el("div", { class: "bar job-bar" }, el("span")), el("p", { class: "job-error", hidden: true }),
        el("div", { class: "images" }));
      $("#jobs").prepend(card);
    }
    return card;
  }

  function renderJob(job) {
    const card = jobCard(job);
    card.dataset.status = job.status;
    card.querySelector(".status").replaceWith(statusPill(job.status));
    const o = job.options;
    const O = state.options || {};
    const word = (table, k) => (table && table[k] && table[k].label ? table[k].label.toLowerCase() : k);
    card.querySelector(".job-sub").textContent = [o.mode, word(O.intensities, o.intensity) + " intensity",
      word(O.qualities, o.quality) + " quality",
      o.mode === "cloak" ? "style " + o.target_style : (o.concept ? o.concept + " → " + o.target : "")].filter(Boolean).join(" · ");
    card.querySelector(".job-bar > span").style.width = (100 * job.progress).toFixed(1) + "%";
    let eta = "";
    if (job.status === "queued") eta = (job.queue_position ? job.queue_position + " job(s) ahead · " : "waiting · ") + fmtEta(job.id, job.eta_s, job.eta_error_s, false);
    else if (job.status === "running") eta = job.counts.done + job.counts.failed + "/" + job.counts.total + " done · " +
      (job.finishing ? "finishing…" : fmtEta(job.id, job.eta_s, job.eta_error_s, true));
    else if (job.expires) eta = "kept until " + new Date(job.expires * 1000).toLocaleString();
    card.querySelector(".job-eta").textContent = eta;
    card.querySelector(".dl-zip").disabled = job.counts.done === 0;
    const err = card.querySelector(".job-error");
    err.hidden = !job.error;
    err.textContent = job.error || "";
    const box = card.querySelector(".images");
    for (const im of job.images) renderImage(job, im, box);
  }

  function renderImage(job, im, box) {
    let node = box.querySelector('.image[data-id="' + im.id + '"]');
    if (!node) {
      node = el("div", { class: "image", "data-id": im.id },
        el("div", { class: "image-head" }, el("span", { class: "name", title: im.name, text: im.name }), el("span", { class: "pill status" })),
        el("div", { class: "bar" }, el("span")),
        el("div", { class: "progress-line" }, el("span", { class: "stage" }), el("span", { class: "eta" })),
        el("p", { class: "err", hidden: true }),
        el("div", { class: "result", hidden: true }));
      box.append(node);
    }
    if (node.dataset.status === im.status && im.status !== "running" && im.status !== "queued") return;
    node.dataset.status = im.status;
    node.querySelector(".status").replaceWith(statusPill(im.status));
    node.querySelector(".bar > span").style.width = (100 * im.progress).toFixed(1) + "%";
    node.querySelector(".bar").hidden = im.status === "done" || im.status === "failed";
    const eta = node.querySelector(".eta"), stage = node.querySelector(".stage");
    stage.textContent = im.status === "running" ? (im.stage ? im.stage.label : "starting") : "";
    stage.dataset.key = im.status === "running" && im.stage ? im.stage.key : "";
    if (im.status === "running") eta.textContent = im.finishing ? "finishing…" : fmtEta(job.id + "/" + im.index, im.eta_s, im.eta_error_s, true);
    else if (im.status === "queued") eta.textContent = "waiting";
    else eta.textContent = im.seconds ? "took " + im.seconds.toFixed(1) + " s" : "";
    const err = node.querySelector(".err");
    err.hidden = !im.error;
    err.textContent = im.error || "";
    if (im.status === "done") renderResult(job, im, node.querySelector(".result"));
  }

  function renderResult(job, im, box) {
    box.hidden = false;
    const f = im.files;
    const s = im.summary || {};
    const views = [["image", "Before / after", f.input, f.output]];
    if (f.ai_view_before && f.ai_view_after) views.push(["ai", "AI view", f.ai_view_before, f.ai_view_after]);
    views.push(["diff", "Where it changed", f.input, f.output]);
    const cmp = compareWidget(s.budget_linf);
    const tabs = el("div", { class: "views", role: "group", "aria-label": "view" });
    const show = (v, btn) => {
      tabs.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", String(b === btn)));
      cmp.show(v[0], v[2].url, v[3].url, v[0] === "ai" ? ["AI before", "AI after"] : ["Original", "Protected"]);
    };
    for (const v of views) {
      const b = el("button", { class: "small view-" + v[0], text: v[1], "aria-pressed": "false", onclick: () => show(v, b) });
      tabs.append(b);
    }
    const v = s.verdict;
    const took = v ? v.protected : undefined;
    // green only when the verdict says the protection took (or there is no verdict at all)
    const within = s.within_budget === true ? el("b", { class: took === true || took === undefined ? "ok" : "plain", text: "within budget" }) :
      s.within_budget === false ? el("b", { class: "bad", text: "over budget" }) : null;
    const verdict = verdictNode(v);
    const metrics = el("div", { class: "metrics" },
      el("span", {}, "LPIPS ", el("b", { text: fmt(s.lpips, 4) }), " ≤ " + fmt(s.budget_lpips, 3)),
      el("span", {}, "max change ", el("b", { text: typeof s.linf === "number" ? (s.linf * 255).toFixed(1) + "/255" : "–" }),
        typeof s.budget_linf === "number" ? " ≤ " + (s.budget_linf * 255).toFixed(0) + "/255" : ""),
      el("span", {}, "PSNR ", el("b", { text: fmt(s.psnr, 1) + " dB" })),
      typeof s.ssim === "number" ? el("span", {}, "SSIM ", el("b", { text: fmt(s.ssim, 3) })) : null,
      s.target ? el("span", {}, "target ", el("b", { text: s.target })) : null,
      typeof s.latent_reduction === "number" ? el("span", {}, "latent moved ", el("b", { text: (100 * s.latent_reduction).toFixed(0) + "%" })) : null,
      within);
    const actions = el("div", { class: "actions" },
      el("button", { class: "small primary dl-output", text: "Download", onclick: () => download(f.output.url, f.output.download_name).catch((e) => message(e.message, true)) }),
      el("button", { class: "small dl-manifest", text: "Manifest", onclick: () => download(f.manifest.url, f.manifest.download_name).catch((e) => message(e.message, true)) }),
      f.report ? el("button", { class: "small open-report", text: "Open report", onclick: () => openReport(f.report.url) }) : null);
    const extra = im.report_error ? el("p", { class: "note", text: "Report: " + im.report_error }) : null;
    tabs.append(el("span", { class: "spacer" }),
      el("button", { class: "small loupe-toggle", text: "100 % loupe", "aria-pressed": "false", title: "magnify to 100 % under the pointer",
        onclick: (e) => { const on = cmp.toggleLoupe(); e.currentTarget.setAttribute("aria-pressed", String(on)); } }),
      el("button", { class: "small enlarge", text: "Enlarge", "aria-pressed": "false", onclick: (e) => {
        const card = box.closest(".image");
        const on = card.classList.toggle("wide");
        e.currentTarget.setAttribute("aria-pressed", String(on));
        e.currentTarget.textContent = on ? "Smaller" : "Enlarge";
      } }));
    box.replaceChildren(...[verdict, tabs, cmp.node, cmp.legend, metrics, actions].filter(Boolean));
    if (extra) box.append(extra);
    show(views[0], tabs.querySelector("button"));
  }

  // The plain verdict: the sentence leads with its answer ("Not protected: ..."), that part in bold.
  function verdictNode(v) {
    if (!v) return null;
    const took = v.protected;
    const lead = /^(Not protected|Protected|Cannot tell|No verdict)/.exec(v.sentence);
    const head = lead ? lead[1] : (took === true ? "Protected. " : took === false ? "Not protected. " : "Cannot tell. ");
    return el("p", { class: "verdict " + (took === true ? "yes" : took === false ? "no" : "unknown"), role: "note" },
      el("b", { text: head }), el("span", { class: "sentence", text: lead ? v.sentence.slice(head.length) : v.sentence }));
  }

  // ---------------------------------------------------------------- preview
  // A quick cloak of the first picked image (POST /v1/preview: small size, few steps, nothing saved): its
  // verdict and what a model sees before and after, before committing to the full run.
  async function preview() {
    const p = state.picked[0];
    if (!p) return;
    const box = $("#preview-box");
    const fd = new FormData();
    for (const [k, v] of Object.entries(collectOptions())) fd.append(k, v);
    fd.append("image", p.file, p.file.name);
    $("#preview").disabled = true;
    box.hidden = false;
    box.dataset.state = "running";
    const t0 = Date.now();
    const status = el("p", { class: "note preview-status", text: "Previewing " + p.file.name + "…" });
    box.replaceChildren(el("h3", { text: "Preview" }), status);
    const tick = setInterval(() => { status.textContent = "Previewing " + p.file.name + "… " + Math.round((Date.now() - t0) / 1000) + " s"; }, 1000);
    try {
      const r = await api("/v1/preview", { method: "POST", body: fd });
      const pv = await r.json();
      const fig = (src, cap) => el("figure", {}, el("img", { src, alt: cap }), el("figcaption", { text: cap }));
      box.replaceChildren(
        el("h3", { text: "Preview of " + pv.name }),
        verdictNode(pv.verdict) || el("p", { class: "verdict unknown", text: "No verdict for this preview." }),
        el("div", { class: "ai-pair" }, fig(pv.ai_view.before, "What a model sees: before"), fig(pv.ai_view.after, "after (preview cloak)")),
        el("p", { class: "note", text: pv.note + " Took " + pv.seconds.toFixed(1) + " s." +
          (pv.target ? " Target style: " + pv.target + "." : "") }));
      box.dataset.state = "done";
    } catch (e) {
      box.replaceChildren(el("h3", { text: "Preview" }), el("p", { class: "err", text: e.message }));
      box.dataset.state = "failed";
    } finally {
      clearInterval(tick);
      renderPicked();
    }
  }

  // The report opens from a signed server link: it carries its own style and CSP (a blob: window would
  // inherit this page's CSP, which blocks the report's inline style) and the image's real file name.
  async function openReport(url) {
    const w = window.open("", "_blank");
    try {
      const r = await api(url + "/link");
      const link = (await r.json()).url;
      if (w) w.location = link; else window.location.assign(link);
    } catch (e) {
      if (w) w.close();
      message(e.message, true);
    }
  }

  function compareWidget(budgetLinf) {
    const after = el("img", { class: "after", alt: "protected" });
    const before = el("img", { class: "before", alt: "original" });
    const wrap = el("div", { class: "before-wrap" }, before);
    const divider = el("div", { class: "divider" });
    const canvas = el("canvas", { class: "diff", hidden: true });
    const lblL = el("span", { class: "lbl l" }), lblR = el("span", { class: "lbl r" });
    const range = el("input", { type: "range", min: "0", max: "100", value: "50", "aria-label": "comparison position" });
    const loupe = el("div", { class: "loupe", hidden: true, "aria-hidden": "true" }, el("span", { class: "lbl" }));
    const node = el("div", { class: "compare" }, after, canvas, wrap, divider, range, lblL, lblR, loupe);
    const budget255 = typeof budgetLinf === "number" && budgetLinf > 0 ? budgetLinf * 255 : 24;
    const legend = el("div", { class: "legend", hidden: true },
      el("span", { text: "unchanged" }), el("span", { class: "ramp" }),
      el("span", { text: "≥ " + (budget255 / 2).toFixed(0) + "/255 average change (half the budget)" }));
    let loupeOn = false, diffUrl = null, kindShown = "image";
    const place = () => {
      const v = Number(range.value);
      wrap.style.clipPath = "inset(0 " + (100 - v) + "% 0 0)";
      divider.style.left = v + "%";
    };
    range.addEventListener("input", place);
    place();
    // never taller than 80 % of the window: a tall image gets narrower instead of cut off
    const fit = (w, h) => { if (w && h) node.style.maxWidth = "calc(80vh * " + (w / h).toFixed(4) + ")"; };
    after.addEventListener("load", () => fit(after.naturalWidth, after.naturalHeight));
    function moveLoupe(e) {
      if (!loupeOn) return;
      const r = node.getBoundingClientRect();
      const x = e.clientX - r.left, y = e.clientY - r.top;
      if (x < 0 || y < 0 || x > r.width || y > r.height) { loupe.hidden = true; return; }
      const leftSide = kindShown !== "diff" && x < r.width * Number(range.value) / 100;
      const src = kindShown === "diff" ? canvas : (leftSide ? before : after);
      const url = kindShown === "diff" ? diffUrl : src.src;
      const nw = src.naturalWidth || src.width, nh = src.naturalHeight || src.height;
      if (!url || !nw) return;
      const px = x / r.width * nw, py = y / r.height * nh;  // the image pixel under the pointer
      const size = loupe.offsetWidth || 200;
      loupe.hidden = false;
      loupe.style.backgroundImage = 'url("' + url + '")';
      loupe.style.backgroundSize = nw + "px " + nh + "px";  // 1 image pixel = 1 screen pixel
      loupe.style.backgroundPosition = (size / 2 - px) + "px " + (size / 2 - py) + "px";
      loupe.style.left = Math.min(Math.max(x - size / 2, 0), r.width - size) + "px";
      loupe.style.top = Math.min(Math.max(y - size / 2, 0), Math.max(r.height - size, 0)) + "px";
      loupe.dataset.side = kindShown === "diff" ? "diff" : leftSide ? "before" : "after";
      loupe.firstChild.textContent = "100 % · " + (kindShown === "diff" ? "change" : leftSide ? lblL.textContent : lblR.textContent);
    }
    node.addEventListener("pointermove", moveLoupe);
    node.addEventListener("pointerleave", () => { loupe.hidden = true; });
    function toggleLoupe() {
      loupeOn = !loupeOn;
      node.classList.toggle("loupe-on", loupeOn);
      if (!loupeOn) loupe.hidden = true;
      return loupeOn;
    }
    let token = 0;
    async function show(kind, beforeUrl, afterUrl, labels) {
      const mine = ++token;
      lblL.textContent = labels[0];
      lblR.textContent = labels[1];
      try {
        const [b, a] = await Promise.all([blobUrl(beforeUrl), blobUrl(afterUrl)]);
        if (mine !== token) return;
        kindShown = kind;
        legend.hidden = kind !== "diff";
        if (kind === "diff") {
          node.classList.add("single");
          after.hidden = true;
          canvas.hidden = false;
          delete canvas.dataset.drawn;
          await drawDiff(canvas, b, a, budget255);
          if (mine !== token) return;
          canvas.dataset.drawn = "1";
          fit(canvas.width, canvas.height);
          diffUrl = canvas.toDataURL("image/png");
        } else {
          node.classList.remove("single");
          after.hidden = false;
          canvas.hidden = true;
          before.src = b;
          after.src = a;
        }
      } catch (e) {
        message(e.message, true);
      }
    }
    return { node, legend, show, toggleLoupe };
  }

  function loadImg(src) {
    return new Promise((res, rej) => {
      const i = new Image();
      i.onload = () => res(i);
      i.onerror = () => rej(new Error("this browser cannot display the image (TIFF?); download it instead"));
      i.src = src;
    });
  }

  // Where the image changed: the average size of the change (largest colour channel, over 5x5 pixels),
  // from black (unchanged) through red to yellow at half the budget's largest allowed change.
  async function drawDiff(canvas, beforeUrl, afterUrl, budget255) {
    const [b, a] = await Promise.all([loadImg(beforeUrl), loadImg(afterUrl)]);
    const w = a.naturalWidth, h = a.naturalHeight;
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(b, 0, 0, w, h);
    const pb = ctx.getImageData(0, 0, w, h);
    ctx.drawImage(a, 0, 0, w, h);
    const pa = ctx.getImageData(0, 0, w, h);
    const amp = new Float32Array(w * h);
    for (let p = 0, i = 0; p < w * h; p++, i += 4) {
      amp[p] = Math.max(Math.abs(pa.data[i] - pb.data[i]), Math.abs(pa.data[i + 1] - pb.data[i + 1]),
        Math.abs(pa.data[i + 2] - pb.data[i + 2]));
    }
    const sum = new Float64Array((w + 1) * (h + 1));  // integral image for the 5x5 average
    for (let y = 0; y < h; y++) {
      let row = 0;
      for (let x = 0; x < w; x++) {
        row += amp[y * w + x];
        sum[(y + 1) * (w + 1) + x + 1] = sum[y * (w + 1) + x + 1] + row;
      }
    }
    const top = Math.max(1, budget255 / 2), R = 2;
    const out = ctx.createImageData(w, h);
    for (let y = 0; y < h; y++) {
      const y0 = Math.max(0, y - R), y1 = Math.min(h, y + R + 1);
      for (let x = 0; x < w; x++) {
        const x0 = Math.max(0, x - R), x1 = Math.min(w, x + R + 1);
        const s = sum[y1 * (w + 1) + x1] - sum[y0 * (w + 1) + x1] - sum[y1 * (w + 1) + x0] + sum[y0 * (w + 1) + x0];
        const t = Math.min(1, s / ((y1 - y0) * (x1 - x0)) / top);
        const i = 4 * (y * w + x);  // heat: black -> red -> yellow -> white
        out.data[i] = Math.round(255 * Math.min(1, 2 * t));
        out.data[i + 1] = Math.round(255 * Math.max(0, Math.min(1, 2 * t - 0.6)));
        out.data[i + 2] = Math.round(255 * Math.max(0, 3 * t - 2));
        out.data[i + 3] = 255;
      }
    }
    ctx.putImageData(out, 0, 0);
  }

  // ---------------------------------------------------------------- start
  async function health() {
    const p = $("#health");
    try {
      const r = await fetch("/v1/health");
      const h = await r.json();
      const jobs = h.jobs ? " · " + h.jobs.running + " running · " + h.jobs.queued + " queued" : "";
      if (h.status === "ok") {
        p.textContent = "online" + jobs;
        p.className = "pill ok";
        p.title = "server status";
      } else {
        p.textContent = (h.status === "down" ? "down" : "degraded") + jobs;
        p.className = "pill bad";
        p.title = (h.problems || []).join("\n");
      }
      $("#version").textContent = h.version;
      if (h.auth_required && !sessionStorage.getItem(TOKEN_KEY)) $("#token-panel").hidden = false;
    } catch (_) {
      p.textContent = "offline";
      p.className = "pill bad";
    }
  }

  async function loadOptions() {
    try {
      const r = await api("/v1/options");
      state.options = await r.json();
      renderOptions(state.options);
      return true;
    } catch (e) {
      if (e.status !== 401) message("Could not load options: " + e.message, true);
      return false;
    }
  }

  // Jobs come from the server (every browser sees them); the ids this browser made are the fallback.
  async function serverJobIds() {
    try {
      const r = await api("/v1/jobs");
      return (await r.json()).jobs.map((j) => j.id);
    } catch (e) {
      return null;
    }
  }

  async function loadJobs() {
    const listed = await serverJobIds();
    const ids = listed === null ? savedJobs() : listed;
    if (listed !== null) for (const id of [...state.jobs.keys()]) if (!listed.includes(id)) forgetJob(id);  // expired or deleted elsewhere
    const fresh = ids.filter((id) => !state.jobs.has(id)).reverse();  // oldest first: cards are prepended
    for (const id of fresh) await refreshJob(id);
    poll();
  }

  async function start() {
    setupDrop();
    $("#submit").addEventListener("click", () => submit(0));
    $("#preview").addEventListener("click", () => preview());
    $("#token-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
      $("#token").value = "";
      if (await loadOptions()) {
        $("#token-panel").hidden = true;
        message("");
        await loadJobs();
      } else {
        message("That token was refused.", true);
      }
    });
    await health();
    setInterval(() => { health(); if (state.options) loadJobs(); }, 10000);
    if (await loadOptions()) await loadJobs();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
