// hub.js — the one WebSocket to the server (protocol/README.md).
//
// Owns: opening the socket, `hello`, matching replies to ops by `id`, the
// client-side rate limit (so a long offline queue never trips the server's
// `rate_limited`), and reconnecting with exponential backoff and jitter.
// Does NOT own: what to subscribe to or what to resend after a reconnect —
// that is the app's business, told through the `welcome` event. Every op
// still waiting for its reply when the socket drops is rejected with code
// `disconnected`, so callers can decide to retry on the next connection.

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
// A socket that neither opens nor gets `welcome` within this time is dropped
// and retried: a half-open connection must not leave the user "connecting".
const HANDSHAKE_TIMEOUT_MS = 12_000;
// After this many failed attempts in a row the state reads "offline" rather
// than "reconnecting"; the client keeps trying either way.
const OFFLINE_AFTER_ATTEMPTS = 4;
// An op with no reply for this long means the connection is dead even if the
// browser has not noticed (phone asleep, NAT dropped the flow): drop it and
// reconnect; sends are then retried with their client_key. Generous, because
// a long resume backfill is written before later replies.
const REPLY_TIMEOUT_MS = 30_000;

/**
 * Pushes without an `id`, each re-dispatched as an event of its own type.
 * `stats_update` and `presence_update` are planned server contracts: until
 * the server sends them nothing arrives, and the app polls instead.
 */
const PUSHES = new Set(['membership', 'application', 'receipts', 'warning', 'stats_update', 'presence_update']);

export class HubError extends Error {
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}

/**
 * Events (EventTarget):
 *  - `state`     detail: 'connecting' | 'connected' | 'reconnecting' | 'offline' | 'stopped'
 *  - `welcome`   detail: the welcome frame (after every successful hello)
 *  - `event`     detail: an event push
 *  - `unauthorized`  the token was refused at hello; the hub has stopped
 *  - `notice`    detail: {code} a close code or id-less error worth telling the user
 *  - `membership`   detail: a membership push (approved, rejected, role, muted, removed)
 *  - `application`  detail: an application push (cadres: someone applied)
 *  - `revoked`   the server closed with 4003 (logout, password change); the hub has stopped
 *  - `receipts`, `warning`, `stats_update`, `presence_update`   detail: that push
 */
export class Hub extends EventTarget {
  constructor({ url, token, clientName }) {
    super();
    this.url = url;
    this.token = token;
    this.clientName = clientName;
    this.state = 'idle';
    this.ws = null;
    this.nextId = 1;
    /** op id → {resolve, reject}; emptied (rejected) whenever the socket drops. */
    this.pending = new Map();
    /** Ops waiting for a rate-limit token, in order. */
    this.waiting = [];
    this.attempt = 0;
    this.timer = null;
    this.handshakeTimer = null;
    this.limits = { ops_per_sec: 20, burst: 40 };
    this.tokens = 10;
    this.lastRefill = performance.now();
    this.stopped = false;
    this.welcome = null;
    this.onOnline = () => this.reconnectNow();
    // The device lost its network: whatever the socket claims, it cannot carry
    // anything now. Drop it so that the state says so and sends queue up.
    this.onOffline = () => {
      if (this.stopped) return;
      if (this.ws) this.drop(this.ws);
      this.setState('offline');
    };
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
  }

  start() {
    this.stopped = false;
    this.open();
  }

  /** Closes for good (logout). Pending ops are rejected. */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.handshakeTimer);
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      try { ws.close(1000); } catch { /* already closed */ }
    }
    this.failAll();
    this.setState('stopped');
  }

  setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.dispatchEvent(new CustomEvent('state', { detail: s }));
  }

  get connected() {
    return this.state === 'connected';
  }

  open() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.setState(this.attempt === 0 && !this.welcome ? 'connecting'
      : this.attempt >= OFFLINE_AFTER_ATTEMPTS || navigator.onLine === false ? 'offline' : 'reconnecting');
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.authenticated = false;
    clearTimeout(this.handshakeTimer);
    this.handshakeTimer = setTimeout(() => {
      if (this.ws === ws && !this.authenticated) this.drop(ws);
    }, HANDSHAKE_TIMEOUT_MS);

    ws.onopen = () => {
      // hello goes out at once, ahead of the rate limiter: it must be first.
      const id = this.nextId++;
      this.pending.set(id, {
        resolve: (frame) => this.onWelcome(ws, frame),
        reject: (err) => {
          if (err.code === 'unauthorized') {
            this.stop();
            this.dispatchEvent(new CustomEvent('unauthorized'));
          }
          else if (err.code !== 'disconnected' && ws === this.ws) {
            // unavailable, internal, rate_limited: try again later, with backoff.
            this.drop(ws);
          }
        },
      });
      ws.send(JSON.stringify({ op: 'hello', id, token: this.token, client: this.clientName }));
    };
    ws.onmessage = (msg) => this.onFrame(ws, msg.data);
    ws.onerror = () => { /* onclose follows and handles it */ };
    ws.onclose = (ev) => this.onClose(ws, ev);
  }

  onWelcome(ws, frame) {
    if (ws !== this.ws) return;
    clearTimeout(this.handshakeTimer);
    this.authenticated = true;
    this.attempt = 0;
    this.welcome = frame;
    if (frame.limits) {
      this.limits = frame.limits;
      // Keep well inside the server's budget: its bucket also counts hello.
      this.tokens = Math.max(1, Math.floor((frame.limits.burst || 40) / 2) - 1);
    }
    this.setState('connected');
    this.dispatchEvent(new CustomEvent('welcome', { detail: frame }));
    this.pump();
  }

  onFrame(ws, data) {
    if (ws !== this.ws) return;
    if (typeof data !== 'string') return;
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame.type === 'event') {
      this.dispatchEvent(new CustomEvent('event', { detail: frame }));
      return;
    }
    if (PUSHES.has(frame.type) && frame.id == null) {
      this.dispatchEvent(new CustomEvent(frame.type, { detail: frame }));
      return;
    }
    if (frame.type === 'error' && frame.id == null) {
      this.dispatchEvent(new CustomEvent('notice', { detail: { code: frame.code, message: frame.message } }));
      return;
    }
    const waiter = frame.id != null ? this.pending.get(frame.id) : null;
    if (!waiter) return;
    this.pending.delete(frame.id);
    if (frame.type === 'error') waiter.reject(new HubError(frame.code, frame.message));
    else waiter.resolve(frame);
  }

  onClose(ws, ev) {
    if (ws !== this.ws) return;
    this.ws = null;
    clearTimeout(this.handshakeTimer);
    this.failAll();
    if (this.stopped) return;
    const code = ev.code;
    if (code === 4003) {
      // Tokens revoked: reconnecting with this token can never succeed.
      this.stop();
      this.dispatchEvent(new CustomEvent('revoked'));
      return;
    }
    if ([1009, 4001, 4008, 4029].includes(code)) {
      this.dispatchEvent(new CustomEvent('notice', { detail: { code: `close.${code}` } }));
    }
    if (code === 1001) {
      // Going away (restart, drain): come back soon, spread over a second so a
      // whole village does not reconnect in the same millisecond.
      this.attempt = Math.max(this.attempt, 1);
      this.scheduleReconnect(100 + Math.random() * 900);
    } else if (code === 4029) {
      this.attempt = Math.max(this.attempt, 5);
      this.scheduleReconnect();
    } else {
      this.scheduleReconnect();
    }
  }

  drop(ws) {
    try { ws.close(); } catch { /* ignore */ }
    // Some browsers take long to fire onclose on a dead socket: act now.
    this.onClose(ws, { code: 1006 });
  }

  scheduleReconnect(delayMs) {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const n = this.attempt++;
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** n);
    // "Equal jitter": half fixed, half random — never 0, never in lockstep.
    const delay = delayMs ?? cap / 2 + Math.random() * (cap / 2);
    this.setState(this.attempt >= OFFLINE_AFTER_ATTEMPTS || navigator.onLine === false ? 'offline' : 'reconnecting');
    this.timer = setTimeout(() => this.open(), delay);
  }

  /**
   * Says `hello` again on a fresh socket, at once: the server tells what
   * changed (a group approved or removed) only in a new `welcome`.
   */
  refresh() {
    if (this.stopped) return;
    if (this.ws) {
      const ws = this.ws;
      this.onClose(ws, { code: 1000 });
      try { ws.close(1000); } catch { /* ignore */ }
    }
    clearTimeout(this.timer);
    this.attempt = 0;
    this.open();
  }

  /** Skip the backoff wait (the browser says the network is back). */
  reconnectNow() {
    if (this.stopped || this.ws) return;
    this.attempt = 0;
    this.open();
  }

  failAll() {
    const pending = [...this.pending.values()];
    const waiting = this.waiting;
    this.pending.clear();
    this.waiting = [];
    const err = new HubError('disconnected', 'connection lost');
    for (const p of pending) p.reject(err);
    for (const w of waiting) w.reject(err);
  }

  /**
   * Sends one op (without `id`; the hub adds it) and resolves with its reply
   * frame, or rejects with a HubError carrying the protocol's error code, or
   * `disconnected` if the connection is not up or drops first.
   */
  request(op) {
    return new Promise((resolve, reject) => {
      if (!this.connected) {
        reject(new HubError('disconnected', 'not connected'));
        return;
      }
      this.waiting.push({ op, resolve, reject });
      this.pump();
    });
  }

  /** Starts the reply watchdog while ops are outstanding. */
  watch() {
    if (this.watchdog) return;
    this.watchdog = setInterval(() => {
      if (!this.pending.size || !this.ws) {
        clearInterval(this.watchdog);
        this.watchdog = null;
        return;
      }
      const now = performance.now();
      for (const p of this.pending.values()) {
        if (p.at && now - p.at > REPLY_TIMEOUT_MS) {
          this.drop(this.ws);
          return;
        }
      }
    }, 2_000);
  }

  /** Token bucket at 80 % of the server's sustained rate. */
  pump() {
    clearTimeout(this.pumpTimer);
    if (!this.connected || !this.ws) return;
    const rate = Math.max(1, (this.limits.ops_per_sec || 20) * 0.8);
    const burst = Math.max(1, Math.floor((this.limits.burst || 40) / 2));
    const now = performance.now();
    this.tokens = Math.min(burst, this.tokens + ((now - this.lastRefill) / 1000) * rate);
    this.lastRefill = now;
    while (this.waiting.length && this.tokens >= 1) {
      const { op, resolve, reject } = this.waiting.shift();
      this.tokens -= 1;
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject, at: performance.now() });
      this.ws.send(JSON.stringify({ ...op, id }));
      this.watch();
    }
    if (this.waiting.length) {
      this.pumpTimer = setTimeout(() => this.pump(), Math.ceil(1000 / rate));
    }
  }
}
