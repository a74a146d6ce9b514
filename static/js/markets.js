/* The markets page: rows refreshed from the server's fragment (GET /markets/rows) every few seconds,
   and between refreshes from the WebSocket's tickers when it is up. */
"use strict";

(function () {
  const X = window.Exchange;
  const table = document.getElementById("markets");
  const state = document.getElementById("feed-state");
  if (!table) return;
  const body = table.tBodies[0];
  const symbols = [...body.querySelectorAll("tr[data-symbol]")].map((row) => row.dataset.symbol);
  let live = false;

  async function refresh() {
    try {
      const response = await fetch(table.dataset.rows, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const html = await response.text();
      const focused = document.activeElement && document.activeElement.closest("tr[data-symbol]");
      const keep = focused ? focused.dataset.symbol : null;
      body.innerHTML = html;
      if (keep) {
        const again = body.querySelector(`tr[data-symbol="${keep}"] a.symbol`);
        if (again) again.focus();
      }
      if (!live) state.textContent = "Updating every few seconds";
    } catch (error) {
      state.textContent = "Cannot reach the exchange; retrying…";
    }
  }

  function ticker(message) {
    const row = body.querySelector(`tr[data-symbol="${message.symbol}"]`);
    if (!row) return;
    const set = (field, text) => {
      const cell = row.querySelector(`[data-field="${field}"]`);
      if (cell) cell.textContent = text;
    };
    if (message.last) set("last", message.last);
    if (message.bid || message.ask) set("quote", `${message.bid || "—"} / ${message.ask || "—"}`);
    if (message.high) set("high", message.high);
    if (message.low) set("low", message.low);
    if (message.volume !== undefined) set("volume", message.volume);
    if (message.last && message.open) {
      const change = X.subtract(message.last, message.open);
      row.dataset.direction = change.startsWith("-") ? "down" : /[1-9]/.test(change) ? "up" : "flat";
      const pct = Number(message.open) ? (Number(change) * 100 / Number(message.open)).toFixed(2) : null;
      const cell = row.querySelector('[data-field="change"]');
      if (cell) {
        cell.replaceChildren(X.signed(change) + " ");
        if (pct !== null) cell.append(X.el("span", { class: "pct hide-sm", text: `(${X.signed(pct)}%)` }));
      }
    }
  }

  new X.Feed({
    path: "/ws",
    subscriptions: () => symbols.map((symbol) => ({ action: "subscribe", symbol, feed_types: ["ticker"] })),
    onMessage: (message) => { if (message.type === "ticker") ticker(message); },
    onState: (now) => {
      live = now === "live";
      state.textContent = live ? "Live" : "Updating every few seconds";
      state.dataset.state = now;
    },
  });

  (function loop() {  // the rows again every 3 s while the socket is down, every 10 s besides it
    refresh().finally(() => setTimeout(loop, live ? 10000 : 3000));
  })();
})();
