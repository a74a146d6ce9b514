/* Staff's system page: polls GET /api/performance/system and draws its figures as line charts (SVG). */
"use strict";

(function () {
  const X = window.Exchange;
  const root = document.getElementById("figures");
  if (!root) return;
  const KEEP = 300;  // 5 minutes at one sample a second
  const history = [];
  const state = document.getElementById("system-state");

  function stage(figures, name) {
    for (const shard of figures.shards) if (shard.stages && shard.stages[name]) return shard.stages[name];
    return figures.stages[name] || null;
  }

  function sample(figures) {
    const ack = figures.stages["bus.ack_sync"] || figures.stages["bus.ack_async"] || stage(figures, "matcher.apply") || null;
    const batches = figures.shards.map((s) => s.batch_size).filter(Boolean);
    return {
      rate1: figures.throughput.last_1s || 0,
      rate10: figures.throughput.last_10s || 0,
      p50: ack ? ack.p50 : 0,
      p99: ack ? ack.p99 : 0,
      queue: figures.shards.reduce((sum, s) => sum + (s.queue_depth || 0), 0),
      batchMean: batches.length ? batches[0].mean : 0,
      batchP99: batches.length ? batches[0].p99 : 0,
    };
  }

  function draw(id, series) {
    const svg = document.getElementById(id);
    const top = Math.max(1, ...series.flatMap((s) => history.map((h) => h[s.key])));
    const lines = series.map((s) => {
      const points = history.map((h, i) => {
        const x = history.length < 2 ? 300 : (i / (history.length - 1)) * 300;
        const y = 98 - (h[s.key] / top) * 94;
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      }).join(" ");
      return `<polyline fill="none" stroke="${s.color}" stroke-width="1.5" vector-effect="non-scaling-stroke" points="${points}"/>`;
    });
    svg.innerHTML = `<line x1="0" y1="98" x2="300" y2="98" stroke="#262c34"/>` + lines.join("");
    svg.dataset.samples = String(history.length);
    const scale = svg.parentElement.querySelector(".scale");
    if (scale) scale.textContent = `top of chart: ${top.toLocaleString(undefined, { maximumFractionDigits: 1 })}`;
  }

  function stagesTable(figures) {
    const rows = [];
    const add = (prefix, stages) => {
      for (const [name, s] of Object.entries(stages || {})) rows.push([prefix + name, s]);
    };
    add("", figures.stages);
    for (const shard of figures.shards) add(`shard ${shard.shard} `, shard.stages);
    const fmt = (n) => (typeof n === "number" ? n.toLocaleString(undefined, { maximumFractionDigits: 1 }) : "—");
    document.querySelector("#stages tbody").replaceChildren(...rows.map(([name, s]) => X.el("tr", {},
      X.el("th", { scope: "row", text: name }), X.el("td", { class: "num", text: fmt(s.count) }),
      X.el("td", { class: "num", text: fmt(s.p50) }), X.el("td", { class: "num", text: fmt(s.p90) }),
      X.el("td", { class: "num", text: fmt(s.p99) }), X.el("td", { class: "num", text: fmt(s.p999) }),
      X.el("td", { class: "num", text: fmt(s.max) }), X.el("td", { class: "muted", text: s.unit }))));
  }

  function micros(us) {
    return us >= 1000 ? `${(us / 1000).toFixed(1)} ms` : `${Math.round(us)} µs`;
  }

  async function poll() {
    try {
      const figures = await X.api("GET", root.dataset.source);
      history.push(sample(figures));
      if (history.length > KEEP) history.shift();
      const last = history.at(-1);
      document.getElementById("now-throughput").textContent = `${last.rate10.toLocaleString()} /s`;
      document.getElementById("now-ack").textContent = `p50 ${micros(last.p50)} · p99 ${micros(last.p99)}`;
      document.getElementById("now-queue").textContent = String(last.queue);
      document.getElementById("now-batch").textContent = last.batchMean ? last.batchMean.toFixed(1) : "—";
      draw("chart-throughput", [{ key: "rate1", color: "#0ecb81" }, { key: "rate10", color: "#5ea3ff" }]);
      draw("chart-ack", [{ key: "p50", color: "#0ecb81" }, { key: "p99", color: "#f0b90b" }]);
      draw("chart-queue", [{ key: "queue", color: "#f6465d" }]);
      draw("chart-batch", [{ key: "batchMean", color: "#5ea3ff" }, { key: "batchP99", color: "#f0b90b" }]);
      stagesTable(figures);
      state.textContent = `${figures.mode} mode · ${figures.shards.length} shard(s) · up ${Math.round(figures.uptime_seconds)} s`;
      state.dataset.state = "live";
    } catch (error) {
      state.textContent = `Cannot read the figures (${error.message}); retrying…`;
      state.dataset.state = "down";
    }
    setTimeout(poll, 1000);
  }
  poll();
})();
