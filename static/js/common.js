/* Shared by the pages: decimal arithmetic on strings, API calls with the session's CSRF token, and
   the market-data feed (the WebSocket at /ws, with its status reported so pages can poll instead).
   Plain JavaScript, no framework: each page script uses window.Exchange. */
"use strict";

(function () {
  // ---- decimals: prices and quantities stay strings; arithmetic in BigInt units of 10^-places ----
  function places(text) {
    const dot = String(text).indexOf(".");
    return dot < 0 ? 0 : String(text).length - dot - 1;
  }

  const DECIMAL = /^[0-9]+(\.[0-9]+)?$/;

  /** "190.25" at 2 places -> 19025n; null when not a plain decimal or finer than `scale` places. */
  function toUnits(text, scale) {
    text = String(text).trim();
    if (!DECIMAL.test(text)) return null;
    let [whole, frac = ""] = text.split(".");
    frac = frac.replace(/0+$/, "");
    if (frac.length > scale) return null;
    return BigInt(whole + frac.padEnd(scale, "0"));
  }

  /** 19025n at 2 places -> "190.25" (negative too). */
  function fromUnits(units, scale) {
    const negative = units < 0n;
    let digits = (negative ? -units : units).toString().padStart(scale + 1, "0");
    const text = scale ? digits.slice(0, -scale) + "." + digits.slice(-scale) : digits;
    return (negative ? "-" : "") + text;
  }

  /** Is `text` a positive multiple of `step` (both decimal strings)? */
  function isMultiple(text, step) {
    const scale = Math.max(places(text), places(step));
    const value = toUnits(text, scale), unit = toUnits(step, scale);
    return value !== null && unit !== null && value > 0n && value % unit === 0n;
  }

  function compare(a, b) {
    const scale = Math.max(places(a), places(b));
    const x = toUnits(a, scale), y = toUnits(b, scale);
    return x < y ? -1 : x > y ? 1 : 0;
  }

  /** a - b as a string at the larger number of places (both non-negative decimals). */
  function subtract(a, b) {
    const scale = Math.max(places(a), places(b));
    return fromUnits(toUnits(a, scale) - toUnits(b, scale), scale);
  }

  function signed(text) {
    return text.startsWith("-") ? text : (/[1-9]/.test(text) ? "+" + text : text);
  }

  /** "12.5" -> "12.50" for a tick of 0.01 (display at the instrument's precision). */
  function atPlaces(text, scale) {
    if (text === null || text === undefined) return "—";
    const units = toUnits(String(text).replace(/^-/, ""), Math.max(scale, places(text)));
    if (units === null) return String(text);
    const shown = fromUnits(units, Math.max(scale, places(text)));
    return (String(text).startsWith("-") ? "-" : "") + shown;
  }

  /** Money for people: "1000000.0000" -> "1,000,000.00" (places past the second shown only when not 0). */
  function money(text) {
    if (text === null || text === undefined) return "—";
    let [whole, frac = ""] = String(text).split(".");
    const negative = whole.startsWith("-");
    whole = whole.replace("-", "").replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    frac = frac.length > 2 ? frac.slice(0, 2) + frac.slice(2).replace(/0+$/, "") : frac.padEnd(2, "0");
    return (negative ? "-" : "") + whole + "." + frac;
  }

  // ---- the API: JSON with the session cookie, CSRF header on writes ----
  function cookie(name) {
    const found = document.cookie.split("; ").find((part) => part.startsWith(name + "="));
    return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
  }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.body = body || {};
    }
  }

  async function api(method, url, body) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      headers["X-CSRFToken"] = cookie("csrftoken");
    }
    let response;
    try {
      response = await fetch(url, {
        method, headers, credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new ApiError(0, { code: "network", message: "the exchange did not answer (network error)" });
    }
    let data = null;
    try { data = await response.json(); } catch (error) { data = null; }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  // ---- the feed: one WebSocket, resubscribed on every (re)connect ----
  class Feed {
    /** subscriptions(): the messages to send after each connect; onMessage(msg); onState("live"|"down") */
    constructor({ path, subscriptions, onMessage, onState }) {
      this.url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
      this.subscriptions = subscriptions;
      this.onMessage = onMessage;
      this.onState = onState;
      this.socket = null;
      this.retry = 1000;
      this.live = false;
      this.pingId = 0;
      this.lastHeard = 0;
      this.connect();
      setInterval(() => this.heartbeat(), 10000);
    }

    connect() {
      let socket;
      try {
        socket = new WebSocket(this.url);
      } catch (error) {
        this.down();
        return;
      }
      this.socket = socket;
      socket.addEventListener("open", () => {
        this.lastHeard = Date.now();
        for (const message of this.subscriptions()) this.send(message);
      });
      socket.addEventListener("message", (event) => {
        this.lastHeard = Date.now();
        let message;
        try { message = JSON.parse(event.data); } catch (error) { return; }
        if (message.type === "subscribed" && !this.live) {
          this.live = true;
          this.retry = 1000;
          this.onState("live");
        }
        if (message.type === "pong") return;
        this.onMessage(message);
      });
      socket.addEventListener("close", () => {
        if (this.socket === socket) this.down();
      });
      socket.addEventListener("error", () => { /* "close" follows and reconnects */ });
    }

    down() {
      this.socket = null;
      if (this.live || this.retry === 1000) this.onState("down");
      this.live = false;
      const wait = this.retry;
      this.retry = Math.min(this.retry * 2, 15000);
      setTimeout(() => this.connect(), wait);
    }

    send(message) {
      if (this.socket && this.socket.readyState === WebSocket.OPEN) {
        this.socket.send(JSON.stringify(message));
        return true;
      }
      return false;
    }

    /** Close the socket (it reconnects by itself): after a sequence gap, to resync everything. */
    restart() {
      if (this.socket) this.socket.close();
    }

    heartbeat() {
      if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return;
      if (this.live && Date.now() - this.lastHeard > 30000) {
        this.socket.close();  // silent for too long: reconnect
        return;
      }
      this.send({ action: "ping", id: ++this.pingId });
    }
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function time(iso) {
    const date = new Date(iso);
    return isNaN(date) ? "" : date.toLocaleTimeString([], { hour12: false });
  }

  window.Exchange = {
    places, toUnits, fromUnits, isMultiple, compare, subtract, signed, atPlaces, money,
    api, ApiError, Feed, el, time, cookie,
  };
})();
