// state.js — what the client knows, independent of the screen.
//
// Owns: per group, the events received so far keyed by seq (so an event
// delivered twice — by a resume, a history page and a push — is kept once)
// and `lastSeq`, the highest seq up to which nothing is missing, which is the
// `since` of the next subscribe. Also the outbox: messages written but not
// yet acknowledged by `sent`, persisted in localStorage with their
// client_key so that a retry after a reload, a reconnect or a server restart
// can never create a second message.
// Does NOT own: the socket (hub.js) or the DOM (app.js).

const LS = {
  session: 'vh.session',
  outbox: (account) => `vh.outbox.${account}`,
  counter: 'vh.keyCounter',
};

// ---------------------------------------------------------------------------
// Session (token from POST /api/login)
// ---------------------------------------------------------------------------

export function loadSession() {
  try {
    const s = JSON.parse(localStorage.getItem(LS.session) || 'null');
    if (!s || !s.token || !s.account) return null;
    if (s.expires_at && s.expires_at <= Date.now()) return { ...s, expired: true };
    return s;
  } catch {
    return null;
  }
}

export function saveSession(s) {
  localStorage.setItem(LS.session, JSON.stringify(s));
}

export function clearSession() {
  localStorage.removeItem(LS.session);
}

// ---------------------------------------------------------------------------
// Group logs
// ---------------------------------------------------------------------------

export class GroupLog {
  constructor(info) {
    this.info = info;
    this.id = info.id;
    /** seq → event. */
    this.events = new Map();
    /**
     * Highest seq with every event from the first loaded one up to it
     * present; null until the first `subscribed` tells us the head.
     */
    this.lastSeq = null;
    /** Lowest seq loaded (for paging back with `history`), null = none yet. */
    this.oldest = null;
    /** Whether older events exist on the server. */
    this.more = true;
    /** Whether the first history page was loaded. */
    this.historyLoaded = false;
    /** Events that arrived while the group was not on screen. */
    this.unread = 0;
    /** seq → event for quoted messages older than what is loaded. */
    this.quotes = new Map();
    /** Highest seq held (above lastSeq only if something is missing). */
    this.maxSeq = 0;
    /** Hidden message seq → the `hide` event that hid it (live hides). */
    this.hides = new Map();
  }

  /** Forgets every event (the server's log no longer matches ours). */
  reset() {
    this.events.clear();
    this.quotes.clear();
    this.lastSeq = null;
    this.oldest = null;
    this.more = true;
    this.historyLoaded = false;
    this.maxSeq = 0;
    this.hides.clear();
  }

  /**
   * Adds an event; returns false if this seq is already known. A `hidden`
   * event (history, backfill) takes the place of the message it hides: same
   * seq, so it is not new, but what is shown changes — `replaced` tells.
   */
  add(ev) {
    this.replaced = false;
    if (this.events.has(ev.seq)) {
      const old = this.events.get(ev.seq);
      if (ev.kind === 'hidden' && old.kind !== 'hidden') {
        this.events.set(ev.seq, ev);
        this.replaced = true;
      }
      return false;
    }
    if (ev.kind === 'hide' && ev.body && ev.body.seq != null) this.hides.set(ev.body.seq, ev);
    this.events.set(ev.seq, ev);
    this.quotes.delete(ev.seq);
    if (this.oldest === null || ev.seq < this.oldest) this.oldest = ev.seq;
    if (ev.seq > this.maxSeq) this.maxSeq = ev.seq;
    this.advance();
    return true;
  }

  /** The subscribe reply: when we had no position, the head becomes it. */
  setHead(head) {
    if (this.lastSeq === null) {
      this.lastSeq = head;
      this.advance();
    }
  }

  advance() {
    if (this.lastSeq === null) return;
    while (this.events.has(this.lastSeq + 1)) this.lastSeq += 1;
  }

  /** A seq above lastSeq + 1 is known: the events between are missing. */
  gap() {
    if (this.lastSeq === null) return null;
    return this.maxSeq > this.lastSeq + 1 ? { from: this.lastSeq + 1, to: this.maxSeq - 1 } : null;
  }

  sorted() {
    return [...this.events.values()].sort((a, b) => a.seq - b.seq);
  }

  lookup(seq) {
    return this.events.get(seq) || this.quotes.get(seq) || null;
  }
}

// ---------------------------------------------------------------------------
// Outbox
// ---------------------------------------------------------------------------

/**
 * Items: {client_key, group, text, reply_to?, images?, created, failed?}. Order is
 * the order written; they are sent one at a time in that order.
 */
export class Outbox {
  constructor(accountId) {
    this.accountId = accountId;
    this.key = LS.outbox(accountId);
    this.items = this.load();
  }

  load() {
    try {
      const v = JSON.parse(localStorage.getItem(this.key) || '[]');
      return Array.isArray(v) ? v.filter((i) => i && i.client_key && i.group && typeof i.text === 'string') : [];
    } catch {
      return [];
    }
  }

  save() {
    try {
      localStorage.setItem(this.key, JSON.stringify(this.items));
    } catch {
      // Storage full or disabled: the queue still lives in memory.
    }
  }

  newKey() {
    let n = Number(localStorage.getItem(LS.counter) || '0') + 1;
    if (!Number.isFinite(n)) n = 1;
    localStorage.setItem(LS.counter, String(n));
    return `web-${this.accountId}-${Date.now()}-${n}`;
  }

  // Every change re-reads the stored queue first: another tab of the same
  // account may have queued messages of its own, which must not be erased.

  add(group, text, replyTo, images) {
    const item = { client_key: this.newKey(), group, text, created: Date.now() };
    if (replyTo != null) item.reply_to = replyTo;
    if (images && images.length) item.images = images;
    this.merge();
    this.items.push(item);
    this.save();
    return item;
  }

  remove(clientKey) {
    this.merge();
    this.items = this.items.filter((i) => i.client_key !== clientKey);
    this.save();
  }

  markFailed(clientKey, code) {
    this.merge();
    const it = this.items.find((i) => i.client_key === clientKey);
    if (it) {
      it.failed = code;
      this.save();
    }
  }

  /** Ours plus whatever other tabs stored, in creation order. */
  merge() {
    const stored = this.load();
    const known = new Set(this.items.map((i) => i.client_key));
    const extra = stored.filter((i) => !known.has(i.client_key));
    if (extra.length) this.items = [...this.items, ...extra].sort((a, b) => a.created - b.created);
  }

  /** The next item to send, oldest first, skipping failed ones. */
  next(skip) {
    return this.items.find((i) => !i.failed && !(skip && skip.has(i.client_key))) || null;
  }

  forGroup(group) {
    return this.items.filter((i) => i.group === group);
  }
}
