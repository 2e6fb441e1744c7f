/* initsweep dashboard: fills the page shells from the JSON endpoints and keeps them live.
   Plain ES2017, no build step; Plotly (window.Plotly) comes from /static/plotly.min.js. */
"use strict";

(function () {
  const body = document.body;
  const POLL_MS = 1000 * (parseFloat(body.dataset.poll) || 3);
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const PLOT_CONFIG = { displaylogo: false, responsive: true,
    modeBarButtonsToRemove: ["lasso2d", "select2d", "autoScale2d"] };
  const FONT = { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12, color: "#1f2937" };

  // ------------------------------------------------------------------ helpers

  const $ = (sel) => document.querySelector(sel);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function api(path) {
    const response = await fetch(path, { headers: { Accept: "application/json" } });
    let data = {};
    try { data = await response.json(); } catch (e) { data = {}; }
    if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
    return data;
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
    const s = q.toString();
    return s ? "?" + s : "";
  }

  function showError(error) {
    const box = $("#error");
    if (!box) return;
    box.textContent = String((error && error.message) || error);
    box.hidden = false;
  }
  function clearError() { const box = $("#error"); if (box) box.hidden = true; }

  /* Run `fn` now and again `ms` after each run ends (never two at once). */
  function every(ms, fn) {
    let timer = null;
    const tick = async () => {
      try { await fn(); clearError(); } catch (e) { showError(e); }
      timer = setTimeout(tick, typeof ms === "function" ? ms() : ms);
    };
    tick();
    return () => clearTimeout(timer);
  }

  const fmtInt = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"));
  const clockTime = (iso) => new Date(iso).toLocaleTimeString("en-GB");

  function pill(status) { return el("span", { class: `pill ${status}`, text: status }); }

  function progressBar(counts, total) {
    const bar = el("div", { class: "bar", title: Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(" · ") });
    for (const key of ["done", "running", "failed"]) {
      const n = counts[key] || 0;
      if (n && total) bar.append(el("span", { class: key, style: `width:${(100 * n) / total}%` }));
    }
    return bar;
  }

  function color(i, n) {
    if (n <= PALETTE.length) return PALETTE[i % PALETTE.length];
    const t = (i / Math.max(1, n - 1)) * 0.92 * (VIRIDIS.length - 1);
    const k = Math.min(Math.floor(t), VIRIDIS.length - 2), f = t - k;
    const c = VIRIDIS[k].map((v, j) => Math.round(v + f * (VIRIDIS[k + 1][j] - v)));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }

  function translucent(c, alpha) {
    if (c.startsWith("#")) {
      const n = parseInt(c.slice(1), 16);
      return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`;
    }
    return c.replace("rgb(", "rgba(").replace(")", `,${alpha})`);
  }

  function failuresList(failures) {
    return el("ul", { class: "fails" }, failures.map((f) => el("li", {},
      el("strong", { text: f.configuration }),
      el("span", { class: "muted", text: ` · chunk ${f.chunk_index} · ${f.attempts} attempt${f.attempts === 1 ? "" : "s"}` +
        (f.worker ? ` · ${f.worker}` : "") + (f.finished_at ? ` · ${clockTime(f.finished_at)}` : "") }),
      el("pre", { text: f.error || "(no error recorded)" }))));
  }

  function message(div, text) {
    if (window.Plotly) Plotly.purge(div);
    div.replaceChildren(el("p", { class: "message", text }));
  }

  function clearMessage(div) {
    const m = div.querySelector(":scope > p.message");
    if (m) m.remove();
  }

  // ------------------------------------------------------------ layer plots

  const STAT_TITLES = { std: "std over units", mean_sq: "mean_sq over units", mean: "mean over units" };
  const QUANTITY_TITLES = { activation: "activations h<sup>l</sup>", gradient: "gradients ∂L/∂z<sup>l</sup>",
    preactivation: "preactivations z<sup>l</sup>" };

  /* The colour of a theory check's verdict: passed, FAILED, or neither (incomplete, nothing compared). */
  function verdictClass(check) {
    return check.passed ? "ok" : check.verdict === "FAILED" ? "bad" : "unsure";
  }

  /* Traces of one configuration's statistic against the layer: SE band, line, censored part, theory. */
  function layerTraces(s, q, c, xaxis, yaxis, showlegend, log) {
    const d = s.quantities[q];
    if (!d) return [];
    const traces = [];
    const pts = d.layer.map((x, i) => ({ x, y: d.y[i], se: d.se[i], cens: d.censored[i], fin: d.finite[i], n: d.trials[i] }))
      .filter((p) => p.y !== null && (!log || p.y > 0));
    const band = pts.filter((p) => p.se !== null);
    if (band.length) {
      const hi = band.map((p) => p.y + 2 * p.se);
      const lo = band.map((p) => (log ? Math.max(p.y - 2 * p.se, p.y * 1e-3) : p.y - 2 * p.se));
      traces.push({ x: band.map((p) => p.x).concat(band.map((p) => p.x).reverse()), y: hi.concat(lo.reverse()),
        type: "scatter", mode: "lines", fill: "toself", fillcolor: translucent(c, 0.18), line: { width: 0 },
        hoverinfo: "skip", showlegend: false, legendgroup: s.legend, xaxis, yaxis });
    }
    const marker = pts.length <= 5 ? "lines+markers" : "lines";
    const hover = `<b>${s.legend.replace(/</g, "&lt;")}</b><br>layer %{x}: %{y:.4g} ± %{customdata[0]:.2g}` +
      "<br>finite %{customdata[1]}/%{customdata[2]}<extra></extra>";
    traces.push({ x: pts.map((p) => p.x), y: pts.map((p) => (p.cens ? null : p.y)),
      customdata: pts.map((p) => [p.se === null ? NaN : p.se, p.fin, p.n]), hovertemplate: hover,
      type: "scatter", mode: marker, name: s.legend, legendgroup: s.legend, showlegend,
      line: { color: c, width: 1.8 }, marker: { size: 5 }, xaxis, yaxis });
    const first = pts.findIndex((p) => p.cens);
    if (first >= 0) {
      const part = pts.slice(Math.max(0, first - 1));
      traces.push({ x: part.map((p) => p.x), y: part.map((p) => p.y),
        customdata: part.map((p) => [p.se === null ? NaN : p.se, p.fin, p.n]), hovertemplate: hover,
        type: "scatter", mode: marker, line: { color: c, width: 1.2, dash: "dot" }, marker: { size: 4 },
        showlegend: false, legendgroup: s.legend, xaxis, yaxis });
    }
    const theory = d.layer.map((x, i) => ({ x, y: d.theory[i] })).filter((p) => p.y !== null && (!log || p.y > 0));
    if (theory.length) {
      traces.push({ x: theory.map((p) => p.x), y: theory.map((p) => p.y), type: "scatter", mode: "lines",
        line: { color: "rgba(17,24,39,0.85)", width: 1.1, dash: "dash" }, name: "mean-field theory",
        legendgroup: "theory", showlegend: false,
        hovertemplate: `theory (${s.legend.replace(/</g, "&lt;")})<br>layer %{x}: %{y:.4g}<extra></extra>`, xaxis, yaxis });
    }
    return traces;
  }

  function axisRange(values, log) {
    const v = values.filter((x) => x !== null && isFinite(x) && (!log || x > 0));
    if (!v.length) return null;
    let lo = Math.min(...v), hi = Math.max(...v);
    if (log) { lo = Math.log10(lo); hi = Math.log10(hi); }
    const pad = (hi - lo) * 0.06 || (log ? 0.3 : Math.abs(hi) * 0.1 || 1);
    return [lo - pad, hi + pad];
  }

  function seriesValues(series, q) {
    const out = [];
    for (const s of series) {
      const d = s.quantities[q];
      if (!d) continue;
      d.y.forEach((y, i) => {
        if (y === null) return;
        const se = d.se[i] || 0;
        out.push(y + 2 * se, Math.max(y - 2 * se, y * 1e-3));
      });
      d.theory.forEach((t) => t !== null && out.push(t));
    }
    return out;
  }

  /* The per-layer figure of one sweep: one subplot per quantity, side by side (or stacked). */
  function drawLayers(div, d, opts) {
    opts = opts || {};
    clearMessage(div);
    const quantities = opts.quantities || d.quantities;
    if (!d.series.length || !quantities.length) {
      message(div, d.configs_with_results ? "No configuration matches the filter." :
        "No results yet: a configuration's statistics appear once all of its chunks are done.");
      return;
    }
    const n = quantities.length, stacked = !!opts.stacked, gap = stacked ? 0.16 : 0.09;
    const traces = [], layout = {
      font: FONT, height: opts.height || (stacked ? 330 * n : 440), margin: { l: 70, r: 16, t: 34, b: 48 },
      hovermode: "closest", plot_bgcolor: "#fff", paper_bgcolor: "#fff", annotations: [],
      legend: { font: { size: 11 }, tracegroupgap: 2, itemclick: "toggle", itemdoubleclick: "toggleothers" },
      showlegend: opts.showlegend !== false,
    };
    quantities.forEach((q, j) => {
      const ax = j === 0 ? "" : String(j + 1);
      const span = (1 - gap * (n - 1)) / n;
      const a0 = j * (span + gap), a1 = a0 + span;
      const xa = { title: { text: "layer l", standoff: 6 }, zeroline: false, gridcolor: "#eef0f3", linecolor: "#9ca3af",
        ticks: "outside", anchor: "y" + ax };
      const ya = { title: { text: STAT_TITLES[d.stat] + " (mean over trials)", standoff: 4 },
        type: d.log ? "log" : "linear", exponentformat: "power", nticks: 8, gridcolor: "#eef0f3", linecolor: "#9ca3af",
        ticks: "outside", anchor: "x" + ax, zeroline: !d.log };
      if (stacked) { xa.domain = [0, 1]; ya.domain = [1 - a1, 1 - a0]; } else { xa.domain = [a0, a1]; ya.domain = [0, 1]; }
      const range = (opts.ranges && opts.ranges[q]) || (d.log && axisRange(seriesValues(d.series, q), true));
      if (opts.ranges && opts.ranges[q]) { ya.range = opts.ranges[q]; ya.autorange = false; }
      if (d.log && range && range[1] - range[0] < 2.5) ya.dtick = "D2";  // 0.2, 0.5, 1, 2, 5 labels
      layout["xaxis" + ax] = xa;
      layout["yaxis" + ax] = ya;
      layout.annotations.push({ text: `<b>${QUANTITY_TITLES[q]}</b>`, showarrow: false, xref: "paper", yref: "paper",
        x: stacked ? 0 : (a0 + a1) / 2, xanchor: stacked ? "left" : "center",
        y: stacked ? 1 - a0 : 1, yanchor: "bottom", yshift: 6, font: { size: 13 } });
      d.series.forEach((s, i) => traces.push(...layerTraces(s, q, color(i, d.series.length), "x" + ax, "y" + ax,
        j === 0, d.log)));
    });
    if (traces.some((t) => t.legendgroup === "theory")) {
      traces.push({ x: [null], y: [null], type: "scatter", mode: "lines", name: "mean-field theory",
        legendgroup: "theory", line: { color: "rgba(17,24,39,0.85)", width: 1.1, dash: "dash" },
        hoverinfo: "skip" });
    }
    Plotly.react(div, traces, layout, PLOT_CONFIG);
  }

  // --------------------------------------------------------- explosion, phase

  const HEAT = [[0, "#fffdf7"], [0.001, "#fef3c7"], [0.1, "#fdba74"], [0.4, "#ea580c"], [1, "#7f1d1d"]];

  function drawExplosion(div, note, d) {
    clearMessage(div);
    if (!d.rows.length) {
      note.textContent = "";
      message(div, "No results yet.");
      return;
    }
    if (!d.eventful) {
      note.textContent = "";
      message(div, `No trial of the ${fmtInt(d.total)} configuration${d.total === 1 ? "" : "s"} overflowed or ` +
        "collapsed to exactly 0, and theory predicts neither within their depths.");
      return;
    }
    note.textContent = `${d.eventful} of ${fmtInt(d.total)} configurations overflowed or collapsed (observed or ` +
      `predicted)` + (d.rows.length < d.total ? `; ${d.rows.length} shown, those first` : "") +
      ". Forward pass; grey: beyond the configuration's depth.";
    const labels = d.rows.map((r, i) => `${r.legend}${d.rows.findIndex((o) => o.legend === r.legend) !== i ? ` (${i + 1})` : ""}`);
    const layers = Array.from({ length: d.depth }, (_, i) => i + 1);
    const grid = (key) => d.rows.map((r) => layers.map((l) => {
      const k = r.layer.indexOf(l);
      return k < 0 ? null : r[key][k];
    }));
    const heat = (key, ax, bar) => ({ type: "heatmap", x: layers, y: labels, z: grid(key), zmin: 0, zmax: 1,
      colorscale: HEAT, xaxis: "x" + ax, yaxis: "y", xgap: 0.5, ygap: 1, showscale: bar,
      colorbar: { title: { text: "fraction<br>of trials", side: "right" }, thickness: 12, len: 0.9 },
      hovertemplate: "%{y}<br>layer %{x}: %{z:.1%}<extra></extra>" });
    const marks = (key, ax, symbol, name) => {
      const pts = d.rows.map((r, i) => [r[key], labels[i]]).filter((p) => p[0] !== null);
      return { type: "scatter", mode: "markers", x: pts.map((p) => p[0]), y: pts.map((p) => p[1]), name,
        xaxis: "x" + ax, yaxis: "y", marker: { symbol, size: 11, color: "#0ea5e9", line: { color: "#fff", width: 1 } },
        hovertemplate: `${name}: layer %{x:.1f}<extra></extra>`, showlegend: pts.length > 0 };
    };
    const height = Math.max(260, 120 + 24 * d.rows.length);
    const xa = (domain) => ({ domain, title: { text: "layer l" }, range: [0.5, d.depth + 0.5], ticks: "outside" });
    Plotly.react(div, [heat("nonfinite", "", false), heat("collapsed", "2", true),
      marks("overflow", "", "triangle-down", "predicted overflow layer"),
      marks("underflow", "2", "triangle-up", "predicted collapse layer")], {
      font: FONT, height, margin: { l: 10, r: 10, t: 34, b: 70 }, plot_bgcolor: "#e5e7eb",
      xaxis: xa([0, 0.45]), xaxis2: xa([0.5, 0.95]),
      yaxis: { automargin: true, autorange: "reversed", tickfont: { size: 11 } },
      legend: { orientation: "h", x: 0, y: -0.12, yanchor: "top", xanchor: "left" },
      annotations: [
        { text: "<b>non-finite at or before layer l</b>", x: 0.225, xref: "paper", y: 1, yref: "paper",
          yanchor: "bottom", yshift: 6, showarrow: false, font: { size: 13 } },
        { text: "<b>collapsed to exactly 0 at layer l</b>", x: 0.725, xref: "paper", y: 1, yref: "paper",
          yanchor: "bottom", yshift: 6, showarrow: false, font: { size: 13 } }],
    }, PLOT_CONFIG);
  }

  function drawPhase(div, note, d) {
    if (!d.available) {
      note.textContent = d.reason;
      div.replaceChildren();
      return;
    }
    note.textContent = "Left: how far the signal grows or shrinks by the last layer; right: how the gradient " +
      "grows (red) or vanishes (blue) from the last layer back to the first. Dashed: χ₁ = 1, the edge of chaos.";
    if (div.children.length !== d.groups.length) {
      div.replaceChildren(...d.groups.map(() => el("div", { class: "phase-group" }, el("h3"), el("div", { class: "plot" }))));
    }
    d.groups.forEach((g, i) => {
      const edge = { type: "scatter", mode: "lines", x: g.critical.sigma_w, y: g.critical.sigma_b,
        line: { color: "#111827", width: 2.2, dash: "dash" }, name: "χ₁ = 1 (mean-field theory)",
        hovertemplate: "χ₁ = 1: σ_w %{x:.3f}, σ_b %{y:.3f}<extra></extra>" };
      const heat = (z, ax, scale, bar, title) => ({ type: "heatmap", x: d.sigma_w, y: d.sigma_b, z, xaxis: "x" + ax,
        yaxis: "y" + ax, colorscale: scale, zmid: ax ? 0 : undefined,
        colorbar: { x: bar, thickness: 12, len: 0.9, title: { text: title, side: "right" } },
        hovertemplate: "σ_w %{x}, σ_b %{y}<br>%{z:.3g}<extra></extra>" });
      div.children[i].querySelector("h3").textContent = `${g.activation}, depth ${g.depth}${g.title ? " · " + g.title : ""}`;
      const axes = (domain, anchor) => ({ domain, anchor, ticks: "outside" });
      const xr = pad(d.sigma_w), yr = pad(d.sigma_b);
      Plotly.react(div.children[i].querySelector(".plot"), [
        heat(g.final, "", "Viridis", 0.43, "log<sub>10</sub>"), heat(g.ratio, "2", "RdBu", 1.0, "log<sub>10</sub>"),
        Object.assign({}, edge, { xaxis: "x", yaxis: "y" }), Object.assign({}, edge, { xaxis: "x2", yaxis: "y2", showlegend: false }),
      ], {
        font: FONT, height: 400, margin: { l: 60, r: 20, t: 30, b: 80 }, plot_bgcolor: "#fff",
        xaxis: Object.assign(axes([0, 0.4], "y"), { title: { text: "σ<sub>w</sub>" }, range: xr }),
        yaxis: Object.assign(axes([0, 1], "x"), { title: { text: "σ<sub>b</sub>" }, range: yr }),
        xaxis2: Object.assign(axes([0.55, 0.95], "y2"), { title: { text: "σ<sub>w</sub>" }, range: xr }),
        yaxis2: Object.assign(axes([0, 1], "x2"), { title: { text: "σ<sub>b</sub>" }, range: yr }),
        legend: { orientation: "h", x: 0, y: -0.2 },
        annotations: [
          { text: "log<sub>10</sub> E[mean_sq(h<sup>D</sup>)] at the last layer", x: 0.2, xref: "paper", y: 1, yref: "paper",
            yanchor: "bottom", yshift: 4, showarrow: false },
          { text: "log<sub>10</sub> E|∂L/∂z<sup>1</sup>|² / E|∂L/∂z<sup>D</sup>|²", x: 0.75, xref: "paper", y: 1,
            yref: "paper", yanchor: "bottom", yshift: 4, showarrow: false }],
      }, PLOT_CONFIG);
    });
  }

  /* The extent of heatmap cells centred on `values` (evenly spaced or not). */
  function pad(values) {
    const n = values.length;
    if (n < 2) return [values[0] - 0.5, values[0] + 0.5];
    return [values[0] - (values[1] - values[0]) / 2, values[n - 1] + (values[n - 1] - values[n - 2]) / 2];
  }

  // ------------------------------------------------------------------ tables

  function resultsTable(d, sort, onSort) {
    if (!d.rows.length) {
      return el("div", { class: "empty", text: !d.configs_with_results ?
        "No results yet: a configuration's statistics appear once all of its chunks are done." :
        d.total === 0 ? "No row matches." : "No rows on this page." });
    }
    const primary = sort[0] || "";
    const head = el("tr", {}, d.columns.map((c) => {
      const active = primary.replace(/^-/, "") === c.key;
      const arrow = active ? (primary.startsWith("-") ? "▼" : "▲") : "";
      return el("th", { class: `sortable${c.numeric ? " num" : ""}`, title: c.title || `sort by ${c.key}`,
        "data-key": c.key, onclick: () => onSort(c.key) }, c.label, arrow && el("span", { class: "arrow", text: arrow }));
    }));
    const rows = d.cells.map((cells, i) => el("tr", { title: d.rows[i].config_hash.slice(0, 12) },
      cells.map(([text, cls]) => el("td", { class: cls || null, text }))));
    return el("table", { class: "results" }, el("thead", {}, head), el("tbody", {}, rows));
  }

  // ------------------------------------------------------------------- pages

  function sweepsPage() {
    const selected = new Set();
    const open = new Set();
    const button = $("#compare-selected");
    button.addEventListener("click", () => { location.href = "/compare?ids=" + [...selected].join(","); });
    const render = (sweeps) => {
      const box = $("#sweeps");
      if (!sweeps.length) {
        box.replaceChildren(el("div", { class: "empty" }, "No sweeps in this database yet. Start one with ",
          el("code", { text: "initsweep run examples/quick.yaml" }), "."));
        return;
      }
      const cols = [["", ""], ["#", "num"], ["name", ""], ["status", ""], ["chunks", ""], ["trials", "num"],
        ["trials/s", "num"], ["ETA", "num"], ["workers", ""], ["failed", "num"], ["created", ""]];
      const rows = [];
      for (const s of sweeps) {
        const c = s.counts;
        const check = el("input", { type: "checkbox", "aria-label": `select sweep ${s.id}`, checked: selected.has(s.id),
          onchange: (e) => { e.target.checked ? selected.add(s.id) : selected.delete(s.id); button.disabled = selected.size < 2; } });
        const link = `/sweeps/${s.id}`;
        rows.push(el("tr", { "data-sweep-id": s.id, "data-status": s.status },
          el("td", {}, check),
          el("td", { class: "num" }, el("a", { href: link, text: s.id })),
          el("td", {}, el("a", { href: link, text: s.name })),
          el("td", {}, pill(s.status)),
          el("td", { class: "progress-cell" }, progressBar(c, s.n_chunks),
            el("small", { class: "chunks", "data-done": c.done, "data-total": s.n_chunks },
              `${fmtInt(c.done)}/${fmtInt(s.n_chunks)} done` + (c.running ? ` · ${c.running} running` : "") +
              (c.pending ? ` · ${fmtInt(c.pending)} pending` : ""))),
          el("td", { class: "num trials", "data-done": s.trials_done, text: `${fmtInt(s.trials_done)}/${fmtInt(s.trials_total)}` }),
          el("td", { class: "num", text: s.rate_label }),
          el("td", { class: "num", text: s.eta_label }),
          el("td", { class: "small", text: s.workers.join(", ") || "—" }),
          el("td", { class: c.failed ? "num hot" : "num", text: fmtInt(c.failed) }),
          el("td", { class: "small muted", text: s.created })));
        if (s.failures.length) {
          const details = el("details", { open: open.has(s.id),
            ontoggle: (e) => { e.target.open ? open.add(s.id) : open.delete(s.id); } },
          el("summary", { text: `${fmtInt(c.failed)} failed chunk${c.failed === 1 ? "" : "s"}` +
            (c.failed > s.failures.length ? ` (latest ${s.failures.length})` : "") + " — errors" }),
          failuresList(s.failures));
          rows.push(el("tr", { class: "failures" }, el("td", {}), el("td", { colspan: cols.length - 1 }, details)));
        }
      }
      const head = el("tr", {}, cols.map(([t, cls]) => el("th", { class: cls || null, text: t })));
      box.replaceChildren(el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, head), el("tbody", {}, rows))));
    };
    every(POLL_MS, async () => {
      const d = await api("/api/sweeps");
      const live = d.sweeps.filter((s) => !s.finished).length;
      $("#updated").textContent = `${d.sweeps.length} sweep${d.sweeps.length === 1 ? "" : "s"}` +
        (live ? ` · ${live} in progress` : "") + ` · updated ${clockTime(d.now)} · refreshes every ${POLL_MS / 1000} s`;
      render(d.sweeps);
      body.dataset.ready = "1";
    });
  }

  function sweepPage() {
    const id = body.dataset.sweep;
    const params = new URLSearchParams(location.search);
    const state = { where: params.get("where") || "", stat: "std", maxLines: "20", quantity: "activation",
      layer: "last", offset: 0, limit: 50, sort: [], version: null, status: null, summary: null, detailAt: 0 };
    const filter = $("#filter");
    filter.value = state.where;

    const renderProgress = (d) => {
      const s = d.sweep, c = s.counts;
      const status = $("#status");
      status.className = `pill ${s.status}`;
      status.textContent = s.status;
      $("#subtitle").textContent = `${fmtInt(s.n_configs)} configurations · ${fmtInt(s.n_chunks)} chunks · seed ${s.seed}` +
        ` · created ${s.created}`;
      const stat = (k, v, attrs) => el("div", Object.assign({ class: "stat" }, attrs || {}),
        el("div", { class: "k", text: k }), el("div", { class: "v", text: v }));
      $("#progress").replaceChildren(
        progressBar(c, s.n_chunks),
        el("div", { class: "stats" },
          stat("chunks done", `${fmtInt(c.done)} / ${fmtInt(s.n_chunks)}`, { id: "chunks-done", "data-done": c.done }),
          stat("running", fmtInt(c.running)), stat("pending", fmtInt(c.pending)), stat("failed", fmtInt(c.failed)),
          stat("trials", `${fmtInt(s.trials_done)} / ${fmtInt(s.trials_total)}`, { id: "trials-done", "data-done": s.trials_done }),
          stat("trials/s", s.rate_label), stat("ETA", s.eta_label),
          stat("live workers", s.workers.join(", ") || "—", { class: "stat text" })));
      const card = $("#failures-card");
      card.hidden = !d.failures.length;
      if (d.failures.length) $("#failures").replaceChildren(failuresList(d.failures));
      renderCheck(d.check);
    };

    const renderCheck = (c) => {
      const line = $("#check-summary");
      if (!c.available) {
        line.className = "muted";
        line.textContent = `Not yet: ${c.reason}.`;
        $("#check").replaceChildren();
        return;
      }
      line.className = verdictClass(c);
      line.textContent = c.summary + (c.n_censored_deviations ?
        ` (${fmtInt(c.n_censored_deviations)} of the deviations are censored layers, not listed)` : "");
      if (!c.deviations.length) { $("#check").replaceChildren(); return; }
      const cols = ["configuration", "layer", "quantity", "statistic", "observed ± SE", "predicted", "z", "explanation"];
      const keys = ["config", "layer", "quantity", "statistic", "observed", "predicted", "z", "explanation"];
      const num = new Set(["layer", "observed", "predicted", "z"]);
      $("#check").replaceChildren(el("table", {},
        el("thead", {}, el("tr", {}, cols.map((t, i) => el("th", { class: num.has(keys[i]) ? "num" : null, text: t })))),
        el("tbody", {}, c.deviations.map((r) => el("tr", { class: r.explained ? null : "unexplained" },
          keys.map((k) => el("td", { class: num.has(k) ? "num" : (k === "config" ? "label" : null), title: k === "config" ? r[k] : null,
            text: r[k] })))))),
      ...(c.n_listed > c.deviations.length ? [el("p", { class: "note", text: `${c.deviations.length} of ${c.n_listed} shown.` })] : []));
    };

    const tableWhere = () => [state.where, state.quantity && `quantity=${state.quantity}`,
      state.layer && `layer=${state.layer}`].filter(Boolean).join(" ");

    const loadTable = async () => {
      const d = await api(`/api/sweeps/${id}/results` + query({ where: tableWhere(), sort: state.sort.join(","),
        offset: state.offset, limit: state.limit }));
      $("#results").replaceChildren(resultsTable(d, state.sort, (key) => {
        const cur = state.sort[0] || "";
        state.sort = cur === key ? ["-" + key] : cur === "-" + key ? [] : [key];
        state.offset = 0;
        loadTable().catch(showError);
      }));
      const last = Math.min(d.offset + d.rows.length, d.total);
      $("#page-info").textContent = d.total ? `rows ${fmtInt(d.offset + 1)}–${fmtInt(last)} of ${fmtInt(d.total)}` : "0 rows";
      $("#prev").disabled = d.offset <= 0;
      $("#next").disabled = last >= d.total;
    };

    const loadLayers = async () => {
      const d = await api(`/api/sweeps/${id}/layers` + query({ where: state.where, stat: state.stat, max_lines: state.maxLines }));
      let note = d.total ? `${fmtInt(d.shown)} of ${fmtInt(d.total)} configuration${d.total === 1 ? "" : "s"}` : "";
      if (d.shown < d.total) note += " (narrow them with the filter)";
      if (d.theory_done < d.configs_with_results) {
        note += ` · theory for ${fmtInt(d.theory_done)} of ${fmtInt(d.configs_with_results)} configurations so far (computing)`;
      }
      $("#layers-note").textContent = note;
      drawLayers($("#layers-plot"), d);
    };

    const loadExplosion = async () => {
      const d = await api(`/api/sweeps/${id}/explosion` + query({ where: state.where }));
      drawExplosion($("#explosion-plot"), $("#explosion-note"), d);
    };

    const loadPhase = async () => {
      const card = $("#phase-card");
      card.hidden = !(state.summary && state.summary.has_phase);
      if (card.hidden) return;
      const d = await api(`/api/sweeps/${id}/phase` + query({ where: state.where }));
      drawPhase($("#phase-plot"), $("#phase-note"), d);
    };

    const loadResults = () => Promise.all([loadLayers(), loadExplosion(), loadPhase(), loadTable()]);

    const loadDetail = async () => {
      const d = await api(`/api/sweeps/${id}`);
      state.detailAt = Date.now();
      renderProgress(d);
      state.summary = d.results;
      $("#spec").textContent = d.spec_yaml;
      $("#provenance").replaceChildren(...d.provenance.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
      $("#filter-columns").textContent = "Columns: " + d.results.filter_columns.join(", ") + ".";
      const layer = $("#layer");
      if (layer.options.length < 3 + d.results.max_depth) {
        const keep = layer.value;
        layer.replaceChildren(el("option", { value: "", text: "all" }), el("option", { value: "last", text: "last" }),
          ...Array.from({ length: d.results.max_depth + 1 }, (_, l) => el("option", { value: String(l), text: String(l) })));
        layer.value = keep;
      }
      return d;
    };

    const apply = () => {
      state.where = filter.value.trim();
      state.offset = 0;
      const url = new URL(location.href);
      if (state.where) url.searchParams.set("where", state.where); else url.searchParams.delete("where");
      history.replaceState(null, "", url);
      loadResults().then(clearError, showError);
    };
    $("#filter-form").addEventListener("submit", (e) => { e.preventDefault(); apply(); });
    $("#filter-clear").addEventListener("click", () => { filter.value = ""; apply(); });
    $("#stat").addEventListener("change", (e) => { state.stat = e.target.value; loadLayers().catch(showError); });
    $("#max-lines").addEventListener("change", (e) => { state.maxLines = e.target.value; loadLayers().catch(showError); });
    $("#quantity").addEventListener("change", (e) => { state.quantity = e.target.value; state.offset = 0; loadTable().catch(showError); });
    $("#layer").addEventListener("change", (e) => { state.layer = e.target.value; state.offset = 0; loadTable().catch(showError); });
    $("#page-size").addEventListener("change", (e) => { state.limit = parseInt(e.target.value, 10); state.offset = 0; loadTable().catch(showError); });
    $("#prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); loadTable().catch(showError); });
    $("#next").addEventListener("click", () => { state.offset += state.limit; loadTable().catch(showError); });

    every(() => (state.status && !["running", "pending"].includes(state.status) ? 5 * POLL_MS : POLL_MS), async () => {
      if (state.version === null) {
        const d = await loadDetail();
        state.version = d.version;
        state.status = d.sweep.status;
        await loadResults();
        body.dataset.ready = "1";
        return;
      }
      const d = await api(`/api/sweeps/${id}/progress`);
      renderProgress(d);
      if (["running", "pending"].includes(d.sweep.status) && Date.now() - state.detailAt > 15000) {
        // provenance follows a running sweep now and then
        await loadDetail();
      }
      if (d.version !== state.version || d.sweep.status !== state.status) {
        state.version = d.version;
        state.status = d.sweep.status;
        await loadDetail();
        await loadResults();
      }
    });
  }

  function comparePage() {
    const ids = (body.dataset.sweeps || "").split(",").filter(Boolean);
    const state = { stat: "std", where: "" };
    if (ids.length < 2) {
      $("#picker").hidden = false;
      const chosen = new Set();
      const go = $("#picker-go");
      go.addEventListener("click", () => { location.href = "/compare?ids=" + [...chosen].join(","); });
      api("/api/sweeps").then((d) => {
        $("#picker-list").replaceChildren(d.sweeps.length ? el("ul", { class: "fails" }, d.sweeps.map((s) => el("li", {},
          el("label", {}, el("input", { type: "checkbox", onchange: (e) => {
            e.target.checked ? chosen.add(s.id) : chosen.delete(s.id); go.disabled = chosen.size < 2; } }),
          ` sweep ${s.id} · ${s.name} `, pill(s.status))))) : el("p", { class: "muted", text: "No sweeps yet." }));
      }, showError);
      return;
    }
    $("#compare-body").hidden = false;
    const render = (d) => {
      $("#subtitle").textContent = d.sweeps.map((s) => `${s.id}: ${s.name}`).join(" · ");
      const cols = ["sweep", "name", "status", "configurations", "with results", "chunks", "trials", "theory check", "created"];
      $("#compare-summary").replaceChildren(el("table", {},
        el("thead", {}, el("tr", {}, cols.map((c, i) => el("th", { class: [0, 3, 4, 6].includes(i) ? "num" : null, text: c })))),
        el("tbody", {}, d.sweeps.map((s) => el("tr", { "data-sweep-id": s.id },
          el("td", { class: "num" }, el("a", { href: `/sweeps/${s.id}`, text: s.id })),
          el("td", {}, el("a", { href: `/sweeps/${s.id}`, text: s.name })),
          el("td", {}, pill(s.status)),
          el("td", { class: "num", text: fmtInt(s.n_configs) }),
          el("td", { class: "num", text: fmtInt(s.results.configs_with_results) }),
          el("td", { class: "progress-cell" }, progressBar(s.counts, s.n_chunks),
            el("small", { text: `${fmtInt(s.counts.done)}/${fmtInt(s.n_chunks)} done` })),
          el("td", { class: "num", text: `${fmtInt(s.trials_done)}/${fmtInt(s.trials_total)}` }),
          el("td", { class: !s.check.available ? "small muted" : verdictClass(s.check),
            title: s.check.available ? s.check.summary : s.check.reason,
            text: !s.check.available ? "pending" : s.check.passed ? `ok · ${fmtInt(s.check.n_deviations)} beyond |z| > 4, all explained` :
              s.check.verdict === "FAILED" ? `FAILED · ${fmtInt(s.check.n_unexplained)} unexplained` : s.check.verdict.toLowerCase() }),
          el("td", { class: "small muted", text: s.created }))))));
      const quantities = ["activation", "gradient"].filter((q) => d.sweeps.some((s) => s.layers.quantities.includes(q)));
      const log = d.sweeps.length && d.sweeps[0].layers.log;
      const ranges = {};
      for (const q of quantities) ranges[q] = axisRange([].concat(...d.sweeps.map((s) => seriesValues(s.layers.series, q))), log);
      const box = $("#compare-plots");
      if (box.children.length !== d.sweeps.length) {
        box.replaceChildren(...d.sweeps.map((s) => el("div", { class: "column" },
          el("h3", {}, el("a", { href: `/sweeps/${s.id}`, text: `sweep ${s.id} · ${s.name}` })),
          el("p", { class: "note" }), el("div", { class: "plot" }))));
      }
      d.sweeps.forEach((s, i) => {
        const col = box.children[i];
        col.querySelector(".note").textContent = s.layers.total ?
          `${fmtInt(s.layers.shown)} of ${fmtInt(s.layers.total)} configurations` : "";
        drawLayers(col.querySelector(".plot"), s.layers, { quantities, stacked: true, ranges,
          height: 300 * Math.max(1, quantities.length) + 40 + 16 * Math.min(s.layers.series.length, 12) });
      });
      $("#matched-note").textContent = d.n_matched ?
        `${fmtInt(d.n_matched)} configurations (same config_hash) in more than one sweep: ${STAT_TITLES[d.stat]} of the ` +
        "activations at the last layer, ± SE, and z of each difference from the first sweep (|z| > 4 in red)." +
        (d.matched.length < d.n_matched ? ` Largest ${d.matched.length} differences shown.` : "") :
        "No configuration appears in more than one of these sweeps (configurations match by content: " +
        "scheme, activation, depth, width, dtype, bias, sampler).";
      const zCols = d.sweep_ids.slice(1);
      $("#matched").replaceChildren(d.matched.length ? el("table", {},
        el("thead", {}, el("tr", {}, el("th", { text: "configuration" }),
          d.sweep_ids.map((s) => el("th", { class: "num", text: `sweep ${s}` })),
          zCols.map((s) => el("th", { class: "num", text: `z (${s} vs ${d.sweep_ids[0]})` })))),
        el("tbody", {}, d.matched.map((r) => el("tr", {},
          el("td", { class: "label", title: r.label, text: r.label }),
          d.sweep_ids.map((s) => el("td", { class: "num", text: r.cells[String(s)] })),
          zCols.map((s) => {
            const z = r.z[String(s)];
            return el("td", { class: z !== undefined && z !== null && Math.abs(z) > 4 ? "num hot" : "num",
              text: z === undefined || z === null ? "—" : (z > 0 ? "+" : "") + z.toFixed(1) });
          }))))) : el("div"));
    };
    const load = async () => {
      const d = await api("/api/compare" + query({ ids: ids.join(","), stat: state.stat, where: state.where }));
      render(d);
      body.dataset.ready = "1";
      return d;
    };
    $("#stat").addEventListener("change", (e) => { state.stat = e.target.value; load().catch(showError); });
    $("#filter").addEventListener("change", (e) => { state.where = e.target.value.trim(); load().catch(showError); });
    let live = true;
    every(() => (live ? POLL_MS : 10 * POLL_MS), async () => {
      const d = await load();
      live = d.sweeps.some((s) => !s.finished);
    });
  }

  const pagesByKind = { sweeps: sweepsPage, sweep: sweepPage, compare: comparePage };
  const start = pagesByKind[body.dataset.page];
  if (start) start();
})();
