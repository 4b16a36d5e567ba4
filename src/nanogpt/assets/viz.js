/* nanogpt viz: renders the data embedded in #nanogpt-data. Vanilla JS, no network.
   User text (prompt tokens, paths) only ever goes into the page through textContent. */
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("nanogpt-data").textContent);
  const SVGNS = "http://www.w3.org/2000/svg";  // a namespace name, not a resource
  const A = D.attention;  // null without --prompt
  const nodes = new Map(), parentOf = new Map();
  (function index(n, p) { nodes.set(n.id, n); parentOf.set(n.id, p); n.children.forEach(c => index(c, n.id)); })(D.arch, null);

  // ---- small helpers -------------------------------------------------------------------------
  function el(tag, attrs, ...kids) {
    const e = tag.startsWith("svg:") ? document.createElementNS(SVGNS, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = v;
      else if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
      else e.setAttribute(k, v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k);
    return e;
  }
  const fmt = n => Number(n).toLocaleString("en-US");
  function human(n) {
    for (const [u, d] of [["B", 1e9], ["M", 1e6], ["K", 1e3]]) if (Math.abs(n) >= d) return (n / d).toPrecision(3) + u;
    return String(n);
  }
  const show = s => s.replace(/ /g, "\u2423").replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5").replace(/\r/g, "\u240d");
  function kindOf(id) {
    if (/^(tokens|wte|wpe|embed-sum)$/.test(id)) return "embed";
    if (/^(ln_f|lm_head|logits)$/.test(id)) return "out";
    if (/^block-\d+$/.test(id)) return "block";
    if (/-head-\d+$/.test(id)) return "head";
    if (/-ln_\d$/.test(id)) return "norm";
    if (/-res\d$/.test(id)) return "res";
    if (/-(mlp|fc|gelu|mlp-proj)$/.test(id)) return "mlp";
    if (/^block-\d+-/.test(id)) return "attn";
    return "block";
  }

  // ---- tooltip -----------------------------------------------------------------------------------
  const tip = document.getElementById("tooltip");
  function showTip(ev, text) {
    tip.textContent = text; tip.hidden = false;
    const w = tip.offsetWidth, h = tip.offsetHeight;
    let x = ev.clientX + 14, y = ev.clientY + 14;
    if (x + w > innerWidth - 8) x = ev.clientX - w - 14;
    if (y + h > innerHeight - 8) y = ev.clientY - h - 14;
    tip.style.left = x + "px"; tip.style.top = y + "px";
  }
  const hideTip = () => { tip.hidden = true; };

  // ---- colour ------------------------------------------------------------------------------------
  // A sequential palette from near-white through amber to deep red: 0 fades into the page.
  const STOPS = [[255, 252, 240], [254, 217, 142], [253, 141, 60], [217, 72, 1], [127, 39, 4]];
  function colour(v) {
    const t = Math.max(0, Math.min(1, Math.sqrt(v)));  // sqrt: small weights stay visible
    const x = t * (STOPS.length - 1), i = Math.min(STOPS.length - 2, Math.floor(x)), f = x - i;
    const c = STOPS[i].map((a, j) => Math.round(a + f * (STOPS[i + 1][j] - a)));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }
  function legend() {
    const stops = [0, .05, .15, .3, .5, .75, 1].map(v => `${colour(v)} ${Math.round(Math.sqrt(v) * 100)}%`).join(",");
    return el("div", { class: "legend" }, "0", el("span", { class: "bar", style: `background:linear-gradient(90deg,${stops})` }), "1",
      el("span", { text: "  (attention weight; colour scale is square-root so faint links show)" }));
  }

  // ---- header and section nav ---------------------------------------------------------------------
  const c = D.config;
  document.getElementById("model-title").textContent = D.source;
  const chips = document.getElementById("chips");
  for (const [k, v] of [["params", human(D.params.total)], ["layers", c.n_layer], ["heads", c.n_head],
    ["n_embd", c.n_embd], ["block_size", c.block_size], ["vocab", fmt(c.vocab_size)]])
    chips.append(el("span", { class: "chip" }, k + " ", el("b", { text: String(v) })));
  const nav = document.getElementById("section-nav");
  const sections = [["sec-arch", "Architecture", true], ["sec-attn", "Attention", !!A], ["sec-pred", "Predictions", !!A],
    ["sec-train", "Training", !!D.metrics]];
  for (const [id, name, on] of sections) {
    if (!on) continue;
    document.getElementById(id).hidden = false;
    nav.append(el("a", { href: "#" + id, "data-testid": "nav-" + id, text: name }));
  }

  // ---- boxes --------------------------------------------------------------------------------------
  function box(n, extraClass) {
    const k = kindOf(n.id);
    const b = el("button", { type: "button", class: `box k-${k} ${extraClass || ""}`, "data-testid": "box-" + n.id,
      "data-node": n.id, "data-params": String(n.params), title: "click to open",
      on: { click: () => select(n.id) } },
    n.children.length ? el("span", { class: "more", text: "open \u203a" }) : null,
    el("div", { class: "lbl", text: n.label }),
    el("div", { class: "shp", text: n.shape }),
    el("div", { class: "prm" + (n.params ? "" : " zero"), "data-testid": "params-" + n.id,
      text: n.params ? fmt(n.params) + " params" : (n.id === "lm_head" ? "+0 params (tied)" : "no params") }));
    return b;
  }
  const arrow = () => el("div", { class: "arrow", "aria-hidden": "true" });

  const stack = document.getElementById("stack");
  D.arch.children.forEach((n, i) => { if (i) stack.append(arrow()); stack.append(box(n, "top")); });

  // ---- heatmaps -----------------------------------------------------------------------------------
  const probsOf = (layer, head) => A.probs[layer][head];  // rows of length i + 1
  function thumb(layer, head, px) {
    const T = A.T, cv = el("canvas", { class: "thumb", width: T, height: T, "data-testid": `thumb-canvas-${layer}-${head}` });
    if (px) cv.style.width = cv.style.height = px + "px";
    const ctx = cv.getContext("2d"), rows = probsOf(layer, head);
    ctx.fillStyle = "#eceef3"; ctx.fillRect(0, 0, T, T);
    rows.forEach((row, i) => row.forEach((v, j) => { ctx.fillStyle = colour(v); ctx.fillRect(j, i, 1, 1); }));
    return cv;
  }
  function heatmap(layer, head) {
    const T = A.T, toks = A.tokens.map(show), rows = probsOf(layer, head);
    const cell = Math.max(9, Math.min(30, Math.floor(560 / T)));
    const lab = Math.min(110, 16 + 7 * Math.max(...toks.map(t => Math.min(t.length, 12))));
    const W = lab + T * cell + 4, H = lab + T * cell + 4;
    const svg = el("svg:svg", { class: "heat", width: W, height: H, viewBox: `0 0 ${W} ${H}`,
      "data-testid": "heatmap", "data-layer": layer, "data-head": head, role: "img",
      "aria-label": `attention of layer ${layer} head ${head}` });
    const clip = s => (s.length > 12 ? s.slice(0, 11) + "\u2026" : s);
    toks.forEach((t, i) => {
      svg.append(el("svg:text", { x: lab - 6, y: lab + i * cell + cell / 2 + 4, "text-anchor": "end", text: clip(t) }));
      svg.append(el("svg:text", { transform: `translate(${lab + i * cell + cell / 2 + 4},${lab - 6}) rotate(-60)`, text: clip(t) }));
    });
    svg.append(el("svg:rect", { x: lab, y: lab, width: T * cell, height: T * cell, fill: "#f1f2f6" }));
    rows.forEach((row, i) => row.forEach((v, j) => {
      const r = el("svg:rect", { class: "cell", x: lab + j * cell, y: lab + i * cell, width: cell - 1, height: cell - 1,
        fill: colour(v), "data-i": i, "data-j": j, "data-p": v });
      r.addEventListener("mousemove", ev => showTip(ev,
        `query  ${i} ${JSON.stringify(A.tokens[i])}\nkey    ${j} ${JSON.stringify(A.tokens[j])}\nweight ${v.toFixed(4)}`));
      r.addEventListener("mouseleave", hideTip);
      svg.append(r);
    }));
    return el("div", { class: "heat-wrap" }, svg);
  }

  // ---- the detail panel ---------------------------------------------------------------------------
  const detail = document.getElementById("detail");
  function pathTo(id) { const p = []; for (let x = id; x; x = parentOf.get(x)) p.unshift(x); return p; }

  function select(id, noScroll) {
    if (!nodes.has(id)) id = "model";
    const n = nodes.get(id), path = pathTo(id), k = kindOf(id);
    stack.querySelectorAll(".box").forEach(b => b.classList.toggle("active", path.includes(b.dataset.node)));
    detail.replaceChildren();
    detail.className = `detail k-${k}`;
    detail.dataset.node = id;
    const crumbs = el("div", { class: "crumbs", "data-testid": "breadcrumbs" });
    path.forEach((pid, i) => {
      if (i) crumbs.append(el("span", { class: "sep", text: "\u203a" }));
      const lbl = nodes.get(pid).label;
      crumbs.append(i === path.length - 1 ? el("span", { class: "here", text: lbl })
        : el("button", { type: "button", "data-testid": "crumb-" + pid, text: lbl, on: { click: () => select(pid) } }));
    });
    detail.append(crumbs,
      el("h3", { "data-testid": "detail-title" }, el("span", { class: "dot" }), n.label),
      el("div", { class: "badges" }, el("span", { class: "badge mono", "data-testid": "detail-shape", text: n.shape }),
        el("span", { class: "badge", "data-testid": "detail-params", "data-params": String(n.params),
          text: n.params ? `${fmt(n.params)} parameters (${(100 * n.params / D.params.total).toFixed(1)}% of the model)` : "no parameters" })),
      el("p", { class: "explain", "data-testid": "detail-explain", text: n.explain }));
    if (n.kind === "head") headView(n);
    else if (n.kind === "heads") headsView(n);
    else if (n.children.length) {
      detail.append(el("h4", { text: id === "model" ? "the stack" : "inside" }));
      const flow = el("div", { class: "flow" + (/^block-\d+$/.test(id) ? " residual" : ""), "data-testid": "flow" });
      n.children.forEach((ch, i) => {
        if (i) flow.append(arrow());
        flow.append(box(ch));
        if (ch.kind === "heads" && A) flow.append(headChips(ch.layer));
      });
      detail.append(flow);
      if (/^block-\d+$/.test(id)) detail.append(el("p", { class: "note",
        text: "The teal line is the residual stream: both sub-layers read a normalised copy of x and add their result back." }));
    }
    extras(n);
    if (location.hash.slice(1) !== id) history.replaceState(null, "", "#" + id);
    if (!noScroll && detail.getBoundingClientRect().top < 0) detail.scrollIntoView({ block: "start" });
  }

  function headChips(layer) {
    const row = el("div", { class: "heads-row", "data-testid": `heads-row-${layer}` });
    for (let h = 0; h < c.n_head; h++)
      row.append(el("button", { type: "button", class: "headchip", "data-testid": `headchip-${layer}-${h}`, title: `layer ${layer}, head ${h}`,
        on: { click: () => select(`block-${layer}-head-${h}`) } }, thumb(layer, h), `h${h}`));
    return row;
  }

  function headsView(n) {
    detail.append(el("h4", { text: `the ${c.n_head} heads of layer ${n.layer}` }));
    const row = el("div", { class: "heads-row" });
    n.children.forEach(h => row.append(A ? el("button", { type: "button", class: "headchip", "data-testid": `headchip-${n.layer}-${h.head}`,
      on: { click: () => select(h.id) } }, thumb(n.layer, h.head, 72), h.label) : box(h)));
    detail.append(row);
    if (!A) detail.append(el("p", { class: "note", text: "Run nanogpt viz on a checkpoint with --prompt to see each head's pattern." }));
  }

  function headView(n) {
    const L = n.layer, H = n.head;
    const nav = el("div", { class: "headnav" });
    const go = (l, h) => select(`block-${l}-head-${h}`);
    nav.append(
      el("button", { type: "button", class: "btn", "data-testid": "prev-head", text: "\u2039 prev head", disabled: H === 0 ? "" : null, on: { click: () => go(L, H - 1) } }),
      el("button", { type: "button", class: "btn", "data-testid": "next-head", text: "next head \u203a", disabled: H === c.n_head - 1 ? "" : null, on: { click: () => go(L, H + 1) } }),
      el("button", { type: "button", class: "btn", "data-testid": "prev-layer", text: "layer \u2191", disabled: L === 0 ? "" : null, on: { click: () => go(L - 1, H) } }),
      el("button", { type: "button", class: "btn", "data-testid": "next-layer", text: "layer \u2193", disabled: L === c.n_layer - 1 ? "" : null, on: { click: () => go(L + 1, H) } }));
    detail.append(nav);
    if (!A) { detail.append(el("p", { class: "note", text: "No prompt was given, so there is no pattern to show. Run: nanogpt viz CHECKPOINT --prompt \"some text\"" })); return; }
    detail.append(el("h4", { text: `attention pattern, layer ${L} head ${H} (rows: queries, columns: keys)` }), legend(), heatmap(L, H));
    // A one-line reading of the pattern: where the last token looks most.
    const rows = probsOf(L, H), last = rows[rows.length - 1];
    let jm = 0; last.forEach((v, j) => { if (v > last[jm]) jm = j; });
    let diag = 0, prev = 0; rows.forEach((r, i) => { diag += r[i]; if (i) prev += r[i - 1]; });
    detail.append(el("p", { class: "note", "data-testid": "head-reading", text:
      `The last token puts ${(100 * last[jm]).toFixed(0)}% of its attention on token ${jm} (${JSON.stringify(A.tokens[jm])}). ` +
      `Average weight on itself: ${(100 * diag / rows.length).toFixed(0)}%; on the previous token: ${(rows.length > 1 ? 100 * prev / (rows.length - 1) : 0).toFixed(0)}%.` }));
  }

  function extras(n) {
    if (/-mask$/.test(n.id)) {
      const T = A ? Math.min(A.T, 12) : 8, g = el("div", { class: "mask-demo", style: `grid-template-columns:repeat(${T},18px)` });
      for (let i = 0; i < T; i++) for (let j = 0; j < T; j++) g.append(el("div", { class: j <= i ? "ok" : "no", title: `query ${i}, key ${j}: ${j <= i ? "visible" : "masked (-inf)"}` }));
      detail.append(el("h4", { text: `the mask for ${T} tokens (green: visible, red: -inf)` }), g);
    }
    if (n.id === "tokens" && A) {
      const line = el("div", { class: "promptline", "data-testid": "prompt-tokens" });
      A.tokens.forEach((t, i) => line.append(el("span", { class: "tok", title: `position ${i}, id ${A.ids[i]}`, text: show(t) })));
      detail.append(el("h4", { text: `your prompt: ${A.T} tokens` }), line);
    }
    if ((n.id === "logits" || n.id === "lm_head") && A)
      detail.append(el("p", { class: "note" }, "See ", el("a", { href: "#sec-pred", text: "Next-token predictions" }), " for what this model predicts at each position of your prompt."));
  }

  // ---- attention overview grid ---------------------------------------------------------------------
  if (A) {
    const grid = document.getElementById("attn-grid");
    grid.style.gridTemplateColumns = `max-content repeat(${c.n_head}, max-content)`;
    grid.append(el("div"));
    for (let h = 0; h < c.n_head; h++) grid.append(el("div", { class: "collbl", text: "head " + h }));
    for (let l = 0; l < c.n_layer; l++) {
      grid.append(el("div", { class: "rowlbl", text: "layer " + l }));
      for (let h = 0; h < c.n_head; h++)
        grid.append(el("button", { type: "button", class: "headchip", "data-testid": `thumb-${l}-${h}`, title: `layer ${l}, head ${h}: click to open`,
          on: { click: () => { select(`block-${l}-head-${h}`, true); document.getElementById("sec-arch").scrollIntoView(); } } }, thumb(l, h)));
    }
    // ---- predictions table ---------------------------------------------------------------------------
    const tbl = el("table", { class: "pred-table", "data-testid": "pred-table" });
    tbl.append(el("tr", {}, el("th", { text: "pos" }), el("th", { text: "token" }), el("th", { text: "actually next" }), el("th", { text: "model's top guesses" })));
    A.predictions.forEach((cands, i) => {
      const next = i + 1 < A.T ? A.ids[i + 1] : null;
      const cs = el("div", { class: "cands" });
      cands.forEach(cd => cs.append(el("div", { class: "cand" + (cd.id === next ? " hit" : ""), title: `id ${cd.id}: p = ${cd.p.toFixed(4)}` },
        el("div", { class: "bar", style: `width:${(100 * cd.p).toFixed(1)}%` }), el("span", { text: show(cd.token) }), el("span", { class: "pp", text: (100 * cd.p).toFixed(1) + "%" }))));
      tbl.append(el("tr", { "data-testid": "pred-row-" + i }, el("td", { text: String(i) }), el("td", {}, el("span", { class: "tok", text: show(A.tokens[i]) })),
        el("td", {}, next === null ? el("span", { class: "note", text: "(end of prompt)" }) : el("span", { class: "tok", text: show(A.tokens[i + 1]) })), el("td", {}, cs)));
    });
    document.getElementById("predictions").append(tbl);
  }

  // ---- loss chart -----------------------------------------------------------------------------------
  function niceTicks(lo, hi, n) {
    const span = hi - lo || 1, step0 = span / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
    const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => span / s <= n) || 10 * mag;
    const out = []; for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) out.push(v);
    return out;
  }
  function chart(xi) {
    const M = D.metrics, W = 860, H = 340, pl = 58, pr = 16, pt = 14, pb = 44;
    const series = [
      { name: "train", colour: "#7ea3e6", w: 1.3, pts: M.train.map(r => [r[xi], r[2]]) },
      { name: "train (at eval)", colour: "#2f9e74", w: 2, dash: "5 4", pts: M.eval.filter(r => r[2] !== null).map(r => [r[xi], r[2]]), dots: true },
      { name: "val", colour: "#d6457a", w: 2.2, pts: M.eval.map(r => [r[xi], r[3]]), dots: true }].filter(s => s.pts.length);
    const all = series.flatMap(s => s.pts);
    const xs = all.map(p => p[0]), ys = all.map(p => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs) > x0 ? Math.max(...xs) : x0 + 1;
    const yl = Math.min(...ys), yh = Math.max(...ys), pad = (yh - yl) * 0.06 || 0.1, y0 = yl - pad, y1 = yh + pad;
    const X = v => pl + (v - x0) / (x1 - x0) * (W - pl - pr), Y = v => pt + (y1 - v) / (y1 - y0) * (H - pt - pb);
    const svg = el("svg:svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, width: "100%", "data-testid": "loss-svg", "data-x": xi ? "tokens" : "steps" });
    const g = el("svg:g", { class: "grid" });
    for (const t of niceTicks(y0, y1, 6)) { g.append(el("svg:line", { x1: pl, x2: W - pr, y1: Y(t), y2: Y(t) })); svg.append(el("svg:text", { x: pl - 6, y: Y(t) + 4, "text-anchor": "end", text: t.toFixed(2) })); }
    for (const t of niceTicks(x0, x1, 7)) { g.append(el("svg:line", { x1: X(t), x2: X(t), y1: pt, y2: H - pb })); svg.append(el("svg:text", { x: X(t), y: H - pb + 16, "text-anchor": "middle", text: human(t) })); }
    svg.prepend(g);
    svg.append(el("svg:text", { x: (pl + W - pr) / 2, y: H - 6, "text-anchor": "middle", text: xi ? "tokens seen" : "step" }),
      el("svg:text", { transform: `translate(14,${(pt + H - pb) / 2}) rotate(-90)`, "text-anchor": "middle", text: "loss" }));
    series.forEach((s, k) => {
      svg.append(el("svg:polyline", { fill: "none", stroke: s.colour, "stroke-width": s.w, "stroke-dasharray": s.dash || null,
        points: s.pts.map(p => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(" "), "data-testid": "series-" + s.name.split(" ")[0] + (s.dash ? "-eval" : "") }));
      if (s.dots) s.pts.forEach(p => svg.append(el("svg:circle", { cx: X(p[0]), cy: Y(p[1]), r: 3, fill: s.colour })));
      const lx = pl + 14 + k * 150;
      svg.append(el("svg:line", { x1: lx, x2: lx + 22, y1: pt + 8, y2: pt + 8, stroke: s.colour, "stroke-width": 3, "stroke-dasharray": s.dash || null }),
        el("svg:text", { x: lx + 28, y: pt + 12, text: s.name }));
    });
    const guide = el("svg:line", { y1: pt, y2: H - pb, stroke: "#9aa3b2", "stroke-dasharray": "3 3", visibility: "hidden" });
    svg.append(guide);
    svg.addEventListener("mousemove", ev => {
      const r = svg.getBoundingClientRect(), vx = x0 + ((ev.clientX - r.left) * W / r.width - pl) / (W - pl - pr) * (x1 - x0);
      const lines = [];
      let gx = null;
      for (const s of series) {
        let best = s.pts[0]; for (const p of s.pts) if (Math.abs(p[0] - vx) < Math.abs(best[0] - vx)) best = p;
        if (gx === null) gx = best[0];
        lines.push(`${s.name.padEnd(16)} ${best[1].toFixed(4)}  @ ${xi ? "tokens" : "step"} ${fmt(best[0])}`);
      }
      guide.setAttribute("x1", X(gx)); guide.setAttribute("x2", X(gx)); guide.setAttribute("visibility", "visible");
      showTip(ev, lines.join("\n"));
    });
    svg.addEventListener("mouseleave", () => { hideTip(); guide.setAttribute("visibility", "hidden"); });
    document.getElementById("loss-chart").replaceChildren(svg);
  }
  if (D.metrics) {
    const tb = document.getElementById("xaxis-toolbar");
    const bs = [["steps", 0], ["tokens", 1]].map(([name, xi]) => el("button", { type: "button", class: "btn", "data-testid": "xaxis-" + name, text: "vs " + name,
      on: { click: () => { bs.forEach(b => b.classList.remove("on")); bs[xi].classList.add("on"); chart(xi); } } }));
    tb.append(...bs);
    bs[0].classList.add("on");
    chart(0);
  }

  select(decodeURIComponent(location.hash.slice(1)) || "model", true);
  document.body.dataset.ready = "1";  // for tests: rendering finished without an error
})();
