/* The trading screen: chart, depth ladder, trades tape, order ticket, my orders, fills, positions, cash.

   Live over the WebSocket (/ws): level2 snapshot + updates (a gap in seq resyncs), trades, ticker,
   candles, and my private order/fill events (which trigger a re-read of my orders and account).
   Whenever the socket is down the page polls the REST API instead, says so in a banner, and the
   feed reconnects by itself. Every price and quantity stays a decimal string. */
"use strict";

(function () {
  const X = window.Exchange;
  const $ = (id) => document.getElementById(id);
  const config = JSON.parse($("trade-config").textContent);
  const SYMBOL = config.symbol;
  const TICK_PLACES = X.places(config.tick);
  const LOT_PLACES = X.places(config.lot);
  const LIVE_STATUSES = new Set(["open", "partially_filled", "pending", "held"]);
  const DEPTH = 10;
  const POLL_MS = 1500;

  const state = {
    live: false,          // the WebSocket feed is up and subscribed
    book: { bids: [], asks: [], seq: null },
    trades: [],           // newest first: {id, price, quantity, side, timestamp}
    orders: [],           // my orders (all symbols), live ones only
    editing: null,        // the order id whose amend form is open
    sending: 0,           // orders on their way from this page's ticket
    held: [],             // fill messages that came while one was on its way
    mine: new Set(),      // order ids this page's ticket placed (their fills are told under the ticket)
    interval: "1m",
    ticker: {},
  };

  // ---------------------------------------------------------------- chart
  const chart = (function () {
    const box = $("chart");
    if (!config.chart || !window.LightweightCharts || !box) return null;
    const LC = window.LightweightCharts;
    const instance = LC.createChart(box, {
      autoSize: true,
      layout: { background: { type: "solid", color: "#14181d" }, textColor: "#9aa4b2", fontSize: 11 },
      grid: { vertLines: { color: "#1f252c" }, horzLines: { color: "#1f252c" } },
      rightPriceScale: { borderColor: "#2a3039" },
      timeScale: { borderColor: "#2a3039", timeVisible: true, secondsVisible: false },
      crosshair: { mode: 0 },
    });
    const candles = instance.addSeries(LC.CandlestickSeries, {
      upColor: "#0ecb81", downColor: "#f6465d", borderVisible: false,
      wickUpColor: "#0ecb81", wickDownColor: "#f6465d",
      priceFormat: { type: "price", precision: TICK_PLACES, minMove: Number(config.tick) },
    });
    const volume = instance.addSeries(LC.HistogramSeries, {
      priceScaleId: "", priceFormat: { type: "volume" }, color: "#3a4350",
    });
    volume.priceScale().applyOptions({ scaleMargins: { top: 0.82, bottom: 0 } });
    return { instance, candles, volume };
  })();

  function seconds(start) {
    if (typeof start === "number") {
      if (start > 1e15) return Math.floor(start / 1e9);
      if (start > 1e11) return Math.floor(start / 1e3);
      return start;
    }
    return Math.floor(Date.parse(start) / 1000);
  }

  function candleBar(c) {
    return { time: seconds(c.start), open: Number(c.open), high: Number(c.high), low: Number(c.low),
             close: Number(c.close) };
  }

  function volumeBar(c) {
    const up = Number(c.close) >= Number(c.open);
    return { time: seconds(c.start), value: Number(c.volume), color: up ? "#0ecb8155" : "#f6465d55" };
  }

  async function loadCandles() {
    if (!chart) return;
    try {
      const rows = await X.api("GET", `${config.api.candles}?interval=${state.interval}&limit=300`);
      chart.candles.setData(rows.map(candleBar));
      chart.volume.setData(rows.map(volumeBar));
      chartEmpty(rows.length === 0);
    } catch (error) { /* the next poll tries again */ }
  }

  function chartEmpty(empty) {
    let note = document.getElementById("chart-empty");
    if (!note && empty) {
      note = X.el("p", { id: "chart-empty", class: "chart-empty", text: "No trades yet in this market: candles appear with the first trade." });
      $("chart").append(note);
    }
    if (note) note.hidden = !empty;
  }

  function candleMessage(message) {
    if (!chart || message.interval !== state.interval) return;
    chartEmpty(false);
    try {
      chart.candles.update(candleBar(message));
      chart.volume.update(volumeBar(message));
    } catch (error) {
      loadCandles();  // an update older than the last bar: take the whole series again
    }
  }

  for (const button of document.querySelectorAll("#intervals button")) {
    button.addEventListener("click", () => {
      state.interval = button.dataset.interval;
      for (const other of document.querySelectorAll("#intervals button")) {
        other.setAttribute("aria-pressed", String(other === button));
      }
      if (state.live) feed.send({ action: "subscribe", symbol: SYMBOL, feed_types: ["candles"],
                                  interval: state.interval });
      loadCandles();
    });
  }

  // ---------------------------------------------------------------- ticker bar
  function showTicker(t) {
    Object.assign(state.ticker, t);
    const tk = state.ticker;
    if (tk.last) { $("t-last").textContent = tk.last; $("spread-last").textContent = tk.last; }
    if (tk.high) $("t-high").textContent = tk.high;
    if (tk.low) $("t-low").textContent = tk.low;
    if (tk.volume !== undefined && tk.volume !== null) $("t-volume").textContent = tk.volume;
    const change = $("t-change");
    if (tk.last && tk.open) {
      const diff = X.subtract(tk.last, tk.open);
      const pct = Number(tk.open) ? (Number(diff) * 100 / Number(tk.open)).toFixed(2) : "0.00";
      change.textContent = `${X.signed(diff)} (${X.signed(pct)}%)`;
      change.dataset.direction = diff.startsWith("-") ? "down" : /[1-9]/.test(diff) ? "up" : "flat";
    }
    $("t-last").dataset.direction = change.dataset.direction || "flat";
    document.title = `${tk.last ? tk.last + " · " : ""}${SYMBOL} · Exchange simulator`;
  }

  function restTicker(t) {
    return { last: t.last, bid: t.best_bid, ask: t.best_ask, open: t.open_24h, high: t.high_24h,
             low: t.low_24h, volume: t.volume_24h };
  }

  // ---------------------------------------------------------------- ladder
  function myPrices() {
    const mine = { buy: new Set(), sell: new Set() };
    for (const order of state.orders) {
      if (order.symbol === SYMBOL && order.price && order.status !== "pending" && order.status !== "held") {
        mine[order.side].add(X.atPlaces(order.price, TICK_PLACES));
      }
    }
    return mine;
  }

  function renderBook() {
    const { bids, asks } = state.book;
    const topBids = bids.slice(0, DEPTH), topAsks = asks.slice(0, DEPTH);
    const cumulate = (levels) => {
      let total = 0n;
      return levels.map(([price, qty]) => {
        total += X.toUnits(qty, LOT_PLACES) ?? 0n;
        return [price, qty, total];
      });
    };
    const bidRows = cumulate(topBids), askRows = cumulate(topAsks);
    const deepest = [bidRows.at(-1), askRows.at(-1)].reduce((m, r) => (r && r[2] > m ? r[2] : m), 1n);
    const mine = myPrices();
    const row = (side, [price, qty, total]) => {
      const shown = X.atPlaces(price, TICK_PLACES);
      const width = Number((total * 1000n) / deepest) / 10;
      const own = mine[side === "ask" ? "sell" : "buy"].has(shown);
      return X.el("tr", { class: `level ${side}${own ? " own" : ""}`, dataset: { price: shown },
                          style: `--depth:${width}%` },
        X.el("td", {}, X.el("button", { type: "button", class: "price", text: shown,
                                        "aria-label": `${side === "ask" ? "Ask" : "Bid"} ${shown}, size ${qty}${own ? ", your order" : ""}` }),
             own ? X.el("span", { class: "mine", title: "your order", "aria-hidden": "true", text: "●" }) : null),
        X.el("td", { class: "num", text: X.atPlaces(qty, LOT_PLACES) }),
        X.el("td", { class: "num muted", text: X.fromUnits(total, LOT_PLACES) }));
    };
    $("asks").replaceChildren(...askRows.map((r) => row("ask", r)).reverse());
    $("bids").replaceChildren(...bidRows.map((r) => row("bid", r)));
    if (!askRows.length) $("asks").append(X.el("tr", { class: "empty" }, X.el("td", { colspan: 3, text: "no offers" })));
    if (!bidRows.length) $("bids").append(X.el("tr", { class: "empty" }, X.el("td", { colspan: 3, text: "no bids" })));
    const spread = topBids.length && topAsks.length ? X.subtract(topAsks[0][0], topBids[0][0]) : null;
    $("spread").textContent = spread === null ? "spread —" : `spread ${X.atPlaces(spread, TICK_PLACES)}`;
    $("book-seq").textContent = state.book.seq === null ? "" : `seq ${state.book.seq}`;
  }

  function levels(side) {
    return (side || []).map((l) => (Array.isArray(l) ? [String(l[0]), String(l[1])] : [l.price, l.quantity]));
  }

  async function loadBook() {
    try {
      const book = await X.api("GET", `${config.api.book}?depth=${DEPTH}`);
      state.book = { bids: levels(book.bids), asks: levels(book.asks), seq: state.live ? null : book.seq };
      if (!state.live) state.book.seq = book.seq;
      renderBook();
    } catch (error) { /* next poll */ }
  }

  $("ladder").addEventListener("click", (event) => {
    const button = event.target.closest("button.price");
    if (!button) return;
    const type = $("f-type");
    if (type.value === "market" || type.value === "stop") {
      type.value = type.value === "stop" ? "stop_limit" : "limit";
      ticketShape();
    }
    $("f-price").value = button.textContent;
    validateIfTried();
    $("f-qty").focus();
  });

  // ---------------------------------------------------------------- trades tape
  function tradeId(id) {
    return typeof id === "number" ? `${SYMBOL}-${id}` : String(id);
  }

  function addTrades(list) {
    const known = new Set(state.trades.map((t) => t.id));
    const fresh = list.filter((t) => !known.has(t.id));
    if (!fresh.length) return;
    state.trades = [...fresh, ...state.trades]
      .sort((a, b) => (a.timestamp < b.timestamp ? 1 : a.timestamp > b.timestamp ? -1 : 0))
      .slice(0, 40);
    renderTape(new Set(fresh.map((t) => t.id)));
  }

  function renderTape(fresh) {
    $("tape").replaceChildren(...state.trades.map((t) => X.el("tr", {
      class: `${t.side === "sell" ? "down" : "up"}${fresh && fresh.has(t.id) ? " flash" : ""}`,
      dataset: { tradeId: t.id } },
      X.el("td", { class: "price", text: X.atPlaces(t.price, TICK_PLACES) }),
      X.el("td", { class: "num", text: X.atPlaces(t.quantity, LOT_PLACES) }),
      X.el("td", { class: "num muted", text: X.time(t.timestamp) }))));
  }

  async function loadTrades() {
    try {
      const list = await X.api("GET", `${config.api.trades}?limit=40`);
      addTrades(list.map((t) => ({ id: tradeId(t.trade_id), price: t.price, quantity: t.quantity,
                                    side: t.taker_side, timestamp: t.timestamp })));
    } catch (error) { /* next poll */ }
  }

  // ---------------------------------------------------------------- ticket
  const ticket = $("ticket");
  let tried = false;

  function value(name) {
    const field = ticket.elements[name];
    if (field instanceof RadioNodeList) return field.value;
    return field.type === "checkbox" ? field.checked : field.value.trim();
  }

  function ticketShape() {
    const type = value("type");
    const priced = type === "limit" || type === "stop_limit";
    const stop = type === "stop" || type === "stop_limit";
    ticket.querySelector('[data-for="price"]').hidden = !priced;
    ticket.querySelector('[data-for="stop_price"]').hidden = !stop;
    ticket.querySelector('[data-for="post_only"]').hidden = type !== "limit";
    ticket.querySelector('[data-for="expire_at"]').hidden = value("time_in_force") !== "gtd";
    const side = value("side");
    const submit = $("submit");
    submit.className = `submit ${side} wide`;
    submit.textContent = `${side === "buy" ? "Buy" : "Sell"} ${SYMBOL}`;
    estimate();
  }

  function estimate() {
    const qty = value("quantity"), price = value("price");
    const type = value("type");
    const out = $("estimate");
    if ((type === "limit" || type === "stop_limit") && X.isMultiple(qty, config.lot) && X.isMultiple(price, config.tick)) {
      const scale = LOT_PLACES + TICK_PLACES;
      const total = X.toUnits(qty, LOT_PLACES) * X.toUnits(price, TICK_PLACES);
      out.textContent = `Order value ${X.fromUnits(total, scale)}`;
    } else {
      out.textContent = "";
    }
  }

  function ticketErrors() {
    const errors = {};
    const type = value("type"), tif = value("time_in_force");
    const priced = type === "limit" || type === "stop_limit";
    const stop = type === "stop" || type === "stop_limit";
    const qty = value("quantity");
    if (!qty) errors.quantity = "Enter a quantity.";
    else if (X.toUnits(qty, 30) === null) errors.quantity = "Use digits and one point, e.g. 10 or 2.5.";
    else if (!X.isMultiple(qty, config.lot)) errors.quantity = `Must be a positive multiple of the lot size ${config.lot}.`;
    for (const [name, needed, label] of [["price", priced, "a limit price"], ["stop_price", stop, "a stop price"]]) {
      const text = value(name);
      if (!needed) continue;
      if (!text) errors[name] = `Enter ${label}.`;
      else if (X.toUnits(text, 30) === null) errors[name] = "Use digits and one point, e.g. 190.25.";
      else if (!X.isMultiple(text, config.tick)) errors[name] = `Must be a positive multiple of the tick size ${config.tick}.`;
    }
    if (!priced && (tif === "day" || tif === "gtd")) {
      errors.time_in_force = `A ${type.replace("_", " ")} order does not rest: use good till canceled, IOC or FOK.`;
    }
    if (type === "limit" && value("post_only") && (tif === "ioc" || tif === "fok")) {
      errors.post_only = "A post-only order rests: it cannot be IOC or FOK.";
    }
    if (tif === "gtd") {
      const when = value("expire_at");
      if (!when) errors.expire_at = "Pick when the order expires.";
      else if (new Date(when) <= new Date()) errors.expire_at = "Pick a time in the future.";
    }
    return errors;
  }

  function showErrors(errors) {
    for (const name of ["quantity", "price", "stop_price", "time_in_force", "post_only", "expire_at"]) {
      const box = $(`e-${name}`);
      const field = ticket.elements[name];
      const message = errors[name];
      box.textContent = message ? (Array.isArray(message) ? message.join(" ") : String(message)) : "";
      if (field && field.setAttribute) field.setAttribute("aria-invalid", message ? "true" : "false");
    }
  }

  function validateIfTried() {
    if (tried) showErrors(ticketErrors());
    estimate();
  }

  ticket.addEventListener("input", validateIfTried);
  ticket.addEventListener("change", (event) => {
    if (["type", "side", "time_in_force"].includes(event.target.name)) ticketShape();
    validateIfTried();
  });

  function outcome(text, kind) {
    const box = $("outcome");
    box.textContent = text;
    box.className = `outcome ${kind}`;
  }

  const REASONS = {
    ioc: "the rest was canceled (immediate or cancel)",
    fok: "it could not fill completely at once (fill or kill)",
    no_liquidity: "the rest was canceled: no more liquidity in the book",
    self_trade: "it would have traded with your own order (self-trade prevention)",
    user: "canceled",
  };

  function describe(result, order) {
    const verb = order.side === "buy" ? "bought" : "sold";
    const filled = result.trades.reduce((sum, t) => sum + X.toUnits(t.quantity, LOT_PLACES), 0n);
    const prices = [...new Set(result.trades.map((t) => t.price))];
    const at = prices.length === 1 ? `at ${prices[0]}` : prices.length ? `at ${prices[0]}–${prices.at(-1)}` : "";
    const done = `${verb} ${X.fromUnits(filled, LOT_PLACES)} ${SYMBOL} ${at}`.trim();
    const id = `order #${result.order_id}`;
    switch (result.status) {
      case "filled": return [`Filled: ${done} (${id}).`, "good"];
      case "partially_filled":
        return [`Partially filled: ${done}; ${result.remaining_quantity} resting at ${order.price} (${id}).`, "good"];
      case "open": return [`Resting: ${order.side} ${order.quantity} ${SYMBOL} at ${order.price} (${id}).`, "good"];
      case "pending":
        return [`Stop accepted: ${order.side} ${order.quantity} ${SYMBOL} when the price reaches ${order.stop_price} (${id}).`, "good"];
      case "held":
        return [`Held for review: staff will release or reject this order (${id}).`, "warn"];
      case "canceled": {
        const why = REASONS[result.cancel_reason] || `canceled (${result.cancel_reason})`;
        return filled > 0n ? [`Partially filled: ${done}; ${why} (${id}).`, "warn"]
                           : [`Not filled: ${why} (${id}).`, "bad"];
      }
      case "duplicate": return [`Already sent (${id}).`, "warn"];
      default: return [`${result.status} (${id}).`, "warn"];
    }
  }

  function refusal(error) {
    const body = error.body || {};
    if (error.status === 422) return `Rejected: ${body.message}.`;
    if (error.status === 429) return "Too many orders just now: wait a moment and send it again.";
    if (error.status === 503) return "The exchange is busy: send it again in a moment.";
    if (error.status === 401 || error.status === 403) return "Your session has ended: log in again.";
    return `Not sent: ${body.message || error.message}.`;
  }

  ticket.addEventListener("submit", async (event) => {
    event.preventDefault();
    tried = true;
    const errors = ticketErrors();
    showErrors(errors);
    if (Object.keys(errors).length) {
      outcome("Check the highlighted fields.", "bad");
      const first = ticket.querySelector('[aria-invalid="true"]');
      if (first) first.focus();
      return;
    }
    const type = value("type");
    const order = { symbol: SYMBOL, side: value("side"), type, quantity: value("quantity"),
                    time_in_force: value("time_in_force") };
    if (type === "limit" || type === "stop_limit") order.price = value("price");
    if (type === "stop" || type === "stop_limit") order.stop_price = value("stop_price");
    if (type === "limit" && value("post_only")) order.post_only = true;
    if (order.time_in_force === "gtd") order.expire_at = new Date(value("expire_at")).toISOString();
    const submit = $("submit");
    submit.disabled = true;
    outcome("Sending…", "info");
    state.sending += 1;
    try {
      const result = await X.api("POST", config.api.submit, order);
      state.mine.add(String(result.order_id));
      const [text, kind] = describe(result, order);
      outcome(text, kind);
      tried = false;  // the next order starts from these values, unchecked until sent
    } catch (error) {
      if (error.status === 400 && error.body.fields) {
        showErrors(error.body.fields);
        outcome("The exchange refused the order: see the fields.", "bad");
      } else {
        outcome(refusal(error), "bad");
      }
    } finally {
      submit.disabled = false;
      state.sending -= 1;
      if (!state.sending) for (const fill of state.held.splice(0)) fillMessage(fill);
      refreshMine();
      if (!state.live) { loadBook(); loadTrades(); }
    }
  });

  // ---------------------------------------------------------------- my orders, fills, account
  const STATUS_WORDS = { open: "resting", partially_filled: "partially filled", pending: "stop waiting",
                         held: "held for review", filled: "filled", canceled: "canceled",
                         expired: "expired", rejected: "rejected" };

  function renderOrders() {
    if (state.editing !== null) return;  // never pull the amend form from under the user
    const body = $("orders").tBodies[0];
    body.replaceChildren(...state.orders.map((o) => {
      const price = o.type === "market" ? "market"
        : o.type === "stop" ? `stop ${o.stop_price}`
        : o.type === "stop_limit" ? `${o.price} (stop ${o.stop_price})` : o.price;
      return X.el("tr", { dataset: { orderId: o.order_id, symbol: o.symbol }, class: o.side },
        X.el("td", { class: "muted", text: `#${o.order_id}` }),
        X.el("td", {}, o.symbol === SYMBOL ? o.symbol : X.el("a", { href: `/trade/${o.symbol}/`, text: o.symbol })),
        X.el("td", { class: `side ${o.side}`, text: o.side }),
        X.el("td", { text: `${o.type.replace("_", " ")} · ${o.time_in_force}` }),
        X.el("td", { class: "num", dataset: { field: "price" }, text: price }),
        X.el("td", { class: "num", dataset: { field: "quantity" }, text: o.quantity }),
        X.el("td", { class: "num", text: o.filled_quantity }),
        X.el("td", { class: `order-status ${o.status}`, text: STATUS_WORDS[o.status] || o.status }),
        X.el("td", { class: "actions" },
          o.type === "market" ? null : X.el("button", { type: "button", class: "small", dataset: { action: "amend" },
                                                         "aria-label": `Amend order ${o.order_id}`, text: "Amend" }),
          X.el("button", { type: "button", class: "small danger", dataset: { action: "cancel" },
                           "aria-label": `Cancel order ${o.order_id}`, text: "Cancel" })));
    }));
    $("orders-empty").hidden = state.orders.length > 0;
    $("orders-count").textContent = String(state.orders.length);
  }

  function openAmend(row) {
    const order = state.orders.find((o) => String(o.order_id) === row.dataset.orderId);
    if (!order) return;
    state.editing = order.order_id;
    const priceCell = row.querySelector('[data-field="price"]');
    const qtyCell = row.querySelector('[data-field="quantity"]');
    const input = (name, initial, label) => X.el("input", { name, value: initial, inputmode: "decimal", class: "inline",
                                                            "aria-label": label, autocomplete: "off" });
    const priceName = order.type === "stop" ? "stop_price" : "price";
    const priceInput = input(priceName, order.type === "stop" ? order.stop_price : order.price,
                             `New ${priceName === "price" ? "price" : "stop price"} for order ${order.order_id}`);
    priceCell.replaceChildren(priceInput);
    qtyCell.replaceChildren(input("quantity", order.quantity, `New quantity for order ${order.order_id}`));
    row.querySelector(".actions").replaceChildren(
      X.el("button", { type: "button", class: "small primary", dataset: { action: "save" }, text: "Save" }),
      X.el("button", { type: "button", class: "small", dataset: { action: "back" }, text: "Back" }));
    priceInput.focus();
    priceInput.select();
  }

  function closeAmend() {
    state.editing = null;
    renderOrders();
    renderBook();
  }

  async function saveAmend(row) {
    const order = state.orders.find((o) => String(o.order_id) === row.dataset.orderId);
    if (!order) return closeAmend();
    const changes = {};
    for (const input of row.querySelectorAll("input.inline")) {
      const text = input.value.trim();
      const was = input.name === "quantity" ? order.quantity : input.name === "price" ? order.price : order.stop_price;
      const step = input.name === "quantity" ? config.lot : config.tick;
      if (!X.isMultiple(text, step)) {
        outcome(`Amend #${order.order_id}: the ${input.name.replace("_", " ")} must be a positive multiple of ${step}.`, "bad");
        input.setAttribute("aria-invalid", "true");
        input.focus();
        return;
      }
      if (X.compare(text, was) !== 0) changes[input.name] = text;
    }
    if (!Object.keys(changes).length) { closeAmend(); return; }
    try {
      const result = await X.api("PATCH", config.api.order + order.order_id, changes);
      const what = Object.entries(changes).map(([k, v]) => `${k.replace("_", " ")} ${v}`).join(", ");
      outcome(`Amended #${order.order_id}: ${what}${result.kept_priority ? " (kept its place in the queue)" : " (new place in the queue)"}${result.status === "filled" ? "; it filled" : ""}.`, "good");
    } catch (error) {
      outcome(`Amend #${order.order_id} refused: ${(error.body && error.body.message) || error.message}.`, "bad");
    }
    state.editing = null;
    await refreshMine();
    if (!state.live) loadBook();
  }

  async function cancelOrder(row) {
    const id = row.dataset.orderId;
    for (const button of row.querySelectorAll("button")) button.disabled = true;
    try {
      const result = await X.api("DELETE", config.api.cancel + id);
      outcome(`Canceled #${id} (${result.canceled_quantity} canceled).`, "good");
    } catch (error) {
      outcome(`Cancel #${id} refused: ${(error.body && error.body.message) || error.message}.`, "bad");
    }
    await refreshMine();
    if (!state.live) loadBook();
  }

  $("orders").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const row = button.closest("tr");
    const action = button.dataset.action;
    if (action === "amend") openAmend(row);
    else if (action === "cancel") cancelOrder(row);
    else if (action === "save") saveAmend(row);
    else if (action === "back") closeAmend();
  });
  $("orders").addEventListener("keydown", (event) => {
    if (event.target.matches("input.inline")) {
      if (event.key === "Enter") { event.preventDefault(); saveAmend(event.target.closest("tr")); }
      if (event.key === "Escape") closeAmend();
    }
  });

  function renderFills(fills) {
    $("fills").tBodies[0].replaceChildren(...fills.map((f) => X.el("tr", { dataset: { tradeId: f.trade_id } },
      X.el("td", { class: "muted", text: X.time(f.timestamp) }),
      X.el("td", { text: f.symbol }),
      X.el("td", { class: `side ${f.side}`, text: f.side }),
      X.el("td", { class: "num", text: f.price }),
      X.el("td", { class: "num", text: f.quantity }),
      X.el("td", { class: "muted", text: f.liquidity }),
      X.el("td", { class: "muted", text: `#${f.order_id}` }))));
    $("fills-empty").hidden = fills.length > 0;
  }

  function pnl(text) {
    if (text === null || text === undefined) return X.el("td", { class: "num muted", text: "—" });
    const kind = text.startsWith("-") ? "down" : /[1-9]/.test(text) ? "up" : "";
    return X.el("td", { class: `num ${kind}`, text: X.signed(X.money(text)) });
  }

  function renderAccount(account) {
    $("cash").textContent = X.money(account.cash);
    $("reserved").textContent = X.money(account.reserved);
    $("available").textContent = X.money(account.available);
    const positions = account.positions.filter((p) => X.toUnits(p.quantity.replace("-", ""), 30) !== 0n
                                                      || p.realised_pnl !== "0.0000");
    $("positions").tBodies[0].replaceChildren(...positions.map((p) => X.el("tr", { dataset: { symbol: p.symbol } },
      X.el("th", { scope: "row", text: p.symbol }),
      X.el("td", { class: "num", text: p.quantity }),
      X.el("td", { class: "num", text: p.average_price ?? "—" }),
      X.el("td", { class: "num", text: p.last_price ?? "—" }),
      X.el("td", { class: "num", text: X.money(p.market_value) }),
      pnl(p.unrealised_pnl), pnl(p.realised_pnl))));
    $("positions-empty").hidden = positions.length > 0;
  }

  let mineBusy = null;
  function refreshMine() {
    if (mineBusy) return mineBusy;
    mineBusy = (async () => {
      try {
        const [orders, fills, account] = await Promise.all([
          X.api("GET", `${config.api.orders}?status=${[...LIVE_STATUSES].join(",")}&limit=500`),
          X.api("GET", `${config.api.fills}?limit=50`),
          X.api("GET", config.api.account),
        ]);
        state.orders = orders.filter((o) => LIVE_STATUSES.has(o.status));
        renderOrders();
        renderBook();  // my price markers
        renderFills(fills);
        renderAccount(account);
      } catch (error) {
        if (error.status === 401 || error.status === 403) showBanner("Your session has ended: log in again.", "bad");
      } finally {
        mineBusy = null;
      }
    })();
    return mineBusy;
  }

  let mineTimer = null;
  function refreshMineSoon() {
    clearTimeout(mineTimer);
    mineTimer = setTimeout(refreshMine, 100);
  }

  // ---------------------------------------------------------------- fills of my other orders
  function fillMessage(m) {
    if (state.sending) { state.held.push(m); return; }  // perhaps the order being sent: wait for its answer
    if (state.mine.has(String(m.order_id))) return;  // told under the ticket already
    const verb = m.side === "sell" ? "sell" : "buy";
    const toast = X.el("p", { class: `toast ${verb}` ,
      text: `Your ${verb} order #${m.order_id} filled: ${m.quantity} ${m.symbol} at ${m.price}.` });
    $("toasts").prepend(toast);
    while ($("toasts").children.length > 3) $("toasts").lastElementChild.remove();
    setTimeout(() => toast.remove(), 8000);
  }

  // ---------------------------------------------------------------- tabs
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  function selectTab(tab) {
    for (const other of tabs) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      $(other.getAttribute("aria-controls")).hidden = !selected;
    }
  }
  for (const tab of tabs) {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", (event) => {
      const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
      if (!step) return;
      const next = tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length];
      selectTab(next);
      next.focus();
    });
  }

  $("symbol-pick").addEventListener("change", (event) => {
    location.href = event.target.dataset.base.replace("SYMBOL", encodeURIComponent(event.target.value));
  });

  // ---------------------------------------------------------------- feed or polling
  function showBanner(text, kind) {
    const banner = $("feed-banner");
    banner.textContent = text;
    banner.className = `banner ${kind || ""}`;
    banner.hidden = !text;
  }

  function setLive(live) {
    state.live = live;
    $("feed-state").textContent = live ? "live" : "polling";
    $("feed-state").dataset.state = live ? "live" : "polling";
    if (live) {
      showBanner("", "");
      state.book.seq = null;  // the snapshot that follows sets it
    } else {
      showBanner("Live feed disconnected: updating by polling every few seconds while it reconnects.", "warn");
    }
  }

  function subscriptions() {
    return [
      { action: "subscribe", symbol: SYMBOL, feed_types: ["trades", "level2", "ticker", "candles"],
        interval: state.interval },
      { action: "subscribe", feed_types: ["orders"] },
    ];
  }

  function resync() {
    // a gap in the level2 sequence: take the book again (REST now, a fresh snapshot from the feed)
    state.book.seq = null;
    loadBook();
    feed.send({ action: "unsubscribe", symbol: SYMBOL, feed_types: ["level2"] });
    feed.send({ action: "subscribe", symbol: SYMBOL, feed_types: ["level2"] });
  }

  function onMessage(m) {
    if (m.symbol && m.symbol !== SYMBOL && m.type !== "order" && m.type !== "fill") return;
    switch (m.type) {
      case "level2_snapshot":
        state.book = { bids: levels(m.bids), asks: levels(m.asks), seq: m.seq };
        renderBook();
        break;
      case "level2_update":
        if (state.book.seq !== null && m.prev_seq !== state.book.seq) { resync(); return; }
        state.book = { bids: levels(m.bids), asks: levels(m.asks), seq: m.seq };
        renderBook();
        break;
      case "trade":
        addTrades([{ id: tradeId(m.trade_id), price: String(m.price), quantity: String(m.quantity),
                     side: m.side, timestamp: m.timestamp }]);
        break;
      case "ticker":
        showTicker({ last: m.last, bid: m.bid, ask: m.ask, open: m.open, high: m.high, low: m.low,
                     volume: m.volume });
        break;
      case "candle":
        candleMessage(m);
        break;
      case "fill":
        fillMessage(m);
        refreshMineSoon();
        break;
      case "order":
        refreshMineSoon();
        break;
      case "error":
        if (m.code) console.warn("feed:", m.code, m.message);
        break;
      default:
        break;
    }
  }

  const feed = new X.Feed({ path: config.ws_path, subscriptions, onMessage, onState: (s) => setLive(s === "live") });

  async function loadTicker() {
    try { showTicker(restTicker(await X.api("GET", config.api.ticker))); } catch (error) { /* next poll */ }
  }

  async function loadStatus() {
    try {
      const found = (await X.api("GET", config.api.instruments)).find((i) => i.symbol === SYMBOL);
      if (!found) return;
      const badge = $("t-status");
      badge.textContent = found.status === "halted" ? "Halted" : found.status === "open" ? "Open" : found.status;
      badge.className = `value status status-${found.status}`;
      if (found.status === "halted") {
        showBanner(`Trading in ${SYMBOL} is halted: new orders are rejected; cancels still work.`, "bad");
      } else if ($("feed-banner").classList.contains("bad") && state.live) {
        showBanner("", "");
      }
    } catch (error) { /* next round */ }
  }

  let rounds = 0;
  async function poll() {
    rounds += 1;
    if (!state.live) {
      await Promise.all([loadBook(), loadTrades(), loadTicker(), rounds % 2 ? refreshMine() : null,
                         rounds % 4 === 1 ? loadCandles() : null]);
    } else if (rounds % 8 === 0) {
      await refreshMine();  // a safety net besides the private feed
    }
    if (rounds % 8 === 0) await loadStatus();
    setTimeout(poll, POLL_MS);
  }

  ticketShape();
  renderBook();
  loadCandles();
  loadBook();
  loadTrades();
  loadTicker();
  refreshMine();
  setTimeout(poll, POLL_MS);
})();
