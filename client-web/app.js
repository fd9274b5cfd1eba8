// app.js — the villagehub web client: screens, routing and the glue between
// the socket (hub.js), what we know (state.js) and the DOM.
//
// Screens: login → my groups → a group with its five channels (chat works;
// notices, requests, deliberation and exchange say "coming soon" until their
// protocol exists). Routing is by location.hash: #/login, #/groups,
// #/g/<group>/<channel>. Every DOM node with user text is filled through
// textContent, never innerHTML.

import { t, setLang, getLang, tables } from './i18n.js';
import { Hub } from './hub.js';
import { GroupLog, Outbox, loadSession, saveSession, clearSession } from './state.js';

const CHANNELS = ['chat', 'notices', 'requests', 'deliberation', 'exchange'];
const CLIENT_NAME = 'villagehub-web/0.1';
/** First history page when a group is opened; later pages use the same size. */
const PAGE = 50;
/** Errors after which a send is worth retrying with the same client_key. */
const RETRYABLE = new Set(['rate_limited', 'unavailable', 'internal']);
const LS_LANG = 'vh.lang';
const LS_LARGE = 'vh.largeText';

const app = {
  session: null,
  hub: null,
  outbox: null,
  /** group id → GroupLog, in welcome order. */
  groups: new Map(),
  welcomed: false,
  limits: { max_text: 2000, history_limit: 200 },
  /** client_keys of sends waiting for their reply on the current connection. */
  inflight: new Set(),
  /** client_key → {item, seq}: acknowledged, but the event push not seen yet. */
  acked: new Map(),
  /**
   * client_keys of queued messages whose event has (very likely) arrived
   * already — a resume replays a message whose `sent` reply was lost — but
   * whose own `sent` reply has not: hidden meanwhile so that the message is
   * not on screen twice. Cleared by that reply (or a failure).
   */
  superseded: new Set(),
  flushing: false,
  /** {group, seq} the composer answers, or null. */
  replyTo: null,
  /** group id → unsent composer text. */
  drafts: new Map(),
  autoOpened: false,
  /** i18n key of the login screen's error, so a language switch translates it. */
  loginError: null,
  /** The phone typed on the login screen, kept across re-renders. */
  loginPhone: '',
  loadingOlder: new Set(),
  /** welcome.account (party, status) and welcome.application (pending / rejected). */
  account: null,
  application: null,
  /** group id → Map(account id → application), for the approvals queue. */
  applications: new Map(),
  /** Set while a change_password is under way: its 4003 close is expected. */
  passwordChanged: false,
  quoteFetches: new Set(),
};

// Governance channels (see the end of this file).
const GOV_CHANNELS = new Set(['notices', 'requests', 'deliberation', 'exchange']);
const NOTICE_CATEGORIES = ['announcement', 'affairs', 'party', 'election'];
const REQUEST_CATEGORIES = ['env', 'garbage', 'parking', 'property', 'repair', 'danger', 'security', 'noise',
  'illegal_build', 'traffic', 'green', 'utilities', 'elderly', 'medical', 'jobs', 'neighbours', 'culture', 'other'];
const FIRST_RESPONSE_MS = 15 * 3600 * 1000;
/** {group, channel, seq} of the opened notice or request, or null. */
app.govDetail = null;
/** group → the last receipts of the opened notice. */
app.receipts = null;
const govLoading = new Set();
let govTimer = null;

// ---------------------------------------------------------------------------
// Small DOM helpers
// ---------------------------------------------------------------------------

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const $ = (sel, root = document) => root.querySelector(sel);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function svgIcon(path, cls = 'icon') {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', cls);
  svg.setAttribute('aria-hidden', 'true');
  const p = document.createElementNS(ns, 'path');
  p.setAttribute('d', path);
  svg.append(p);
  return svg;
}
const ICON_BACK = 'M15.4 4.6 8 12l7.4 7.4-1.8 1.8L4.4 12l9.2-9.2z';
const ICON_SEND = 'M3 20.5 21 12 3 3.5v6.6l12 1.9-12 1.9z';
const ICON_IMAGE = 'M4 5h16a1 1 0 0 1 1 1v12a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V6a1 1 0 0 1 1-1zm1 2v8.6l4-4 3 3 2-2 4 4V7zm10.5 1.5a1.5 1.5 0 1 1 0 3 1.5 1.5 0 0 1 0-3z';
const ICON_CLOCK = 'M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm0 2a8 8 0 1 1 0 16 8 8 0 0 1 0-16zm-1 3v6l5 3 1-1.6-4-2.4V7z';

let toastTimer = null;
function toast(text) {
  const el = $('#toast');
  el.textContent = text;
  el.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove('show'), 4500);
}

function errorText(err) {
  const code = err && err.code;
  const key = `error.${code}`;
  const s = t(key);
  return s === key ? t('error.unknown', { message: (err && err.message) || String(err) }) : s;
}

function formatTime(ts) {
  const d = new Date(ts);
  const now = new Date();
  const lang = getLang();
  const time = d.toLocaleTimeString(lang, { hour: '2-digit', minute: '2-digit', hour12: false });
  const sameDay = (a, b) => a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
  if (sameDay(d, now)) return time;
  const y = new Date(now);
  y.setDate(now.getDate() - 1);
  if (sameDay(d, y)) return t('time.yesterday', { time });
  const date = d.toLocaleDateString(lang, d.getFullYear() === now.getFullYear()
    ? { month: 'numeric', day: 'numeric' } : { year: 'numeric', month: 'numeric', day: 'numeric' });
  return `${date} ${time}`;
}

// ---------------------------------------------------------------------------
// Settings shared by every screen
// ---------------------------------------------------------------------------

function largeText() {
  return localStorage.getItem(LS_LARGE) === '1';
}

function toggleLarge() {
  const on = !largeText();
  localStorage.setItem(LS_LARGE, on ? '1' : '0');
  document.documentElement.classList.toggle('large', on);
  render();
}

function toggleLang() {
  const next = getLang() === 'zh-CN' ? 'en' : 'zh-CN';
  localStorage.setItem(LS_LANG, next);
  setLang(next);
  render();
}

function settingsButtons({ lang = true } = {}) {
  return [
    h('button', {
      class: 'tool', type: 'button', id: 'large-toggle', 'aria-pressed': largeText() ? 'true' : 'false',
      'aria-label': largeText() ? t('settings.large_text.on') : t('settings.large_text.off'),
      onclick: toggleLarge,
    }, t('settings.large_text')),
    lang && h('button', {
      class: 'tool', type: 'button', id: 'lang-toggle', lang: getLang() === 'zh-CN' ? 'en' : 'zh-CN',
      'aria-label': t('settings.lang.label'), onclick: toggleLang,
    }, t('settings.lang')),
  ];
}

function connPill() {
  const state = app.hub ? app.hub.state : 'connecting';
  const shown = state === 'idle' || state === 'stopped' ? 'connecting' : state;
  return h('span', { class: `conn conn-${shown}`, id: 'conn', 'data-state': shown, role: 'status' },
    h('span', { class: 'dot', 'aria-hidden': 'true' }), h('span', { class: 'conn-label' }, t(`conn.${shown}`)));
}

function updateConn() {
  const old = $('#conn');
  if (old) old.replaceWith(connPill());
  const banner = $('#offline-banner');
  if (banner) banner.hidden = !app.hub || app.hub.state === 'connected' || app.hub.state === 'connecting';
  for (const el of document.querySelectorAll('.msg.pending')) refreshPendingLabel(el);
}

// ---------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------

function route() {
  const m = location.hash.match(/^#\/g\/(\d+)(?:\/(\w+))?/);
  if (m) {
    const channel = m[2] === 'manage' ? 'manage' : CHANNELS.includes(m[2]) ? m[2] : 'chat';
    return { name: 'group', group: Number(m[1]), channel };
  }
  if (location.hash.startsWith('#/groups')) return { name: 'groups' };
  const reg = location.hash.match(/^#\/register(?:\/(\d+))?/);
  if (reg) return { name: 'register', group: reg[1] ? Number(reg[1]) : null };
  return { name: 'login' };
}

function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function render() {
  const r = route();
  if (!app.session && r.name !== 'login' && r.name !== 'register') {
    go('#/login');
    return;
  }
  if (app.session && (r.name === 'login' || r.name === 'register')) {
    go('#/groups');
    return;
  }
  if (r.name !== 'group' || r.group !== (app.replyTo && app.replyTo.group)) app.replyTo = null;
  const root = $('#app');
  root.replaceChildren();
  document.title = t('app.name');
  closeSheet();
  if (r.name === 'login') root.append(renderLogin());
  else if (r.name === 'register') root.append(renderRegister(r.group));
  else if (r.name === 'groups') root.append(isOfficerHome() && app.welcomed ? renderDashboard() : renderGroups());
  else root.append(renderGroup(r.group, r.channel));
  if (r.name === 'group' && r.channel === 'chat') afterChatMounted(r.group);
  if (r.name === 'group' && r.channel === 'manage') afterManageMounted(r.group);
  if (r.name === 'group' && GOV_CHANNELS.has(r.channel)) afterGovMounted(r.group);
  if (r.name === 'group') updateManageCount(r.group);
  if (r.name === 'groups' && $('#dashboard')) afterDashMounted();
  else if (app.dash.watching) stopWatchStats(); // the live totals are for the dashboard only
}

// ---------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------

function renderLogin() {
  const err = h('p', { class: 'form-error', id: 'login-error', role: 'alert' }, app.loginError ? t(app.loginError) : '');
  err.hidden = !app.loginError;
  const phone = h('input', {
    id: 'phone', name: 'phone', type: 'tel', inputmode: 'numeric', autocomplete: 'username',
    placeholder: t('login.phone.placeholder'), maxlength: '20', required: true,
  });
  phone.value = app.loginPhone;
  phone.addEventListener('input', () => { app.loginPhone = phone.value; });
  const password = h('input', {
    id: 'password', name: 'password', type: 'password', autocomplete: 'current-password',
    placeholder: t('login.password.placeholder'), required: true,
  });
  const submit = h('button', { class: 'primary big', type: 'submit', id: 'login-submit' }, t('login.submit'));
  const form = h('form', { class: 'login-form', novalidate: true, onsubmit: (e) => { e.preventDefault(); login(phone, password, submit, err); } },
    h('label', { for: 'phone' }, t('login.phone')), phone,
    h('label', { for: 'password' }, t('login.password')), password,
    err, submit,
    h('p', { class: 'hint' }, t('login.hint')));
  return h('main', { class: 'screen login' },
    h('div', { class: 'toolbar' }, settingsButtons()),
    h('div', { class: 'brand' },
      h('div', { class: 'logo', 'aria-hidden': 'true' }, t('app.logo')),
      h('h1', {}, t('app.name')),
      h('p', { class: 'tagline' }, t('app.tagline'))),
    h('section', { class: 'card' }, h('h2', {}, t('login.title')), form,
      h('a', { class: 'secondary big register-link', href: '#/register', id: 'register-link' }, t('register.link'))));
}

async function login(phoneEl, passwordEl, submit, errEl) {
  const phone = phoneEl.value.replace(/[\s-]/g, '');
  const password = passwordEl.value;
  const fail = (key) => {
    app.loginError = key;
    errEl.textContent = t(key);
    errEl.hidden = false;
    submit.disabled = false;
    submit.textContent = t('login.submit');
  };
  if (!phone || !password) return fail('login.missing');
  submit.disabled = true;
  submit.textContent = t('login.busy');
  const key = await signIn(phone, password);
  if (key) fail(key);
}

/** POST /api/login; on success starts the session. Returns an i18n error key or null. */
async function signIn(phone, password) {
  const fail = (key) => key;
  let res;
  try {
    res = await fetch('/api/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ phone, password }),
    });
  } catch {
    return fail('login.network');
  }
  if (!res.ok) {
    if (res.status === 401 || res.status === 400 || res.status === 404) return fail('login.failed');
    if (res.status === 429) return fail('login.rate_limited');
    return fail('login.server');
  }
  let body;
  try {
    body = await res.json();
  } catch {
    return fail('login.server');
  }
  if (!body || !body.token || !body.account) return fail('login.server');
  app.loginError = null;
  app.session = { token: body.token, expires_at: body.expires_at, account: body.account };
  saveSession(app.session);
  startHub();
  go('#/groups');
  return null;
}

/** The logout button: revoke this account's tokens on the server, then forget them here. */
function logoutEverywhere() {
  const token = app.session && app.session.token;
  if (token) {
    fetch('/api/logout', { method: 'POST', headers: { authorization: `Bearer ${token}` } }).catch(() => {});
  }
  logout();
}

function logout(messageKey) {
  if (app.hub) app.hub.stop();
  app.application = null;
  app.applications.clear();
  app.passwordChanged = false;
  app.hub = null;
  app.session = null;
  app.outbox = null;
  app.groups = new Map();
  app.welcomed = false;
  app.inflight.clear();
  app.acked.clear();
  app.superseded.clear();
  app.replyTo = null;
  app.drafts.clear();
  app.autoOpened = false;
  app.loginError = messageKey || null;
  app.offices = [];
  app.warnings = [];
  resetDash();
  app.dash.groupStats.clear();
  app.dash.online.clear();
  app.dash.warningsOp = null;
  app.dash.noWatch = false;
  clearSession();
  go('#/login');
}

// ---------------------------------------------------------------------------
// Connection and protocol glue
// ---------------------------------------------------------------------------

function wsUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

function startHub() {
  app.outbox = new Outbox(app.session.account.id);
  const hub = new Hub({ url: wsUrl(), token: app.session.token, clientName: CLIENT_NAME });
  app.hub = hub;
  hub.addEventListener('state', () => {
    if (app.hub !== hub) return;
    if (!hub.connected) app.inflight.clear();
    updateConn();
  });
  hub.addEventListener('welcome', (e) => { if (app.hub === hub) onWelcome(e.detail); });
  hub.addEventListener('event', (e) => { if (app.hub === hub) onEvent(e.detail); });
  hub.addEventListener('unauthorized', () => { if (app.hub === hub) logout('login.expired'); });
  hub.addEventListener('revoked', () => { if (app.hub === hub) logout(app.passwordChanged ? 'password.changed' : 'error.close.4003'); });
  hub.addEventListener('membership', (e) => { if (app.hub === hub) onMembership(e.detail); });
  hub.addEventListener('application', (e) => { if (app.hub === hub) onApplication(e.detail); });
  hub.addEventListener('receipts', (e) => { if (app.hub === hub) onReceipts(e.detail); });
  hub.addEventListener('warning', (e) => { if (app.hub === hub) onWarning(e.detail); });
  hub.addEventListener('stats_update', (e) => { if (app.hub === hub) onStatsUpdate(e.detail); });
  hub.addEventListener('presence_update', (e) => { if (app.hub === hub) onPresenceUpdate(e.detail); });
  hub.addEventListener('notice', (e) => {
    const { code, message } = e.detail;
    toast(code && code.startsWith('close.') ? t(`error.${code}`) : errorText({ code, message }));
  });
  hub.start();
}

function onWelcome(w) {
  if (w.limits) app.limits = w.limits;
  app.account = w.account || null;
  app.offices = w.offices || [];
  // A watch belongs to the connection it was asked on.
  app.dash.watching = null;
  app.application = w.application || null;
  const r0 = route();
  const shownInfo = r0.name === 'group' && app.groups.has(r0.group) ? JSON.stringify(app.groups.get(r0.group).info) : null;
  if (w.account && w.account.name && app.session.account.name !== w.account.name) {
    app.session.account = w.account;
    saveSession(app.session);
  }
  const next = new Map();
  for (const g of w.groups || []) {
    const log = app.groups.get(g.id) || new GroupLog(g);
    log.info = g;
    next.set(g.id, log);
  }
  app.groups = next;
  const first = !app.welcomed;
  app.welcomed = true;
  for (const log of next.values()) subscribe(log);
  for (const log of next.values()) if (log.info.role === 'cadre' || log.info.role === 'secretary') fetchApplications(log.id);
  const r = route();
  if (r.name === 'groups' && !app.autoOpened && next.size === 1 && !isOfficerHome()) {
    // One group, as for most residents: skip the list.
    app.autoOpened = true;
    go(`#/g/${[...next.keys()][0]}/chat`);
  } else if (first || r.name === 'groups' || (r.name === 'group' && !next.has(r.group))) {
    app.autoOpened = true;
    render();
  } else if (shownInfo !== null && r.name === 'group' && next.has(r.group)
    && JSON.stringify(next.get(r.group).info) !== shownInfo) {
    // A new role or a mute changes what this screen offers: draw it again.
    render();
  }
  // A reconnect leaves the open chat as it is (scroll position, draft, reply):
  // the resumed events are inserted into it one by one.
  flush();
}

async function subscribe(log) {
  const op = { op: 'subscribe', group: log.id };
  // Resume exactly after the last event we hold; the server replays the rest.
  if (log.lastSeq !== null) op.since = log.lastSeq;
  let reply;
  try {
    reply = await app.hub.request(op);
  } catch (err) {
    if (err.code === 'disconnected') return;
    if (err.code === 'unauthorized') return logout('login.expired');
    if (err.code === 'rate_limited' || err.code === 'unavailable' || err.code === 'internal') {
      await sleep(1000 + Math.random() * 1000);
      if (app.hub && app.hub.connected && app.groups.get(log.id) === log) subscribe(log);
      return;
    }
    toast(errorText(err));
    return;
  }
  if (log.lastSeq !== null && reply.head < log.lastSeq) {
    // The server's log is shorter than what we hold (restored from an older
    // backup): our seqs no longer name the same events. Start afresh rather
    // than take new events for ones we already have.
    log.reset();
    if (isOpen(log.id)) render();
    subscribe(log);
    return;
  }
  log.setHead(reply.head);
  checkGap(log);
  if (govOpen(log.id)) afterGovMounted(log.id);
  if (isOpen(log.id) && !log.historyLoaded) loadOlder(log);
  refreshChatChrome(log);
}

function onEvent(ev) {
  const log = app.groups.get(ev.group);
  if (!log) return;
  if (!addEvent(log, ev)) return; // (group, seq) already shown: a resume or history overlap
  dashOnEvent(ev);
  if (ev.channel !== 'chat' || ev.kind === 'like' || ev.kind === 'unlike') {
    if (govOpen(log.id)) scheduleGovDraw(log.id);
    if ((ev.kind === 'like' || ev.kind === 'unlike') && ev.body) wantLikes(log, ev.body.target, true);
    if (!inChat(ev)) { checkGap(log); return; }
  }
  if (isOpen(log.id)) {
    insertMessage(log, ev, { live: true });
  } else {
    replacePending(ev);
    if (ev.channel === 'chat' && ev.kind === 'message') {
      log.unread += 1;
      const badge = document.querySelector(`.group-card[data-group="${log.id}"] .unread`);
      if (badge) {
        badge.textContent = t('groups.unread', { n: log.unread });
        badge.hidden = false;
      }
    }
  }
  checkGap(log);
}

/**
 * An event is on screen: the greyed copy of the same message goes. Either
 * its `sent` said this seq (acked), or — a resume replaying a message whose
 * reply was lost — it is my queued message with the same text, hidden until
 * its own (duplicate) `sent` reply confirms and removes it.
 */
function replacePending(ev) {
  for (const [key, a] of app.acked) {
    if (a.item.group === ev.group && a.seq === ev.seq) {
      app.acked.delete(key);
      removePendingEl(key);
      return;
    }
  }
  if (app.session && ev.author.id === app.session.account.id && app.outbox) supersede(ev);
}

function supersede(ev) {
  const body = ev.body || {};
  const item = app.outbox.items.find((i) => i.group === ev.group && !i.failed
    && !app.superseded.has(i.client_key) && i.text === body.text
    && (i.reply_to ?? null) === (body.reply_to ?? null));
  if (!item) return;
  app.superseded.add(item.client_key);
  refreshPending(item);
}

/** Events are gap-free by protocol; should one ever be missing, fetch it. */
async function checkGap(log) {
  const gap = log.gap();
  if (!gap || log.filling || !app.hub || !app.hub.connected) return;
  log.filling = true;
  const before = log.lastSeq;
  try {
    const limit = Math.min(gap.to - gap.from + 1, app.limits.history_limit || 200);
    const r = await app.hub.request({ op: 'history', group: log.id, before: gap.to + 1, limit });
    for (const ev of r.events || []) onEvent(ev);
  } catch {
    // Retried on the next event or reconnect.
    log.filling = false;
    return;
  }
  log.filling = false;
  // A gap wider than one history page takes several rounds; stop if a round
  // brought nothing (the next reconnect's resume will try again).
  if (log.lastSeq !== before) checkGap(log);
}

async function loadOlder(log) {
  if (log.lastSeq === null || app.loadingOlder.has(log.id) || !app.hub || !app.hub.connected) return;
  if (log.historyLoaded && !log.more) return;
  const before = log.oldest !== null ? log.oldest : log.lastSeq + 1;
  if (before <= 1) {
    log.more = false;
    log.historyLoaded = true;
    refreshChatChrome(log);
    return;
  }
  app.loadingOlder.add(log.id);
  refreshChatChrome(log);
  const list = isOpen(log.id) ? $('#messages') : null;
  const fromBottom = list ? list.scrollHeight - list.scrollTop : 0;
  const first = !log.historyLoaded;
  try {
    const r = await app.hub.request({ op: 'history', group: log.id, before, limit: PAGE });
    for (const ev of r.events || []) {
      if (addEvent(log, ev)) {
        if (isOpen(log.id)) insertMessage(log, ev, { live: false });
        replacePending(ev);
      }
    }
    log.more = !!r.more && (r.events || []).length > 0;
    log.historyLoaded = true;
  } catch (err) {
    if (err.code !== 'disconnected') toast(errorText(err));
  } finally {
    app.loadingOlder.delete(log.id);
  }
  refreshChatChrome(log);
  const list2 = isOpen(log.id) ? $('#messages') : null;
  if (list2) {
    if (first) list2.scrollTop = list2.scrollHeight;
    else list2.scrollTop = list2.scrollHeight - fromBottom; // keep what the reader was looking at
  }
  for (const ev of log.events.values()) if (ev.body && ev.body.reply_to) ensureQuote(log, ev.body.reply_to);
}

/** Loads a quoted message older than the loaded page, for its preview. */
async function ensureQuote(log, seq) {
  if (log.lookup(seq) || app.quoteFetches.has(`${log.id}:${seq}`) || !app.hub || !app.hub.connected) return;
  app.quoteFetches.add(`${log.id}:${seq}`);
  try {
    const r = await app.hub.request({ op: 'history', group: log.id, before: seq + 1, limit: 1 });
    const ev = (r.events || []).find((e) => e.seq === seq);
    if (ev && !log.events.has(seq)) log.quotes.set(seq, ev);
    if (isOpen(log.id)) {
      for (const q of document.querySelectorAll(`.quote[data-quote="${seq}"]`)) q.replaceWith(quoteEl(log, seq));
    }
  } catch {
    app.quoteFetches.delete(`${log.id}:${seq}`);
  }
}

// ---------------------------------------------------------------------------
// The outbox: written messages go out one by one, in order, with their keys
// ---------------------------------------------------------------------------

async function flush() {
  const hub = app.hub;
  if (app.flushing || !hub || !hub.connected || !app.welcomed) return;
  app.flushing = true;
  try {
    for (;;) {
      if (app.hub !== hub || !hub.connected) break;
      const item = app.outbox.next();
      if (!item) break;
      if (!app.groups.has(item.group)) {
        // The welcome no longer lists this group: it cannot be sent.
        app.outbox.markFailed(item.client_key, 'not_found');
        refreshPending(item);
        continue;
      }
      const key = item.client_key;
      app.inflight.add(key);
      refreshPending(item);
      const body = { text: item.text };
      if (item.reply_to != null) body.reply_to = item.reply_to;
      if (item.images && item.images.length) body.images = item.images;
      try {
        const r = await hub.request({ op: 'send', group: item.group, channel: 'chat', body, client_key: key });
        app.inflight.delete(key);
        onSent(item, r.seq);
      } catch (err) {
        app.inflight.delete(key);
        refreshPending(item);
        if (err.code === 'disconnected') break;
        if (err.code === 'unauthorized') {
          logout('login.expired');
          break;
        }
        if (RETRYABLE.has(err.code)) {
          // Same client_key on retry: the server never makes a second event.
          await sleep(err.code === 'rate_limited' ? 1000 : 2000 + Math.random() * 2000);
          continue;
        }
        app.superseded.delete(key);
        app.outbox.markFailed(key, err.code);
        refreshPending(item);
        toast(errorText(err));
      }
    }
  } finally {
    app.flushing = false;
  }
  // A message written while the last reply was on its way.
  if (app.hub === hub && hub.connected && app.outbox && app.outbox.next()) flush();
}

function onSent(item, seq) {
  app.superseded.delete(item.client_key);
  app.outbox.remove(item.client_key);
  const log = app.groups.get(item.group);
  if (liveQueue.some(([, ev]) => ev.group === item.group && ev.seq === seq)) {
    // Its event is about to be drawn: the copy goes in that same frame.
    app.acked.set(item.client_key, { item, seq });
    refreshPending(item);
    return;
  }
  if (!log || log.events.has(seq) || (log.lastSeq !== null && seq <= log.lastSeq)) {
    // Already shown (the push came first), or older than what is loaded.
    removePendingEl(item.client_key);
    return;
  }
  // Durable, but its push is still on the way: keep it greyed until then, so
  // it never vanishes and reappears.
  app.acked.set(item.client_key, { item, seq });
  refreshPending(item);
}

function sendMessage(group, text, images) {
  const log = app.groups.get(group);
  const reply = app.replyTo && app.replyTo.group === group ? app.replyTo.seq : null;
  const item = app.outbox.add(group, text, reply, images);
  app.replyTo = null;
  if (log && isOpen(group)) {
    const pendingList = $('#pending');
    pendingList.append(pendingEl(log, item));
    updateReplyBar(log);
    updateEmpty(log);
    scrollToBottom(true);
  }
  flush();
}

// ---------------------------------------------------------------------------
// Groups screen
// ---------------------------------------------------------------------------

function renderGroups() {
  const name = app.session.account.name || '';
  const cards = [...app.groups.values()].map((log) => {
    const g = log.info;
    const unread = h('span', { class: 'unread' }, t('groups.unread', { n: log.unread }));
    unread.hidden = log.unread === 0;
    return h('li', {},
      h('a', { class: 'group-card', href: `#/g/${g.id}/chat`, dataset: { group: String(g.id) } },
        h('span', { class: 'group-avatar', 'aria-hidden': 'true' }, g.name.slice(0, 1)),
        h('span', { class: 'group-main' },
          h('span', { class: 'group-name' }, g.name),
          h('span', { class: 'group-sub' }, `${g.town} · ${t(`kind.${g.kind}`)} · ${t(`role.${g.role}`)}`)),
        unread));
  });
  let body;
  if (!app.welcomed) body = h('p', { class: 'placeholder' }, t('groups.loading'));
  else if (app.application && !cards.length) body = renderApplication(app.application);
  else if (!cards.length) body = h('p', { class: 'placeholder' }, t('groups.empty'));
  else body = h('ul', { class: 'group-list' }, cards);
  const officer = [...app.groups.values()].some((l) => OFFICERS.has(l.info.role));
  return h('div', { class: 'screen groups' },
    h('header', { class: 'bar' },
      h('h1', { class: 'bar-title' }, officer ? t('groups.title.officer', { n: app.groups.size }) : t('groups.title')),
      connPill()),
    offlineBanner(),
    h('main', { class: 'content' },
      body,
      h('section', { class: 'me' },
        h('p', { class: 'me-name' }, name,
          app.account && app.account.party ? h('span', { class: 'badge badge-party' }, t('badge.party')) : null),
        h('div', { class: 'toolbar' }, settingsButtons()),
        h('button', { class: 'secondary big', type: 'button', id: 'change-password', onclick: openChangePassword }, t('password.title')),
        h('button', { class: 'secondary big', type: 'button', id: 'logout', onclick: () => logoutEverywhere() }, t('settings.logout')))));
}

function offlineBanner() {
  const b = h('p', { class: 'offline-banner', id: 'offline-banner', role: 'status' }, t('conn.offline.banner'));
  b.hidden = !app.hub || app.hub.state === 'connected' || app.hub.state === 'connecting';
  return b;
}

// ---------------------------------------------------------------------------
// Group screen
// ---------------------------------------------------------------------------

function isOpen(groupId) {
  const r = route();
  return r.name === 'group' && r.group === groupId && r.channel === 'chat' && !!$('#messages');
}

function renderGroup(groupId, channel) {
  const log = app.groups.get(groupId);
  const g = log ? log.info : null;
  const title = g ? g.name : '';
  if (log && channel === 'chat') {
    log.unread = 0;
  }
  const header = h('header', { class: 'bar' },
    h('a', { class: 'back', href: '#/groups', 'aria-label': t('nav.back') }, svgIcon(ICON_BACK)),
    h('div', { class: 'bar-title-wrap' },
      h('h1', { class: 'bar-title', id: 'group-title' }, title),
      g && h('p', { class: 'bar-sub' }, `${g.town} · ${t(`kind.${g.kind}`)}`)),
    connPill(),
    h('button', {
      class: 'tool tool-compact', type: 'button', id: 'large-toggle', 'aria-pressed': largeText() ? 'true' : 'false',
      'aria-label': largeText() ? t('settings.large_text.on') : t('settings.large_text.off'), onclick: toggleLarge,
    }, t('settings.large_text.short')));
  const tabs = h('nav', { class: 'tabs', role: 'tablist' }, CHANNELS.map((c) =>
    h('a', {
      class: `tab${c === channel ? ' active' : ''}`, role: 'tab', href: `#/g/${groupId}/${c}`,
      'aria-selected': c === channel ? 'true' : 'false', dataset: { channel: c },
    }, t(`channel.${c}`))));
  let main;
  if (!app.welcomed || !log) {
    main = h('main', { class: 'content' }, h('p', { class: 'placeholder' },
      app.welcomed ? t('error.not_found') : t('groups.loading')));
  } else if (channel === 'chat') {
    main = renderChat(log);
  } else if (channel === 'manage') {
    main = renderManage(log);
  } else if (GOV_CHANNELS.has(channel)) {
    main = renderGov(log, channel);
  } else {
    main = renderSoon(groupId, channel);
  }
  // Cadres, the secretary and officers: one strip to the approvals queue and
  // the audit log, under the tabs (the header has no room left on a phone).
  const manage = g && canManage(g.role) ? h('a', {
    class: `manage-strip${channel === 'manage' ? ' active' : ''}`, id: 'manage-link',
    href: channel === 'manage' ? `#/g/${groupId}/chat` : `#/g/${groupId}/manage`,
  }, h('span', { class: 'manage-title' }, t(OFFICERS.has(g.role) ? 'manage.officer' : 'manage.title')),
  h('span', { class: 'count', id: 'manage-count', hidden: true }),
  h('span', { class: 'manage-go' }, channel === 'manage' ? t('manage.close') : '›')) : null;
  return h('div', { class: 'screen group' }, header, tabs, manage, offlineBanner(), main);
}

function renderSoon(groupId, channel) {
  return h('main', { class: 'content soon', dataset: { channel } },
    h('div', { class: 'soon-card' },
      svgIcon(ICON_CLOCK, 'soon-icon'),
      h('h2', {}, t(`channel.${channel}.long`)),
      h('p', { class: 'soon-badge' }, t('channel.soon.title')),
      h('p', {}, t(`channel.soon.${channel}`)),
      h('p', { class: 'muted' }, t('channel.soon.meanwhile')),
      h('a', { class: 'primary big', href: `#/g/${groupId}/chat` }, t('channel.chat'))));
}

function renderChat(log) {
  const older = h('div', { class: 'older', id: 'older' });
  const list = h('ol', { class: 'msglist', id: 'msglist', 'aria-live': 'polite' });
  for (const ev of log.sorted()) if (inChat(ev)) list.append(messageEl(log, ev));
  const pending = h('ol', { class: 'msglist pendinglist', id: 'pending' });
  for (const item of app.outbox.forGroup(log.id)) pending.append(pendingEl(log, item));
  for (const a of app.acked.values()) if (a.item.group === log.id) pending.append(pendingEl(log, a.item));
  const empty = h('p', { class: 'placeholder chat-empty', id: 'chat-empty' }, t('chat.empty'));
  const messages = h('div', { class: 'messages', id: 'messages', onscroll: onMessagesScroll },
    older, list, pending, empty);
  const newBelow = h('button', { class: 'new-below', id: 'new-below', type: 'button', onclick: () => scrollToBottom(true) }, t('chat.new_below'));
  newBelow.hidden = true;

  const draft = app.drafts.get(log.id) || '';
  const input = h('textarea', {
    id: 'composer-input', rows: '1', placeholder: t('chat.placeholder'), 'aria-label': t('chat.placeholder'),
    enterkeyhint: 'send',
  });
  input.value = draft;
  const counter = h('span', { class: 'counter', id: 'composer-counter', 'aria-live': 'polite' });
  const sendBtn = h('button', { class: 'send', type: 'submit', id: 'send', 'aria-label': t('chat.send') },
    svgIcon(ICON_SEND), h('span', {}, t('chat.send')));
  const form = h('form', {
    class: 'composer', id: 'composer',
    onsubmit: (e) => {
      e.preventDefault();
      submitComposer(log, input);
    },
  }, imagesSupported() ? attachButton(log.id, () => drawAttachments(log.id)) : null, input, counter, sendBtn);
  input.addEventListener('input', () => {
    app.drafts.set(log.id, input.value);
    autosize(input);
    updateCounter(input, counter);
  });
  input.addEventListener('keydown', (e) => {
    // Enter sends; Shift+Enter is a new line; never while an IME (pinyin) is composing.
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      submitComposer(log, input);
    }
  });
  const replyBar = h('div', { class: 'replybar', id: 'replybar' });
  const attachments = h('div', { class: 'attachments', id: 'attachments', hidden: true });
  const role = log.info.role;
  const mutedUntil = log.info.muted_until && log.info.muted_until > Date.now() ? log.info.muted_until : null;
  let bottom = form;
  if (OFFICERS.has(role)) {
    bottom = h('p', { class: 'readonly-note', id: 'readonly-note' }, t('chat.readonly', { role: t(`role.${role}`) }));
  } else if (mutedUntil) {
    bottom = h('p', { class: 'readonly-note', id: 'muted-note' }, t('chat.muted', { until: formatTime(mutedUntil) }));
  }
  const main = h('main', { class: 'content chat', dataset: { group: String(log.id) } },
    messages, newBelow, replyBar, bottom === form ? attachments : null, bottom);
  if (bottom === form) queueMicrotask(() => drawAttachments(log.id));
  return main;
}

function afterChatMounted(groupId) {
  const log = app.groups.get(groupId);
  if (!log || !$('#messages')) return;
  refreshChatChrome(log);
  updateReplyBar(log);
  const input = $('#composer-input');
  if (input) {
    autosize(input);
    updateCounter(input, $('#composer-counter'));
  }
  scrollToBottom(true);
  if (!log.historyLoaded) loadOlder(log);
  for (const ev of log.events.values()) if (ev.body && ev.body.reply_to) ensureQuote(log, ev.body.reply_to);
}

function submitComposer(log, input) {
  const text = input.value.trim();
  const images = app.attachments.get(log.id) || [];
  if (!text && !images.length) return;
  if (!text) {
    // The server refuses a message without text ("text is empty"), pictures or not.
    toast(t('images.need_text'));
    input.focus();
    return;
  }
  const max = app.limits.max_text || 2000;
  if ([...text].length > max) {
    toast(t('chat.too_long', { max }));
    return;
  }
  input.value = '';
  app.drafts.delete(log.id);
  autosize(input);
  updateCounter(input, $('#composer-counter'));
  app.attachments.delete(log.id);
  drawAttachments(log.id);
  sendMessage(log.id, text, images);
  input.focus();
}

function autosize(input) {
  input.style.height = 'auto';
  input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
}

function updateCounter(input, counter) {
  const max = app.limits.max_text || 2000;
  const n = [...input.value].length;
  counter.textContent = n > max * 0.8 ? t('chat.count', { n, max }) : '';
  counter.classList.toggle('over', n > max);
}

/** The "show older" row, the empty note: everything around the list. */
function refreshChatChrome(log) {
  if (!isOpen(log.id)) return;
  const older = $('#older');
  older.replaceChildren();
  if (app.loadingOlder.has(log.id)) {
    older.dataset.state = 'loading';
    older.append(h('p', { class: 'muted' }, t('chat.loading_older')));
  } else if (log.historyLoaded && log.more) {
    older.dataset.state = 'more';
    older.append(h('button', { class: 'secondary', type: 'button', id: 'load-older', onclick: () => loadOlder(log) }, t('chat.load_older')));
  } else if (log.historyLoaded && log.events.size > 0) {
    older.dataset.state = 'end';
    older.append(h('p', { class: 'muted' }, t('chat.no_older')));
  } else {
    older.dataset.state = log.historyLoaded ? 'end' : 'loading';
  }
  updateEmpty(log);
}

function updateEmpty(log) {
  const empty = $('#chat-empty');
  if (!empty) return;
  empty.hidden = !(log.historyLoaded && log.events.size === 0 && !$('#pending').children.length);
}

function onMessagesScroll(e) {
  const el = e.currentTarget;
  if (el.scrollHeight - el.scrollTop - el.clientHeight < 40) $('#new-below').hidden = true;
  if (el.scrollTop < 60) {
    const r = route();
    const log = app.groups.get(r.group);
    if (log && log.historyLoaded && log.more) loadOlder(log);
  }
}

function nearBottom() {
  const el = $('#messages');
  return !el || el.scrollHeight - el.scrollTop - el.clientHeight < 120;
}

function scrollToBottom(force) {
  const el = $('#messages');
  if (!el) return;
  if (force || nearBottom()) el.scrollTop = el.scrollHeight;
  const nb = $('#new-below');
  if (nb) nb.hidden = true;
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

function roleBadge(role) {
  if (role !== 'cadre' && role !== 'secretary') return null;
  return h('span', { class: `badge badge-${role}` }, t(`role.${role}`));
}

function snippet(text, n = 40) {
  const chars = [...text.replace(/\s+/g, ' ')];
  return chars.length > n ? `${chars.slice(0, n).join('')}…` : chars.join('');
}

function quoteEl(log, seq) {
  const q = log.lookup(seq);
  const el = h('div', { class: 'quote', dataset: { quote: String(seq) } });
  if (q) {
    const hidden = hiddenOf(log, q);
    const text = hidden && hidden.text == null ? t('chat.hidden.short') : (q.body.text || '');
    el.append(h('span', { class: 'quote-author' }, t('chat.quote_author', { name: q.author.name })), snippet(text));
    el.addEventListener('click', (e) => {
      const target = document.querySelector(`#msglist .msg[data-seq="${seq}"]`);
      if (target) {
        e.stopPropagation();
        target.scrollIntoView({ block: 'center', behavior: 'smooth' });
        target.classList.add('flash');
        setTimeout(() => target.classList.remove('flash'), 1200);
      }
    });
  } else {
    el.append(t('chat.quote_missing', { seq }));
    el.classList.add('quote-missing');
  }
  return el;
}

function messageEl(log, ev) {
  if (ev.kind === 'hide') return hideNoteEl(ev);
  const mine = app.session && ev.author.id === app.session.account.id;
  const hidden = hiddenOf(log, ev);
  const text = hidden ? (hidden.text || '') : (ev.body && ev.body.text) || '';
  const more = messageActions(log, ev).length ? h('button', {
    class: 'msg-more', type: 'button', 'aria-label': t('mod.menu'), title: t('mod.menu'),
    onclick: (e) => { e.stopPropagation(); openMessageMenu(log, ev); },
  }, '⋯') : null;
  let content;
  if (hidden && hidden.text == null) {
    content = h('div', { class: 'hidden-note' }, t('chat.hidden', { reason: hidden.reason }));
  } else if (hidden) {
    content = [h('div', { class: 'hidden-mark' }, t('chat.hidden.mark', { reason: hidden.reason })), h('div', { class: 'text hidden-text' }, text), thumbs(hidden.images)];
  } else {
    const images = ev.body && Array.isArray(ev.body.images) ? ev.body.images : [];
    content = [h('div', { class: 'text' }, text), thumbs(images)];
  }
  const li = h('li', {
    class: `msg${mine ? ' mine' : ''}${hidden ? ' is-hidden' : ''}`, tabindex: '0', role: 'button',
    dataset: { seq: String(ev.seq), group: String(ev.group), author: String(ev.author.id) },
    'aria-label': `${ev.author.name}: ${hidden && hidden.text == null ? t('chat.hidden', { reason: hidden.reason }) : text}`,
    title: t('chat.tap_to_reply'),
  },
  h('div', { class: 'meta' },
    h('span', { class: 'author' }, mine ? t('chat.me') : ev.author.name),
    roleBadge(ev.author.role),
    ev.author.party ? h('span', { class: 'badge badge-party' }, t('badge.party')) : null,
    ev.author.migrant ? h('span', { class: 'badge badge-migrant' }, t('badge.migrant')) : null,
    h('time', { datetime: new Date(ev.ts).toISOString() }, formatTime(ev.ts)),
    more),
  ev.body && ev.body.reply_to != null ? quoteEl(log, ev.body.reply_to) : null,
  content,
  ev.kind === 'message' ? likeButton(log, ev.seq) : null);
  if (ev.kind === 'message') wantLikes(log, ev.seq);
  const pick = () => setReply(log, ev.seq);
  li.addEventListener('click', pick);
  li.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      pick();
    }
  });
  return li;
}

/**
 * Live events are put on screen in batches, one layout per batch: a resume
 * after a long absence can bring hundreds at once.
 */
const liveQueue = [];
let liveTimer = null;

function insertMessage(log, ev, { live }) {
  if (!live) {
    placeMessage(log, ev);
    updateEmpty(log);
    return;
  }
  liveQueue.push([log, ev]);
  if (!liveTimer) liveTimer = setTimeout(flushLive, 16);
}

function flushLive() {
  liveTimer = null;
  const batch = liveQueue.splice(0);
  const list = $('#msglist');
  const stick = list ? nearBottom() : false;
  let mine = false;
  let shown = null;
  for (const [log, ev] of batch) {
    if (isOpen(log.id) && placeMessage(log, ev)) shown = log;
    // In the same frame as the message appears, never before or after it.
    replacePending(ev);
    if (app.session && ev.author.id === app.session.account.id) mine = true;
  }
  if (!shown) return;
  updateEmpty(shown);
  if (stick || mine) scrollToBottom(true);
  else $('#new-below').hidden = false;
}

/** Inserts in seq order (history pages arrive above, live events below). */
function placeMessage(log, ev) {
  const list = $('#msglist');
  if (!list) return false;
  // Never twice on screen, whatever path brought the event here again.
  if (list.querySelector(`.msg[data-seq="${ev.seq}"]`)) return false;
  if (!inChat(ev)) return false;
  const el = messageEl(log, ev);
  let after = null;
  for (let node = list.lastElementChild; node; node = node.previousElementSibling) {
    if (Number(node.dataset.seq) < ev.seq) {
      after = node;
      break;
    }
  }
  if (after) after.after(el);
  else list.prepend(el);
  // Quotes waiting for this message can now show it.
  for (const q of list.querySelectorAll(`.quote-missing[data-quote="${ev.seq}"]`)) q.replaceWith(quoteEl(log, ev.seq));
  if (ev.body && ev.body.reply_to != null) ensureQuote(log, ev.body.reply_to);
  return true;
}

function pendingEl(log, item) {
  const li = h('li', {
    class: 'msg mine pending', dataset: { key: item.client_key, group: String(item.group) },
  },
  h('div', { class: 'meta' },
    h('span', { class: 'author' }, t('chat.me')),
    h('span', { class: 'pending-label' })),
  item.reply_to != null ? quoteEl(log, item.reply_to) : null,
  h('div', { class: 'text' }, item.text),
  thumbs(item.images));
  refreshPendingLabel(li, item);
  li.addEventListener('click', () => {
    const it = app.outbox && app.outbox.items.find((i) => i.client_key === item.client_key);
    if (it && it.failed) {
      app.outbox.remove(it.client_key);
      li.remove();
      updateEmpty(log);
    }
  });
  return li;
}

function refreshPendingLabel(li, item) {
  const key = li.dataset.key;
  const it = item || (app.outbox && app.outbox.items.find((i) => i.client_key === key));
  const label = li.querySelector('.pending-label');
  if (!label) return;
  li.classList.remove('failed', 'sending', 'acked');
  li.hidden = app.superseded.has(key);
  if (app.acked.has(key)) {
    li.classList.add('acked');
    label.textContent = t('chat.sending');
  } else if (it && it.failed) {
    li.classList.add('failed');
    label.textContent = `${t('chat.failed', { reason: errorText({ code: it.failed }) })} ${t('chat.failed.dismiss')}`;
  } else if (app.inflight.has(key) || (app.hub && app.hub.connected)) {
    li.classList.add('sending');
    label.textContent = t('chat.sending');
  } else {
    label.textContent = t('chat.pending');
  }
}

function refreshPending(item) {
  const li = document.querySelector(`.msg.pending[data-key="${CSS.escape(item.client_key)}"]`);
  if (li) refreshPendingLabel(li, app.outbox.items.find((i) => i.client_key === item.client_key) || item);
}

function removePendingEl(key) {
  const li = document.querySelector(`.msg.pending[data-key="${CSS.escape(key)}"]`);
  if (li) li.remove();
}

function setReply(log, seq) {
  const stick = nearBottom();
  app.replyTo = { group: log.id, seq };
  updateReplyBar(log);
  // The bar takes room from the list: keep the newest message in sight.
  if (stick) scrollToBottom(true);
  const input = $('#composer-input');
  if (input) input.focus();
}

function updateReplyBar(log) {
  const bar = $('#replybar');
  if (!bar) return;
  bar.replaceChildren();
  const r = app.replyTo && app.replyTo.group === log.id ? app.replyTo : null;
  bar.hidden = !r;
  if (!r) return;
  const ev = log.lookup(r.seq);
  bar.append(
    h('div', { class: 'replybar-text' },
      h('span', { class: 'replybar-who' }, t('chat.reply_to', { name: ev ? ev.author.name : `#${r.seq}` })),
      h('span', { class: 'replybar-snippet' }, ev ? snippet((hiddenOf(log, ev) && !hiddenOf(log, ev).text) ? t('chat.hidden.short') : (ev.body.text || ''), 60) : '')),
    h('button', {
      class: 'replybar-cancel', type: 'button', id: 'reply-cancel', 'aria-label': t('chat.reply_cancel'),
      onclick: () => { app.replyTo = null; updateReplyBar(log); },
    }, '×'));
}

// ---------------------------------------------------------------------------
// Membership: registering, the pending state, the outcome live
// ---------------------------------------------------------------------------

/** Roles that read the text of hidden messages (protocol: hide). */
const SEES_HIDDEN = new Set(['cadre', 'secretary', 'town_officer', 'district_officer']);
const OFFICERS = new Set(['town_officer', 'district_officer']);
const RANK = { member: 0, volunteer: 1, cadre: 2, secretary: 3 };

function canManage(role) {
  return role === 'cadre' || role === 'secretary' || OFFICERS.has(role);
}

/** Whether an event is drawn in the chat list (other channels have their own screens). */
function inChat(ev) {
  return ev.channel === 'chat' && (ev.kind === 'message' || ev.kind === 'hidden' || ev.kind === 'hide');
}

/**
 * Adds an event to its log and keeps the screen true to hides: a `hide`
 * event (live) or a `hidden` event (history, backfill) redraws the message.
 * Returns whether the event is new.
 */
function addEvent(log, ev) {
  const fresh = log.add(ev);
  if (log.replaced) redrawMessage(log, ev.seq);
  if (fresh && ev.kind === 'hide' && ev.body) redrawMessage(log, ev.body.seq);
  return fresh;
}

/** {reason, text|null, images} if the message is hidden; text and pictures only for those who may see them. */
function hiddenOf(log, ev) {
  if (!ev || !ev.body) return null;
  if (ev.kind === 'hidden') return { reason: ev.body.reason || '', text: ev.body.text ?? null, images: ev.body.images };
  const hide = log.hides.get(ev.seq);
  if (!hide) return null;
  const sees = SEES_HIDDEN.has(log.info.role);
  return { reason: hide.body.reason || '', text: sees ? (ev.body.text || '') : null, images: sees ? ev.body.images : null };
}

function redrawMessage(log, seq) {
  const ev = log.events.get(seq);
  if (!ev || !isOpen(log.id)) return;
  const old = document.querySelector(`#msglist .msg[data-seq="${seq}"]`);
  if (old) old.replaceWith(messageEl(log, ev));
  for (const q of document.querySelectorAll(`#msglist .quote[data-quote="${seq}"]`)) q.replaceWith(quoteEl(log, seq));
}

function hideNoteEl(ev) {
  return h('li', { class: 'msg sys', dataset: { seq: String(ev.seq), group: String(ev.group) } },
    t('chat.hide_note', { name: ev.author.name, reason: (ev.body && ev.body.reason) || '' }));
}

function onMembership(m) {
  const status = m.status;
  if (status === 'rejected') {
    app.application = { ...(app.application || { group: m.group }), status: 'rejected', reason: m.reason };
    toast(t('membership.rejected', { reason: m.reason || '' }));
    if (route().name === 'groups') render();
    return;
  }
  if (status === 'muted') {
    const log = app.groups.get(m.group);
    if (log) log.info = { ...log.info, muted_until: m.until };
    const lifted = !m.until || m.until <= Date.now();
    toast(lifted ? t('membership.unmuted') : t('membership.muted', { until: formatTime(m.until), reason: m.reason || '' }));
    if (route().name === 'group' && route().group === m.group) render();
    return;
  }
  if (status === 'approved') {
    app.application = null;
    app.autoOpened = false; // land in the new group's chat
    toast(t('membership.approved'));
  } else if (status === 'removed') {
    toast(t('membership.removed'));
  } else if (status === 'role') {
    toast(t('membership.role', { role: t(`role.${m.role}`) }));
  }
  // Only a new welcome lists the group as it now is.
  if (app.hub) app.hub.refresh();
}

function renderApplication(a) {
  const rejected = a.status === 'rejected';
  return h('section', { class: `card application application-${a.status}`, id: 'application', dataset: { status: a.status } },
    h('h2', {}, rejected ? t('application.rejected.title') : t('application.pending.title')),
    h('p', { class: 'application-text' }, rejected ? t('application.rejected.text') : t('application.pending.text')),
    rejected && a.reason ? h('p', { class: 'application-reason', id: 'application-reason' }, t('application.reason', { reason: a.reason })) : null,
    h('dl', { class: 'facts' },
      h('dt', {}, t('register.group')), h('dd', {}, t('application.group', { id: a.group })),
      h('dt', {}, a.migrant ? t('register.kind') : t('register.address')),
      h('dd', {}, a.migrant ? t('register.kind.migrant') : (a.household || '')),
      a.at ? h('dt', {}, t('application.at')) : null, a.at ? h('dd', {}, formatTime(a.at)) : null),
    rejected ? h('p', { class: 'muted' }, t('application.rejected.next')) : h('p', { class: 'muted' }, t('application.pending.live')));
}

function renderRegister(groupId) {
  const err = h('p', { class: 'form-error', id: 'register-error', role: 'alert' });
  err.hidden = true;
  const field = (id, label, props) => [h('label', { for: id }, label), h('input', { id, name: id, ...props })];
  const [nameL, name] = field('reg-name', t('register.name'), { autocomplete: 'name', maxlength: '50', required: true });
  const [phoneL, phone] = field('reg-phone', t('login.phone'), { type: 'tel', inputmode: 'numeric', autocomplete: 'username', maxlength: '20', placeholder: t('login.phone.placeholder') });
  const [pwL, password] = field('reg-password', t('login.password'), { type: 'password', autocomplete: 'new-password', placeholder: t('register.password.placeholder') });
  const [groupL, group] = field('reg-group', t('register.group'), { type: 'number', inputmode: 'numeric', min: '1', placeholder: t('register.group.placeholder') });
  if (groupId) group.value = String(groupId);
  const [addrL, address] = field('reg-address', t('register.address'), { maxlength: '500', placeholder: t('register.address.placeholder') });
  const resident = h('input', { type: 'radio', name: 'reg-kind', id: 'reg-kind-resident', value: 'resident', checked: true });
  const migrant = h('input', { type: 'radio', name: 'reg-kind', id: 'reg-kind-migrant', value: 'migrant' });
  const syncKind = () => {
    address.disabled = migrant.checked;
    addrL.hidden = address.hidden = migrant.checked;
  };
  resident.addEventListener('change', syncKind);
  migrant.addEventListener('change', syncKind);
  const submit = h('button', { class: 'primary big', type: 'submit', id: 'register-submit' }, t('register.submit'));
  const fail = (key) => {
    err.textContent = t(key);
    err.hidden = false;
    submit.disabled = false;
    submit.textContent = t('register.submit');
  };
  const form = h('form', {
    class: 'login-form', novalidate: true,
    onsubmit: async (e) => {
      e.preventDefault();
      const body = { name: name.value.trim(), phone: phone.value.replace(/[\s-]/g, ''), password: password.value, group: Number(group.value) };
      if (!body.name || !body.phone || !body.password || !body.group) return fail('register.missing');
      if (body.password.length < 8) return fail('register.password.short');
      if (migrant.checked) body.migrant = true;
      else if (address.value.trim()) body.household = { address: address.value.trim() };
      else return fail('register.address.missing');
      submit.disabled = true;
      submit.textContent = t('register.busy');
      let res;
      try {
        res = await fetch('/api/register', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      } catch {
        return fail('login.network');
      }
      if (res.status === 404) return fail('register.no_group');
      if (res.status === 400) return fail('register.bad');
      if (res.status === 429) return fail('login.rate_limited');
      if (!res.ok) return fail('login.server');
      // Log straight in: the welcome shows the application and its outcome.
      app.loginPhone = body.phone;
      const key = await signIn(body.phone, body.password);
      if (key) {
        app.loginError = key === 'login.failed' ? 'register.login_failed' : key;
        go('#/login');
      }
    },
  },
  nameL, name, phoneL, phone, pwL, password, groupL, group,
  h('fieldset', { class: 'kind' },
    h('legend', {}, t('register.kind')),
    h('label', { class: 'radio', for: 'reg-kind-resident' }, resident, t('register.kind.resident')),
    h('label', { class: 'radio', for: 'reg-kind-migrant' }, migrant, t('register.kind.migrant'))),
  addrL, address, err, submit,
  h('p', { class: 'hint' }, t('register.hint')));
  return h('main', { class: 'screen login register' },
    h('div', { class: 'toolbar' }, settingsButtons()),
    h('section', { class: 'card' }, h('h2', {}, t('register.title')), form,
      h('a', { class: 'secondary big register-link', href: '#/login', id: 'to-login' }, t('register.to_login'))));
}

// ---------------------------------------------------------------------------
// Sheets: one small dialog at a time (message menu, reasons, password)
// ---------------------------------------------------------------------------

function closeSheet() {
  const old = document.getElementById('sheet');
  if (old) old.remove();
}

function openSheet(title, ...children) {
  closeSheet();
  const panel = h('div', { class: 'sheet', role: 'dialog', 'aria-modal': 'true', 'aria-label': title },
    h('div', { class: 'sheet-head' },
      h('h2', {}, title),
      h('button', { class: 'sheet-close', type: 'button', 'aria-label': t('sheet.close'), onclick: closeSheet }, '×')),
    ...children);
  const overlay = h('div', { class: 'sheet-overlay', id: 'sheet' }, panel);
  overlay.addEventListener('click', (e) => { if (e.target === overlay) closeSheet(); });
  document.body.append(overlay);
  const first = panel.querySelector('input, select, textarea, .sheet-actions button');
  if (first) first.focus();
  return panel;
}

/**
 * A form inside a sheet that sends one op. `fields` are [label, element];
 * `build()` returns the op or an i18n error key (a string).
 */
function opForm({ fields, submitText, build, onDone, danger, errors = {}, onError }) {
  const err = h('p', { class: 'form-error', role: 'alert' });
  err.hidden = true;
  const submit = h('button', { class: `${danger ? 'danger' : 'primary'} big`, type: 'submit', id: 'sheet-submit' }, submitText);
  const form = h('form', {
    class: 'sheet-form', novalidate: true,
    onsubmit: async (e) => {
      e.preventDefault();
      const op = build();
      if (typeof op === 'string') {
        err.textContent = t(op);
        err.hidden = false;
        return;
      }
      if (!app.hub || !app.hub.connected) {
        err.textContent = t('conn.offline');
        err.hidden = false;
        return;
      }
      submit.disabled = true;
      try {
        const r = await app.hub.request(op);
        closeSheet();
        onDone(r);
      } catch (ex) {
        submit.disabled = false;
        if (onError) onError(ex);
        err.textContent = errors[ex.code] ? t(errors[ex.code]) : errorText(ex);
        err.hidden = false;
      }
    },
  }, fields.flatMap(([label, el]) => [h('label', { for: el.id }, label), el]), err, submit);
  return form;
}

function reasonInput(required) {
  return h('input', { id: 'sheet-reason', maxlength: '500', placeholder: t(required ? 'mod.reason.placeholder' : 'mod.reason.optional') });
}

/** What the viewer may do to a message, by their role in its group. */
function messageActions(log, ev) {
  const role = log.info.role;
  const acts = [];
  if (ev.kind !== 'message' && ev.kind !== 'hidden') return acts;
  const mine = app.session && ev.author.id === app.session.account.id;
  if (ev.kind === 'message' && !log.hides.has(ev.seq) && RANK[role] >= RANK.volunteer) acts.push('hide');
  if (mine) return acts;
  const theirs = RANK[ev.author.role] ?? 0;
  if (RANK[role] >= RANK.cadre && theirs < RANK[role]) acts.push('mute', 'remove');
  if (role === 'secretary' && ev.author.role !== 'secretary') acts.push('set_role');
  if ((role === 'secretary' || role === 'town_officer') && ev.author.role !== 'secretary') acts.push('transfer');
  return acts;
}

function openMessageMenu(log, ev) {
  const who = ev.author.name;
  const buttons = [
    h('button', { class: 'secondary big', type: 'button', dataset: { action: 'reply' }, onclick: () => { closeSheet(); setReply(log, ev.seq); } }, t('mod.reply')),
    ...messageActions(log, ev).map((a) => h('button', {
      class: `secondary big${a === 'remove' || a === 'hide' ? ' warn' : ''}`, type: 'button', dataset: { action: a },
      onclick: () => openAction(log, ev, a),
    }, t(`mod.${a}`, { name: who }))),
  ];
  openSheet(t('mod.menu.title', { name: who }), h('div', { class: 'sheet-actions' }, buttons));
}

const MUTE_CHOICES = [['1h', 3600e3], ['1d', 86400e3], ['7d', 7 * 86400e3], ['lift', 0]];

function openAction(log, ev, action) {
  const group = log.id;
  const account = ev.author.id;
  const name = ev.author.name;
  const done = (key) => () => toast(t(key, { name }));
  if (action === 'hide') {
    const reason = reasonInput(true);
    openSheet(t('mod.hide.title'),
      h('blockquote', { class: 'sheet-quote' }, snippet((ev.body && ev.body.text) || '', 80)),
      opForm({
        fields: [[t('mod.reason'), reason]], submitText: t('mod.hide.submit'), danger: true,
        build: () => (reason.value.trim() ? { op: 'hide', group, seq: ev.seq, reason: reason.value.trim() } : 'mod.reason.missing'),
        onDone: done('mod.hide.done'),
      }));
  } else if (action === 'mute') {
    const until = h('select', { id: 'sheet-until' }, MUTE_CHOICES.map(([k]) => h('option', { value: k }, t(`mod.mute.${k}`))));
    const reason = reasonInput(true);
    openSheet(t('mod.mute.title', { name }), opForm({
      fields: [[t('mod.mute.until'), until], [t('mod.reason'), reason]], submitText: t('mod.mute.submit'),
      build: () => {
        if (!reason.value.trim()) return 'mod.reason.missing';
        const ms = MUTE_CHOICES.find(([k]) => k === until.value)[1];
        return { op: 'mute', group, account, until: ms ? Date.now() + ms : Date.now() - 1000, reason: reason.value.trim() };
      },
      onDone: done('mod.mute.done'),
    }));
  } else if (action === 'remove') {
    const reason = reasonInput(true);
    openSheet(t('mod.remove.title', { name }), opForm({
      fields: [[t('mod.reason'), reason]], submitText: t('mod.remove.submit'), danger: true,
      build: () => (reason.value.trim() ? { op: 'remove', group, account, reason: reason.value.trim() } : 'mod.reason.missing'),
      onDone: done('mod.remove.done'),
    }));
  } else if (action === 'set_role') {
    const role = h('select', { id: 'sheet-role' }, ['member', 'volunteer', 'cadre'].map((r) => h('option', { value: r, selected: r === ev.author.role }, t(`role.${r}`))));
    const reason = reasonInput(false);
    openSheet(t('mod.set_role.title', { name }), opForm({
      fields: [[t('mod.set_role.role'), role], [t('mod.reason'), reason]], submitText: t('mod.set_role.submit'),
      build: () => {
        const op = { op: 'set_role', group, account, role: role.value };
        if (reason.value.trim()) op.reason = reason.value.trim();
        return op;
      },
      onDone: done('mod.set_role.done'),
    }));
  } else if (action === 'transfer') {
    const reason = reasonInput(false);
    openSheet(t('mod.transfer.title', { name }),
      h('p', { class: 'sheet-warning' }, t('mod.transfer.warning', { name })),
      opForm({
        fields: [[t('mod.reason'), reason]], submitText: t('mod.transfer.submit'), danger: true,
        build: () => {
          const op = { op: 'transfer', group, account };
          if (reason.value.trim()) op.reason = reason.value.trim();
          return op;
        },
        onDone: () => { toast(t('mod.transfer.done', { name })); if (app.hub) app.hub.refresh(); },
      }));
  }
}

function openChangePassword() {
  const old = h('input', { id: 'pw-old', type: 'password', autocomplete: 'current-password' });
  const next = h('input', { id: 'pw-new', type: 'password', autocomplete: 'new-password', placeholder: t('register.password.placeholder') });
  openSheet(t('password.title'), opForm({
    fields: [[t('password.old'), old], [t('password.new'), next]], submitText: t('password.submit'),
    build: () => {
      if (!old.value || !next.value) return 'login.missing';
      if (next.value.length < 8) return 'register.password.short';
      app.passwordChanged = true;
      return { op: 'change_password', old: old.value, new: next.value };
    },
    errors: { forbidden: 'password.wrong' },
    onError: () => { app.passwordChanged = false; },
    // The server now closes every connection of the account with 4003.
    onDone: () => logout('password.changed'),
  }));
}

// ---------------------------------------------------------------------------
// Manage: the approvals queue, the audit log (cadres, secretary, officers)
// ---------------------------------------------------------------------------

function onApplication(a) {
  let q = app.applications.get(a.group);
  if (!q) app.applications.set(a.group, (q = new Map()));
  q.set(a.account, a);
  toast(t('applications.new', { name: a.name }));
  const r = route();
  if (r.name === 'group' && r.group === a.group && r.channel === 'manage') drawApplications(a.group);
  updateManageCount(a.group);
}

function updateManageCount(groupId) {
  const el = $('#manage-count');
  if (!el || route().group !== groupId) return;
  const n = [...(app.applications.get(groupId) || new Map()).values()].filter((a) => a.status === 'pending').length;
  el.textContent = t('manage.pending', { n });
  el.hidden = n === 0;
}

function renderManage(log) {
  const role = log.info.role;
  const sections = [];
  if (role === 'cadre' || role === 'secretary') {
    sections.push(h('section', { class: 'manage-section' },
      h('h2', {}, t('applications.title')),
      h('ul', { class: 'app-list', id: 'applications', dataset: { state: 'loading' } },
        h('li', { class: 'muted' }, t('groups.loading')))));
    sections.push(h('section', { class: 'manage-section invite' },
      h('h2', {}, t('invite.title')),
      h('p', { class: 'muted' }, t('invite.text')),
      h('code', { class: 'invite-link', id: 'invite-link' }, `${location.origin}/#/register/${log.id}`)));
  }
  if (role === 'secretary' || OFFICERS.has(role)) {
    sections.push(h('section', { class: 'manage-section' },
      h('h2', {}, t('audit.title')),
      h('ol', { class: 'audit-list', id: 'audit', dataset: { state: 'loading' } }, h('li', { class: 'muted' }, t('groups.loading'))),
      h('div', { id: 'audit-more' })));
  }
  if (role === 'cadre' || role === 'secretary') sections.push(h('p', { class: 'hint' }, t('manage.hint')));
  if (!sections.length) sections.push(h('p', { class: 'placeholder' }, t('error.forbidden')));
  return h('main', { class: 'content manage', dataset: { group: String(log.id) } }, sections);
}

/** The approvals queue of a group, so that the manage strip can count it. */
async function fetchApplications(groupId) {
  try {
    const r = await app.hub.request({ op: 'applications', group: groupId });
    const q = new Map();
    for (const a of r.applications || []) q.set(a.account, a);
    // Pushes that came meanwhile are newer than the list.
    for (const a of (app.applications.get(groupId) || new Map()).values()) if (!q.has(a.account)) q.set(a.account, a);
    app.applications.set(groupId, q);
  } catch (err) {
    if (err.code !== 'disconnected') toast(errorText(err));
    return false;
  }
  updateManageCount(groupId);
  return true;
}

async function afterManageMounted(groupId) {
  const log = app.groups.get(groupId);
  if (!log || !app.hub) return;
  const role = log.info.role;
  if ((role === 'cadre' || role === 'secretary') && $('#applications')) {
    await waitConnected();
    await fetchApplications(groupId);
    drawApplications(groupId);
  }
  if ($('#audit')) loadAudit(groupId, null);
}

async function waitConnected() {
  for (let i = 0; i < 100 && app.hub && !app.hub.connected; i++) await sleep(100);
}

function drawApplications(groupId) {
  const list = $('#applications');
  if (!list) return;
  list.dataset.state = 'ready';
  list.replaceChildren();
  const q = [...(app.applications.get(groupId) || new Map()).values()].sort((a, b) => a.at - b.at);
  const pending = q.filter((a) => a.status === 'pending');
  if (!pending.length) list.append(h('li', { class: 'muted app-empty' }, t('applications.empty')));
  for (const a of pending) list.append(applicationEl(groupId, a));
  updateManageCount(groupId);
}

function applicationEl(groupId, a) {
  const decide = async (op, btns) => {
    for (const b of btns) b.disabled = true;
    try {
      await app.hub.request(op);
      a.status = op.op === 'approve' ? 'approved' : 'rejected';
      toast(t(op.op === 'approve' ? 'applications.approved' : 'applications.rejected', { name: a.name }));
      drawApplications(groupId);
    } catch (err) {
      for (const b of btns) b.disabled = false;
      toast(errorText(err));
      if (err.code === 'conflict') {
        a.status = 'decided';
        drawApplications(groupId);
      }
    }
  };
  const approve = h('button', { class: 'primary', type: 'button', dataset: { action: 'approve' } }, t('applications.approve'));
  const reject = h('button', { class: 'secondary warn', type: 'button', dataset: { action: 'reject' } }, t('applications.reject'));
  approve.addEventListener('click', () => decide({ op: 'approve', group: groupId, account: a.account }, [approve, reject]));
  reject.addEventListener('click', () => {
    const reason = reasonInput(true);
    openSheet(t('applications.reject.title', { name: a.name }), opForm({
      fields: [[t('mod.reason'), reason]], submitText: t('applications.reject'), danger: true,
      build: () => (reason.value.trim() ? { op: 'reject', group: groupId, account: a.account, reason: reason.value.trim() } : 'mod.reason.missing'),
      onDone: () => {
        a.status = 'rejected';
        toast(t('applications.rejected', { name: a.name }));
        drawApplications(groupId);
      },
    }));
  });
  return h('li', { class: 'app-card', dataset: { account: String(a.account) } },
    h('div', { class: 'app-head' },
      h('span', { class: 'app-name' }, a.name),
      a.migrant ? h('span', { class: 'badge badge-migrant' }, t('badge.migrant')) : null,
      h('time', {}, formatTime(a.at))),
    h('p', { class: 'app-line' }, t('applications.phone', { phone: a.phone })),
    h('p', { class: 'app-line' }, a.migrant ? t('applications.migrant') : t('applications.household', { address: a.household || '' })),
    h('div', { class: 'app-actions' }, approve, reject));
}

async function loadAudit(groupId, before) {
  const list = $('#audit');
  if (!list) return;
  try {
    await waitConnected();
    const op = { op: 'audit', group: groupId, limit: 50 };
    if (before != null) op.before = before;
    const r = await app.hub.request(op);
    if (!$('#audit')) return;
    if (before == null) list.replaceChildren();
    list.dataset.state = 'ready';
    const entries = r.entries || [];
    if (!entries.length && before == null) list.append(h('li', { class: 'muted' }, t('audit.empty')));
    for (const e of entries) list.append(auditEl(e));
    const more = $('#audit-more');
    more.replaceChildren();
    if (r.more && entries.length) {
      more.append(h('button', { class: 'secondary', type: 'button', onclick: () => loadAudit(groupId, entries.at(-1).at) }, t('audit.more')));
    }
  } catch (err) {
    list.replaceChildren(h('li', { class: 'form-error' }, errorText(err)));
  }
}

function auditEl(e) {
  const target = e.target ? e.target.name : '';
  let what = t(`audit.${e.action}`, { target, role: e.role ? t(`role.${e.role}`) : '', seq: e.seq ?? '', until: e.until ? formatTime(e.until) : '' });
  if (what === `audit.${e.action}`) what = `${e.action} ${target}`;
  return h('li', { class: 'audit-entry', dataset: { action: e.action } },
    h('div', { class: 'audit-head' },
      h('span', { class: 'audit-actor' }, e.actor ? e.actor.name : ''),
      h('time', {}, formatTime(e.at))),
    h('p', { class: 'audit-what' }, what),
    e.reason ? h('p', { class: 'audit-reason' }, t('audit.reason', { reason: e.reason })) : null);
}

// ---------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------

function boot() {
  const lang = localStorage.getItem(LS_LANG);
  setLang(lang === 'en' ? 'en' : 'zh-CN');
  document.documentElement.classList.toggle('large', largeText());
  const s = loadSession();
  if (s && s.expired) {
    clearSession();
    app.loginError = 'login.expired';
  } else if (s) {
    app.session = s;
    startHub();
  }
  window.addEventListener('hashchange', render);
  document.addEventListener('visibilitychange', onVisibility);
  render();
}

let hiddenAt = 0;
/**
 * A phone that slept may hold a socket that is silently dead. Coming back to
 * the page, ask the server something small: no reply within the hub's reply
 * timeout drops the socket and reconnects; no socket at all reconnects now.
 */
function onVisibility() {
  if (document.visibilityState === 'hidden') {
    hiddenAt = Date.now();
    return;
  }
  if (!app.hub || Date.now() - hiddenAt < 15_000) return;
  if (!app.hub.connected) {
    app.hub.reconnectNow();
    return;
  }
  const first = app.groups.keys().next();
  if (!first.done) app.hub.request({ op: 'history', group: first.value, limit: 1 }).catch(() => {});
}


// ---------------------------------------------------------------------------
// Governance channels: notices and requests (protocol "Governance channels").
// Each tab loads the group's whole log once (history pages down to seq 1)
// and derives its view from the events; live events redraw the open tab.
// ---------------------------------------------------------------------------


function myId() {
  return app.session ? app.session.account.id : null;
}

function govOpen(groupId) {
  const r = route();
  return r.name === 'group' && r.group === groupId && GOV_CHANNELS.has(r.channel) && !!$('#gov');
}

function isStaff(role) {
  return role === 'cadre' || role === 'secretary';
}

function renderGov(log, channel) {
  const main = h('main', { class: 'content gov', id: 'gov', dataset: { channel } });
  drawGovInto(main, log, channel);
  return main;
}

function scheduleGovDraw() {
  if (govTimer) return;
  govTimer = setTimeout(() => {
    govTimer = null;
    const r = route();
    const main = $('#gov');
    const log = app.groups.get(r.group);
    if (main && log) drawGovInto(main, log, r.channel);
  }, 16);
}

async function afterGovMounted(groupId) {
  const log = app.groups.get(groupId);
  if (!log || log.lastSeq === null || govLoading.has(groupId) || !app.hub || !app.hub.connected) return;
  if (log.historyLoaded && !log.more) return;
  govLoading.add(groupId);
  try {
    for (;;) {
      const before = log.oldest !== null ? log.oldest : log.lastSeq + 1;
      if (before <= 1) break;
      const r = await app.hub.request({ op: 'history', group: log.id, before, limit: app.limits.history_limit || 200 });
      for (const ev of r.events || []) if (addEvent(log, ev)) replacePending(ev);
      if (!r.more || !(r.events || []).length) break;
    }
    log.more = false;
    log.historyLoaded = true;
  } catch (err) {
    if (err.code !== 'disconnected') toast(errorText(err));
  } finally {
    govLoading.delete(groupId);
  }
  scheduleGovDraw();
}

function drawGovInto(main, log, channel) {
  const d = app.govDetail;
  const detail = d && d.group === log.id && d.channel === channel ? d.seq : null;
  // Keep what is being typed across a redraw.
  const kept = {};
  for (const el of main.querySelectorAll('textarea[id], input[id], select[id]')) kept[el.id] = el.type === 'checkbox' ? el.checked : el.value;
  main.textContent = '';
  if (!log.historyLoaded || log.more) main.append(h('p', { class: 'placeholder', id: 'gov-loading' }, t('groups.loading')));
  if (channel === 'notices') drawNotices(main, log, detail);
  else if (channel === 'requests') drawRequests(main, log, detail);
  else if (channel === 'deliberation') drawTopics(main, log, detail);
  else drawExchange(main, log);
  for (const [id, v] of Object.entries(kept)) {
    const el = main.querySelector(`#${id}`);
    if (!el) continue;
    if (el.type === 'checkbox') el.checked = v;
    else el.value = v;
  }
}

function govPost(group, kind, body, clientKey) {
  const op = { op: 'post', group, event: { kind, body } };
  if (clientKey) op.client_key = clientKey;
  return app.hub.request(op);
}

function backLink(label) {
  return h('button', { class: 'secondary', type: 'button', id: 'gov-back', onclick: () => { app.govDetail = null; app.receipts = null; scheduleGovDraw(); } }, label);
}

// --- notices -----------------------------------------------------------------

function noticeState(log) {
  const notices = [];
  const readByMe = new Set();
  for (const ev of log.sorted()) {
    if (ev.kind === 'notice') notices.push(ev);
    else if (ev.kind === 'notice_read' && ev.author.id === myId()) readByMe.add(ev.body.notice);
  }
  return { notices, readByMe };
}

function drawNotices(main, log, detail) {
  const { notices, readByMe } = noticeState(log);
  const role = log.info.role;
  if (detail != null) {
    const n = notices.find((x) => x.seq === detail);
    main.append(backLink(t('gov.back')));
    if (!n) return;
    const amended = notices.find((x) => x.body.amends === n.seq);
    const original = n.body.amends != null ? notices.find((x) => x.seq === n.body.amends) : null;
    main.append(h('article', { class: 'card notice-detail', id: 'notice-detail', dataset: { seq: n.seq } },
      h('h2', {}, n.body.title),
      // A notice from another government system (docs/API.md) says so.
      h('p', { class: 'muted' }, `${t(`notice.cat.${n.body.category}`)} · ${n.author.name}${n.author.system ? ` (${t('badge.system')})` : ''} · ${formatTime(n.ts)}`),
      n.body.must_read ? h('p', { class: 'badge must' }, t('notice.must_read')) : null,
      n.body.amends != null ? h('p', { class: 'amend-note', id: 'amends-note' }, h('a', {
        href: '#', onclick: (e) => { e.preventDefault(); if (original) openNotice(log, original, false); },
      }, t('notice.amends', { seq: n.body.amends, title: original ? original.body.title : '' }))) : null,
      amended ? h('p', { class: 'amend-note', id: 'amended-note' }, h('a', {
        href: '#', onclick: (e) => { e.preventDefault(); openNotice(log, amended, false); },
      }, t('notice.amended', { seq: amended.seq, title: amended.body.title }))) : null,
      h('p', { class: 'body-text' }, n.body.text),
      thumbs(n.body.images),
      n.body.hash ? h('p', { class: 'muted hash', title: n.body.hash }, t('notice.hash', { hash: n.body.hash.slice(0, 12) })) : null,
      h('div', { class: 'post-actions' }, likeButton(log, n.seq))));
    if (isStaff(role) && n.kind === 'notice') {
      main.append(h('button', { class: 'secondary big', type: 'button', id: 'notice-amend', onclick: () => openNoticeForm(log, n) }, t('notice.amend')));
    }
    if (canManage(role)) {
      const rc = app.receipts && app.receipts.notice === n.seq ? app.receipts : null;
      const box = h('section', { class: 'card', id: 'unread-box' }, h('h3', {}, t('notice.unread.title')));
      if (!rc) box.append(h('p', { class: 'muted' }, t('groups.loading')));
      else {
        box.append(h('p', { id: 'read-count' }, t('notice.unread.counts', { people: rc.read_people, households: rc.read_households, unread: rc.unread.length })));
        box.append(h('ul', { class: 'list', id: 'unread-list' }, rc.unread.map((u) => h('li', { dataset: { household: u.id } }, u.address))));
      }
      main.append(box);
    }
    return;
  }
  if (isStaff(role)) {
    main.append(h('button', { class: 'primary big', type: 'button', id: 'notice-new', onclick: () => openNoticeForm(log) }, t('notice.new')));
  }
  if (!notices.length && log.historyLoaded) main.append(h('p', { class: 'placeholder' }, t('notice.empty')));
  const sorted = [...notices].sort((a, b) => (b.body.must_read - a.body.must_read) || (b.seq - a.seq));
  main.append(h('ul', { class: 'list gov-list', id: 'notice-list' }, sorted.map((n) => {
    const unread = !readByMe.has(n.seq) && n.author.id !== myId();
    return h('li', {
      class: `gov-item notice${unread ? ' unread' : ''}`, dataset: { seq: n.seq }, role: 'button', tabindex: '0',
      onclick: () => openNotice(log, n, unread),
    },
    h('div', { class: 'gov-line' },
      unread ? h('span', { class: 'dot', 'aria-label': t('notice.unread') }, t('notice.unread')) : null,
      n.body.must_read ? h('span', { class: 'badge must' }, t('notice.must_read')) : null,
      n.body.amends != null ? h('span', { class: 'badge' }, t('notice.amendment')) : null,
      h('strong', { class: 'gov-title' }, n.body.title)),
    h('div', { class: 'gov-foot' },
      h('p', { class: 'muted' }, `${t(`notice.cat.${n.body.category}`)} · ${formatTime(n.ts)}`),
      likeButton(log, n.seq)));
  })));
  // Under the list: reading comes first, checking the chain after.
  if (notices.some((n) => n.body.category === 'affairs')) main.append(verifyBox(log));
}

async function openNotice(log, n, unread) {
  app.govDetail = { group: log.id, channel: 'notices', seq: n.seq };
  app.receipts = null;
  scheduleGovDraw();
  if (unread && !OFFICERS.has(log.info.role)) {
    govPost(log.id, 'notice_read', { notice: n.seq }, `read-${n.seq}`).catch((err) => {
      if (err.code !== 'conflict' && err.code !== 'duplicate') toast(errorText(err));
    });
  }
  if (canManage(log.info.role)) {
    try {
      const r = await app.hub.request({ op: 'unread', group: log.id, notice: n.seq });
      if (!app.receipts || app.receipts.notice !== n.seq) app.receipts = r.receipts;
      scheduleGovDraw();
    } catch (err) {
      toast(errorText(err));
    }
  }
}

function onReceipts(rc) {
  const d = app.govDetail;
  if (!d || d.group !== rc.group || d.seq !== rc.notice) return;
  app.receipts = rc;
  scheduleGovDraw();
}

/**
 * The notice form; with `amends` (a notice), a correction of it: same
 * category (the server requires it), a new notice that names the old one —
 * disclosures are never edited.
 */
function openNoticeForm(log, amends) {
  const title = h('input', { id: 'sheet-title', maxlength: '200' });
  const text = h('textarea', { id: 'sheet-text', rows: '5' });
  const cat = h('select', { id: 'sheet-category', disabled: !!amends }, NOTICE_CATEGORIES.map((c) => h('option', { value: c }, t(`notice.cat.${c}`))));
  const must = h('input', { id: 'sheet-must', type: 'checkbox' });
  if (amends) {
    title.value = t('notice.amend.title', { title: amends.body.title });
    text.value = amends.body.text;
    cat.value = amends.body.category;
  }
  const fields = [[t('notice.f.title'), title], [t('notice.f.text'), text], [t('notice.f.category'), cat], [t('notice.must_read'), must]];
  const pics = imagePicker();
  if (pics) fields.push([t('images.title'), pics.el]);
  const form = opForm({
    fields,
    submitText: t('gov.publish'),
    build: () => {
      if (!title.value.trim() || !text.value.trim()) return 'gov.required';
      const body = { title: title.value.trim(), text: text.value.trim(), category: cat.value, must_read: must.checked };
      if (amends) body.amends = amends.seq;
      if (pics && pics.hashes().length) body.images = pics.hashes();
      return { op: 'post', group: log.id, client_key: `notice-${myId()}-${Date.now()}`, event: { kind: 'notice', body } };
    },
    onDone: (r) => {
      toast(t('gov.posted'));
      if (amends) { app.govDetail = { group: log.id, channel: 'notices', seq: r.seq }; scheduleGovDraw(); }
    },
  });
  openSheet(amends ? t('notice.amend') : t('notice.new'),
    amends ? h('p', { class: 'sheet-quote' }, t('notice.amend.hint', { seq: amends.seq })) : null, form);
}

/** group → the last `verify_disclosures` report shown. */
const verifyReports = new Map();

/** "Verify the disclosure chain": anyone who sees the group may ask. */
function verifyBox(log) {
  const rep = verifyReports.get(log.id);
  const result = rep ? h('p', {
    class: `verify-result ${rep.ok ? 'ok' : 'broken'}`, id: 'verify-result', role: 'status', dataset: { ok: String(!!rep.ok) },
  }, rep.ok ? t('notice.verify.ok', { n: rep.checked })
    : t('notice.verify.broken', { seq: rep.broken ? rep.broken.seq : '?', reason: rep.broken ? rep.broken.reason : '', n: rep.checked })) : null;
  return h('section', { class: 'card verify', id: 'verify-box' },
    h('p', { class: 'muted' }, t('notice.verify.hint')),
    actionButton('verify-disclosures', t('notice.verify'), 'secondary', async () => {
      const r = await app.hub.request({ op: 'verify_disclosures', group: log.id });
      verifyReports.set(log.id, r.report || {});
      scheduleGovDraw();
    }),
    result);
}

// --- requests ----------------------------------------------------------------

function requestState(log) {
  const reqs = new Map();
  for (const ev of log.sorted()) {
    if (ev.kind === 'request') {
      reqs.set(ev.seq, { ev, timeline: [], replied: false, resolved: false, overdue: false, escalated: null, rated: null });
      continue;
    }
    if (ev.channel !== 'requests' || !ev.body) continue;
    const r = reqs.get(ev.body.request);
    if (!r) continue;
    r.timeline.push(ev);
    if (ev.kind === 'request_reply') r.replied = true;
    else if (ev.kind === 'request_resolved') r.resolved = true;
    else if (ev.kind === 'request_overdue') r.overdue = true;
    else if (ev.kind === 'request_escalated') r.escalated = ev.body.to;
    else if (ev.kind === 'request_rated') r.rated = ev.body;
  }
  return reqs;
}

function requestStatus(r) {
  if (r.resolved) return 'resolved';
  if (r.replied) return 'replied';
  return 'waiting';
}

function clockText(r) {
  if (r.replied || r.resolved) return '';
  const left = r.ev.ts + FIRST_RESPONSE_MS - Date.now();
  if (r.overdue || left <= 0) return t('request.overdue');
  const hrs = Math.floor(left / 3600000);
  const mins = Math.floor((left % 3600000) / 60000);
  return t('request.left', { h: hrs, m: mins });
}

function requestItem(log, r) {
  const st = requestStatus(r);
  const overdue = !r.replied && !r.resolved && (r.overdue || r.ev.ts + FIRST_RESPONSE_MS < Date.now());
  return h('li', {
    class: `gov-item request${overdue ? ' overdue' : ''}`, dataset: { seq: r.ev.seq, status: st }, role: 'button', tabindex: '0',
    onclick: () => { app.govDetail = { group: log.id, channel: 'requests', seq: r.ev.seq }; scheduleGovDraw(); },
  },
  h('div', { class: 'gov-line' },
    h('span', { class: `badge st-${st}` }, t(`request.st.${st}`)),
    r.escalated && !r.resolved ? h('span', { class: 'badge st-escalated' }, t('request.escalated', { to: t(`request.to.${r.escalated}`) })) : null,
    h('strong', { class: 'gov-title' }, r.ev.body.category)),
  h('p', { class: 'gov-text' }, snippet(r.ev.body.text, 60)),
  h('p', { class: `muted clock${overdue ? ' late' : ''}` }, `${r.ev.author.name} · ${formatTime(r.ev.ts)} ${clockText(r)}`));
}

function drawRequests(main, log, detail) {
  const reqs = requestState(log);
  const role = log.info.role;
  const staff = canManage(role);
  if (detail != null) {
    const r = reqs.get(detail);
    main.append(backLink(t('gov.back')));
    if (!r) return;
    const st = requestStatus(r);
    main.append(h('article', { class: 'card request-detail', id: 'request-detail', dataset: { seq: r.ev.seq, status: st, escalated: r.escalated || '' } },
      h('p', {}, h('span', { class: `badge st-${st}`, id: 'request-status' }, t(`request.st.${st}`)),
        r.escalated ? h('span', { class: 'badge st-escalated', id: 'request-escalated' }, t('request.escalated', { to: t(`request.to.${r.escalated}`) })) : null,
        ' ', h('strong', {}, r.ev.body.category)),
      h('p', { class: 'body-text' }, r.ev.body.text),
      thumbs(r.ev.body.images),
      h('p', { class: 'muted' }, `${r.ev.author.name} · ${formatTime(r.ev.ts)}`),
      h('p', { class: 'clock', id: 'request-clock' }, clockText(r))));
    main.append(h('ol', { class: 'list timeline', id: 'request-timeline' }, r.timeline.map((ev) => h('li', { class: `tl ${ev.kind}` },
      h('p', { class: 'muted' }, `${ev.author.name} · ${formatTime(ev.ts)}`),
      h('p', {}, ev.kind === 'request_reply' ? ev.body.text
        : ev.kind === 'request_rated' ? t('request.rated', { stars: ev.body.stars, comment: ev.body.comment || '' })
          : ev.kind === 'request_escalated' ? t('request.escalated', { to: t(`request.to.${ev.body.to}`) })
            : t(`request.ev.${ev.kind}`)),
      ev.kind === 'request_escalated' && ev.body.reason ? h('p', { class: 'muted' }, t('request.escalate.reason', { reason: ev.body.reason })) : null,
      ev.kind === 'request_reply' ? h('div', { class: 'post-actions' }, likeButton(log, ev.seq)) : null))));
    if (mayAnswer(role, r) && !r.resolved) {
      const text = h('textarea', { id: 'reply-text', rows: '3', placeholder: t('request.reply.placeholder') });
      main.append(h('div', { class: 'card actions' }, text,
        h('button', { class: 'primary big', type: 'button', id: 'reply-send', onclick: async (e) => {
          if (!text.value.trim()) return toast(t('gov.required'));
          e.target.disabled = true;
          try {
            await govPost(log.id, 'request_reply', { request: r.ev.seq, text: text.value.trim() }, `reply-${myId()}-${Date.now()}`);
            text.value = '';
          } catch (err) { toast(errorText(err)); }
          e.target.disabled = false;
        } }, t('request.reply')),
        h('button', { class: 'secondary big', type: 'button', id: 'resolve', onclick: async (e) => {
          e.target.disabled = true;
          try { await govPost(log.id, 'request_resolved', { request: r.ev.seq }, `resolve-${r.ev.seq}`); } catch (err) { toast(errorText(err)); }
          e.target.disabled = false;
        } }, t('request.resolve'))));
    }
    const up = escalationTarget(role, r);
    if (up) {
      main.append(h('button', { class: 'secondary big', type: 'button', id: 'escalate', dataset: { to: up },
        onclick: () => openEscalateForm(log, r, up) }, t('request.escalate', { to: t(`request.to.${up}`) })));
    }
    if (r.resolved && !r.rated && r.ev.author.id === myId()) {
      const stars = h('select', { id: 'rate-stars' }, [5, 4, 3, 2, 1].map((n) => h('option', { value: String(n) }, t('request.stars', { n }))));
      const comment = h('input', { id: 'rate-comment', maxlength: '200', placeholder: t('request.rate.comment') });
      main.append(h('div', { class: 'card actions' }, h('h3', {}, t('request.rate')), stars, comment,
        h('button', { class: 'primary big', type: 'button', id: 'rate-send', onclick: async (e) => {
          e.target.disabled = true;
          const body = { request: r.ev.seq, stars: Number(stars.value) };
          if (comment.value.trim()) body.comment = comment.value.trim();
          try { await govPost(log.id, 'request_rated', body, `rate-${r.ev.seq}`); } catch (err) { toast(errorText(err)); e.target.disabled = false; }
        } }, t('request.rate.send'))));
    }
    return;
  }
  if (!OFFICERS.has(role)) {
    main.append(h('button', { class: 'primary big', type: 'button', id: 'request-new', onclick: () => openRequestForm(log) }, t('request.new')));
  }
  let list = [...reqs.values()];
  if (!staff) list = list.filter((r) => r.ev.author.id === myId());
  // Open ones first (for officers, those escalated to them first), by
  // deadline; then the resolved, newest first.
  const mine = (r) => (OFFICERS.has(role) && !r.resolved && mayAnswer(role, r) ? 0 : 1);
  list.sort((a, b) => (a.resolved - b.resolved) || (mine(a) - mine(b))
    || (a.resolved ? b.ev.seq - a.ev.seq : a.ev.ts - b.ev.ts));
  main.append(h('h2', { class: 'gov-h' }, t(staff ? 'request.queue' : 'request.mine')));
  if (!list.length && log.historyLoaded) main.append(h('p', { class: 'placeholder' }, t('request.empty')));
  main.append(h('ul', { class: 'list gov-list', id: 'request-list' }, list.map((r) => requestItem(log, r))));
}

/**
 * Whether this role may reply to and resolve the request: the group's cadres
 * and secretary always; a town officer once it is escalated to the town; a
 * district officer once escalated at all (the server checks the same).
 */
function mayAnswer(role, r) {
  if (isStaff(role)) return true;
  if (role === 'town_officer') return r.escalated === 'town';
  if (role === 'district_officer') return !!r.escalated;
  return false;
}

/** Where this role may escalate the request to, or null. */
function escalationTarget(role, r) {
  if (r.resolved) return null;
  if (isStaff(role) && !r.escalated) return 'town';
  if (role === 'town_officer' && r.escalated === 'town') return 'district';
  return null;
}

function openEscalateForm(log, r, to) {
  const reason = h('textarea', { id: 'sheet-reason', rows: '3', maxlength: '500', placeholder: t('request.escalate.placeholder') });
  openSheet(t('request.escalate', { to: t(`request.to.${to}`) }),
    h('p', { class: 'sheet-quote' }, snippet(r.ev.body.text, 80)),
    opForm({
      fields: [[t('mod.reason'), reason]],
      submitText: t('request.escalate.submit'),
      build: () => (reason.value.trim() ? { op: 'post', group: log.id, client_key: `esc-${r.ev.seq}-${to}`,
        event: { kind: 'request_escalated', body: { request: r.ev.seq, to, reason: reason.value.trim() } } } : 'mod.reason.missing'),
      onDone: () => toast(t('request.escalate.done', { to: t(`request.to.${to}`) })),
    }));
}

function openRequestForm(log) {
  const cat = h('select', { id: 'sheet-category' }, REQUEST_CATEGORIES.map((c) => h('option', { value: tables()['zh-CN'][`request.cat.${c}`] }, t(`request.cat.${c}`))));
  const text = h('textarea', { id: 'sheet-text', rows: '5', maxlength: '2000' });
  const fields = [[t('request.f.category'), cat], [t('request.f.text'), text]];
  const pics = imagePicker();
  if (pics) fields.push([t('images.title'), pics.el]);
  openSheet(t('request.new'), opForm({
    fields,
    submitText: t('request.submit'),
    build: () => {
      if (!text.value.trim()) return 'gov.required';
      const body = { category: cat.value, text: text.value.trim() };
      if (pics && pics.hashes().length) body.images = pics.hashes();
      return { op: 'post', group: log.id, client_key: `req-${myId()}-${Date.now()}`, event: { kind: 'request', body } };
    },
    onDone: (r) => { app.govDetail = { group: log.id, channel: 'requests', seq: r.seq }; scheduleGovDraw(); toast(t('gov.posted')); },
  }));
}

// --- deliberation ------------------------------------------------------------

/** The hall's settings: the last `hall_settings` event, else the protocol's defaults. */
function hallSettings(log) {
  let settings = { proposers: 'members', voting: 'household' };
  for (const ev of log.sorted()) if (ev.kind === 'hall_settings' && ev.body) settings = { ...settings, ...ev.body };
  return settings;
}

function topicState(log) {
  const topics = new Map();
  for (const ev of log.sorted()) {
    if (ev.kind === 'topic') {
      topics.set(ev.seq, { ev, comments: [], votes: [], myVote: null, closed: null, progress: [] });
      continue;
    }
    if (ev.channel !== 'deliberation' || !ev.body || ev.body.topic == null) continue;
    const tp = topics.get(ev.body.topic);
    if (!tp) continue;
    if (ev.kind === 'topic_comment') tp.comments.push(ev);
    else if (ev.kind === 'vote') {
      tp.votes.push(ev);
      if (ev.author.id === myId()) tp.myVote = ev.body.choice;
    } else if (ev.kind === 'topic_closed') tp.closed = ev.body;
    else if (ev.kind === 'project_progress') tp.progress.push(ev);
  }
  return topics;
}

function actionButton(id, label, cls, run) {
  return h('button', { class: `${cls} big`, type: 'button', id, onclick: async (e) => {
    e.target.disabled = true;
    try { await run(); } catch (err) { toast(errorText(err)); }
    e.target.disabled = false;
  } }, label);
}

function drawTopics(main, log, detail) {
  const topics = topicState(log);
  const role = log.info.role;
  if (detail != null) {
    const tp = topics.get(detail);
    main.append(backLink(t('gov.back')));
    if (!tp) return;
    const open = !tp.closed;
    main.append(h('article', { class: 'card topic-detail', id: 'topic-detail', dataset: { seq: tp.ev.seq, state: open ? 'open' : 'closed' } },
      h('h2', {}, tp.ev.body.title),
      h('p', { class: 'muted' }, `${tp.ev.author.name} · ${formatTime(tp.ev.ts)} · ${t(`topic.proposes.${tp.ev.body.proposes || 'convention'}`)}`),
      h('p', { class: 'body-text' }, tp.ev.body.text),
      h('p', { class: 'muted', id: 'topic-voting' }, open ? `${t('topic.until', { time: formatTime(tp.ev.body.vote_until) })} · ${t(`hall.voting.${tp.ev.body.voting || 'household'}`)}` : ''),
      h('div', { class: 'post-actions' }, likeButton(log, tp.ev.seq))));
    if (tp.closed) {
      main.append(h('section', { class: 'card', id: 'topic-result' },
        h('h3', {}, t(`topic.outcome.${tp.closed.outcome}`)),
        h('p', {}, t('topic.tally', { yes: tp.closed.yes, no: tp.closed.no, abstain: tp.closed.abstain }))));
    } else if (tp.myVote) {
      main.append(h('p', { class: 'card', id: 'my-vote' }, t('topic.voted', { choice: t(`topic.choice.${tp.myVote}`) })));
    } else if (!OFFICERS.has(role)) {
      main.append(h('div', { class: 'card vote-row', id: 'vote-row' }, ['yes', 'no', 'abstain'].map((c) => actionButton(`vote-${c}`, t(`topic.choice.${c}`),
        c === 'yes' ? 'primary' : 'secondary', () => govPost(log.id, 'vote', { topic: tp.ev.seq, choice: c }, `vote-${tp.ev.seq}-${myId()}`)))));
    }
    if (open && isStaff(role)) {
      main.append(actionButton('topic-close', t('topic.close'), 'secondary', () => govPost(log.id, 'topic_closed', { topic: tp.ev.seq }, `close-${tp.ev.seq}`)));
    }
    if (tp.closed && tp.closed.outcome === 'project') {
      main.append(h('h3', { class: 'gov-h' }, t('topic.progress')));
      main.append(h('ol', { class: 'timeline', id: 'progress-list' }, tp.progress.map((ev) => h('li', {},
        h('p', {}, h('strong', {}, `${ev.body.percent}% · ${ev.body.status}`)),
        ev.body.note ? h('p', {}, ev.body.note) : null,
        h('div', { class: 'gov-foot' }, h('p', { class: 'muted' }, `${ev.author.name} · ${formatTime(ev.ts)}`), likeButton(log, ev.seq))))));
      if (isStaff(role)) {
        const status = h('input', { id: 'progress-status', maxlength: '50', placeholder: t('topic.progress.status') });
        const percent = h('input', { id: 'progress-percent', type: 'number', min: '0', max: '100', placeholder: '%' });
        const note = h('input', { id: 'progress-note', maxlength: '500', placeholder: t('topic.progress.note') });
        main.append(h('div', { class: 'card actions' }, status, percent, note,
          actionButton('progress-send', t('topic.progress.send'), 'primary', async () => {
            const pct = Number(percent.value);
            if (!status.value.trim() || !(pct >= 0 && pct <= 100) || percent.value === '') return toast(t('gov.required'));
            await govPost(log.id, 'project_progress', { topic: tp.ev.seq, status: status.value.trim(), percent: Math.round(pct), note: note.value.trim() }, `prog-${myId()}-${Date.now()}`);
            status.value = ''; percent.value = ''; note.value = '';
          })));
      }
    }
    main.append(h('h3', { class: 'gov-h' }, t('topic.comments', { n: tp.comments.length })));
    main.append(h('ol', { class: 'timeline', id: 'comment-list' }, tp.comments.map((ev) => h('li', {},
      h('p', { class: 'muted' }, `${ev.author.name} · ${formatTime(ev.ts)}`), h('p', {}, ev.body.text),
      h('div', { class: 'post-actions' }, likeButton(log, ev.seq))))));
    if (!OFFICERS.has(role)) {
      const text = h('textarea', { id: 'comment-text', rows: '2', placeholder: t('topic.comment.placeholder') });
      main.append(h('div', { class: 'card actions' }, text, actionButton('comment-send', t('topic.comment.send'), 'primary', async () => {
        if (!text.value.trim()) return toast(t('gov.required'));
        await govPost(log.id, 'topic_comment', { topic: tp.ev.seq, text: text.value.trim() }, `cmt-${myId()}-${Date.now()}`);
        text.value = '';
      })));
    }
    return;
  }
  const hall = hallSettings(log);
  if (!OFFICERS.has(role) && (hall.proposers === 'members' || isStaff(role))) {
    main.append(h('button', { class: 'primary big', type: 'button', id: 'topic-new', onclick: () => openTopicForm(log) }, t('topic.new')));
  }
  main.append(h('div', { class: 'hall-line', id: 'hall-settings', dataset: { proposers: hall.proposers, voting: hall.voting } },
    h('p', { class: 'muted' }, `${t(`hall.proposers.${hall.proposers}`)} · ${t(`hall.voting.${hall.voting}`)}`),
    role === 'secretary' ? h('button', { class: 'tool', type: 'button', id: 'hall-settings-edit', onclick: () => openHallSettings(log, hall) }, t('hall.settings')) : null));
  const list = [...topics.values()].sort((a, b) => (!!a.closed - !!b.closed) || (b.ev.seq - a.ev.seq));
  if (!list.length && log.historyLoaded) main.append(h('p', { class: 'placeholder' }, t('topic.empty')));
  main.append(h('ul', { class: 'gov-list', id: 'topic-list' }, list.map((tp) => h('li', {
    class: 'gov-item topic', dataset: { seq: tp.ev.seq }, role: 'button', tabindex: '0',
    onclick: () => { app.govDetail = { group: log.id, channel: 'deliberation', seq: tp.ev.seq }; scheduleGovDraw(); },
  },
  h('div', { class: 'gov-line' },
    h('span', { class: 'badge' }, tp.closed ? t(`topic.outcome.${tp.closed.outcome}`) : t('topic.voting')),
    h('strong', { class: 'gov-title' }, tp.ev.body.title)),
  h('div', { class: 'gov-foot' },
    h('p', { class: 'muted' }, tp.closed ? t('topic.tally', { yes: tp.closed.yes, no: tp.closed.no, abstain: tp.closed.abstain })
      : t('topic.until', { time: formatTime(tp.ev.body.vote_until) })),
    likeButton(log, tp.ev.seq))))));
}

/** The secretary sets who proposes topics and whether votes count per household or per person. */
function openHallSettings(log, hall) {
  const proposers = h('select', { id: 'sheet-proposers' }, ['members', 'cadres'].map((v) => h('option', { value: v, selected: v === hall.proposers }, t(`hall.proposers.${v}`))));
  const voting = h('select', { id: 'sheet-voting' }, ['household', 'person'].map((v) => h('option', { value: v, selected: v === hall.voting }, t(`hall.voting.${v}`))));
  openSheet(t('hall.settings'), h('p', { class: 'sheet-quote' }, t('hall.settings.hint')), opForm({
    fields: [[t('hall.f.proposers'), proposers], [t('hall.f.voting'), voting]],
    submitText: t('hall.save'),
    build: () => ({ op: 'post', group: log.id, client_key: `hall-${myId()}-${Date.now()}`,
      event: { kind: 'hall_settings', body: { proposers: proposers.value, voting: voting.value } } }),
    onDone: () => toast(t('hall.saved')),
  }));
}

function openTopicForm(log) {
  const title = h('input', { id: 'sheet-title', maxlength: '200' });
  const text = h('textarea', { id: 'sheet-text', rows: '5' });
  const days = h('select', { id: 'sheet-days' }, [3, 7, 14].map((n) => h('option', { value: String(n) }, t('topic.days', { n }))));
  const proposes = h('select', { id: 'sheet-proposes' }, ['convention', 'project'].map((c) => h('option', { value: c }, t(`topic.proposes.${c}`))));
  openSheet(t('topic.new'), opForm({
    fields: [[t('notice.f.title'), title], [t('notice.f.text'), text], [t('topic.f.days'), days], [t('topic.f.proposes'), proposes]],
    submitText: t('gov.publish'),
    build: () => {
      if (!title.value.trim() || !text.value.trim()) return 'gov.required';
      return { op: 'post', group: log.id, client_key: `topic-${myId()}-${Date.now()}`, event: { kind: 'topic', body: {
        title: title.value.trim(), text: text.value.trim(), vote_until: Date.now() + Number(days.value) * 86400000, proposes: proposes.value } } };
    },
    onDone: (r) => { app.govDetail = { group: log.id, channel: 'deliberation', seq: r.seq }; scheduleGovDraw(); },
  }));
}

// --- exchange ----------------------------------------------------------------

function drawExchange(main, log) {
  const items = new Map();
  for (const ev of log.sorted()) {
    if (ev.kind === 'item') items.set(ev.seq, { ev, claimed: null, handed: false });
    else if (ev.kind === 'item_claimed' && items.has(ev.body.item)) items.get(ev.body.item).claimed = ev.author;
    else if (ev.kind === 'item_handed_over' && items.has(ev.body.item)) items.get(ev.body.item).handed = true;
  }
  const role = log.info.role;
  if (!OFFICERS.has(role)) {
    main.append(h('button', { class: 'primary big', type: 'button', id: 'item-new', onclick: () => openItemForm(log) }, t('item.new')));
  }
  const list = [...items.values()].sort((a, b) => (a.handed - b.handed) || (b.ev.seq - a.ev.seq));
  if (!list.length && log.historyLoaded) main.append(h('p', { class: 'placeholder' }, t('item.empty')));
  main.append(h('ul', { class: 'gov-list', id: 'item-list' }, list.map((it) => {
    const mine = it.ev.author.id === myId();
    const st = it.handed ? 'handed' : it.claimed ? 'claimed' : 'open';
    return h('li', { class: 'gov-item item', dataset: { seq: it.ev.seq, status: st } },
      h('div', { class: 'gov-line' },
        h('span', { class: 'badge' }, t(`item.mode.${it.ev.body.mode}`)),
        h('strong', { class: 'gov-title' }, it.ev.body.title)),
      h('p', {}, it.ev.body.text),
      h('div', { class: 'gov-foot' },
        h('p', { class: 'muted' }, `${it.ev.author.name} · ${formatTime(it.ev.ts)} · ${it.claimed ? t(`item.st.${st}`, { name: it.claimed.name }) : t('item.st.open')}`),
        likeButton(log, it.ev.seq)),
      !mine && !it.claimed && !OFFICERS.has(role) ? actionButton(`claim-${it.ev.seq}`, t('item.claim'), 'secondary',
        () => govPost(log.id, 'item_claimed', { item: it.ev.seq }, `claim-${it.ev.seq}`)) : null,
      mine && it.claimed && !it.handed ? actionButton(`hand-${it.ev.seq}`, t('item.hand_over'), 'primary',
        () => govPost(log.id, 'item_handed_over', { item: it.ev.seq }, `hand-${it.ev.seq}`)) : null);
  })));
}

function openItemForm(log) {
  const mode = h('select', { id: 'sheet-mode' }, ['offer', 'want'].map((m) => h('option', { value: m }, t(`item.mode.${m}`))));
  const title = h('input', { id: 'sheet-title', maxlength: '200' });
  const text = h('textarea', { id: 'sheet-text', rows: '4' });
  openSheet(t('item.new'), opForm({
    fields: [[t('item.f.mode'), mode], [t('notice.f.title'), title], [t('notice.f.text'), text]],
    submitText: t('gov.publish'),
    build: () => {
      if (!title.value.trim() || !text.value.trim()) return 'gov.required';
      return { op: 'post', group: log.id, client_key: `item-${myId()}-${Date.now()}`,
        event: { kind: 'item', body: { mode: mode.value, title: title.value.trim(), text: text.value.trim() } } };
    },
    onDone: () => toast(t('gov.posted')),
  }));
}

// --- likes on chat messages --------------------------------------------------

/** group → Map(seq → {count, mine}). */
const likeCounts = new Map();
/** group → Set(seq) to ask the server about. */
const likeWanted = new Map();
let likeTimer = null;

function likeOf(groupId, seq) {
  const m = likeCounts.get(groupId);
  return (m && m.get(seq)) || { count: 0, mine: false };
}

function likeButton(log, seq) {
  const l = likeOf(log.id, seq);
  wantLikes(log, seq);
  // Officers read; liking is the members' (the server says forbidden).
  const readOnly = OFFICERS.has(log.info.role);
  return h('button', {
    class: 'like', type: 'button', dataset: { target: String(seq), group: String(log.id) }, 'aria-pressed': l.mine ? 'true' : 'false',
    disabled: readOnly,
    onclick: async (e) => {
      e.stopPropagation();
      const cur = likeOf(log.id, seq);
      const kind = cur.mine ? 'unlike' : 'like';
      e.currentTarget.disabled = true;
      const btn = e.currentTarget;
      try {
        await govPost(log.id, kind, { target: seq });
      } catch (err) {
        if (err.code !== 'conflict') toast(errorText(err));
      }
      btn.disabled = false;
      wantLikes(log, seq, true);
    },
  }, t('like', { n: l.count }));
}

/** Asks for the counts of seq (batched); `force` asks again for a known one. */
function wantLikes(log, seq, force) {
  const known = likeCounts.get(log.id);
  if (!force && known && known.has(seq)) return;
  if (!likeWanted.has(log.id)) likeWanted.set(log.id, new Set());
  likeWanted.get(log.id).add(seq);
  if (!likeTimer) likeTimer = setTimeout(fetchLikes, 50);
}

async function fetchLikes() {
  likeTimer = null;
  const batches = [...likeWanted.entries()];
  likeWanted.clear();
  for (const [group, set] of batches) {
    if (!app.hub || !app.hub.connected) continue;
    const targets = [...set];
    for (let i = 0; i < targets.length; i += 100) {
      try {
        const r = await app.hub.request({ op: 'likes', group, targets: targets.slice(i, i + 100) });
        if (!likeCounts.has(group)) likeCounts.set(group, new Map());
        const m = likeCounts.get(group);
        for (const c of r.counts || []) {
          m.set(c.target, { count: c.count, mine: !!c.mine });
          for (const b of document.querySelectorAll(`.like[data-group="${group}"][data-target="${c.target}"]`)) {
            b.textContent = t('like', { n: c.count });
            b.setAttribute('aria-pressed', c.mine ? 'true' : 'false');
          }
        }
      } catch (err) {
        if (err.code !== 'disconnected') toast(errorText(err));
      }
    }
  }
}

// The 15-hour clock of open requests counts down while the tab is open.
setInterval(() => {
  const r = route();
  if (r.name === 'group' && r.channel === 'requests' && $('#gov')) scheduleGovDraw();
}, 30_000);

// ---------------------------------------------------------------------------
// Officer dashboard (town and district officers' home, `#/groups`): every
// group in scope with its figures (`stats` per group), the scope's totals
// (`stats`, `figures`), the TOP-10 needs (`needs`), early warnings as they
// arrive (`warning` pushes) and the escalated requests. Figures are asked
// again when events of a group arrive (throttled) and every minute; if the
// server offers `watch_stats` (planned), its pushes keep the totals live.
// Planned ops the server may not have yet (`warnings`, `watch_stats`,
// `escalated`) are feature-detected: an error reply just hides what they
// would add.
// ---------------------------------------------------------------------------

/**
 * Figures of the scope shown as tiles, in order: `stats` keys, and `figures`
 * keys (request figures) marked `f:`. The first row of four is what an
 * officer looks at first; the rest folds away under "more".
 */
const DASH_TILES = ['participants', 'interactions', 'requests', 'f:reply_rate',
  'requests_answered', 'requests_solved_in_group', 'requests_escalated', 'f:overdue'];
const DASH_MORE = ['notices', 'likes', 'topics', 'conventions', 'projects', 'exchanged_items',
  'f:on_time_rate', 'f:median_first_response_ms'];
/** Figures on each group's card. */
const DASH_GROUP_FIGS = ['interactions', 'participants', 'requests', 'requests_answered', 'requests_escalated'];
/** Events of a group wait this long for company before its figures are asked again. */
const DASH_REFRESH_MS = 1500;
const DASH_POLL_MS = 60_000;
const NEEDS_REFRESH_MS = 10_000;
/** Warnings kept in memory (newest first). */
const MAX_WARNINGS = 100;

app.offices = [];
app.warnings = [];
/** group → image hashes attached in the chat composer, not sent yet. */
app.attachments = new Map();
app.dash = {
  scope: null,
  stats: null,
  figures: null,
  needs: null,
  /** group id → stats of `group:G`. */
  groupStats: new Map(),
  /** group id → members online (presence op, presence_update pushes). */
  online: new Map(),
  /** Group ids whose figures are stale. */
  dirty: new Set(),
  scopeDirty: false,
  timer: null,
  needsAt: 0,
  /** The scope `watch_stats` was accepted for (planned op), or null. */
  watching: null,
  /** null = not asked, false = the server has no such op, else the list. */
  escalated: null,
  /** Whether the `warnings` listing op exists (planned); null = not asked. */
  warningsOp: null,
  moreWarnings: false,
};

function isOfficerHome() {
  return app.offices.some((o) => o && typeof o === 'object' && (o.town != null || o.district != null));
}

/** The scopes of the account's offices: {scope: 'town:2', kind: 'town', of: 2, label}. */
function officeScopes() {
  const out = [];
  for (const o of app.offices) {
    if (!o || typeof o !== 'object') continue;
    if (o.town != null) {
      const g = [...app.groups.values()].find((l) => l.info.role === 'town_officer');
      out.push({ scope: `town:${o.town}`, kind: 'town', of: o.town, label: g ? g.info.town : t('dash.scope.town') });
    } else if (o.district != null) {
      out.push({ scope: `district:${o.district}`, kind: 'district', of: o.district, label: t('dash.scope.district') });
    }
  }
  return out;
}

function dashScope() {
  const scopes = officeScopes();
  return scopes.find((s) => s.scope === app.dash.scope) || scopes[0] || null;
}

function onDashboard() {
  return route().name === 'groups' && !!$('#dashboard');
}

function figureText(key, v) {
  if (v == null) return '–';
  if (key.endsWith('_rate')) return `${Math.round(v / 10)}%`;
  if (key === 'median_first_response_ms') return t('dash.minutes', { n: Math.round(v / 60000) });
  return String(v);
}

function tile(key, v, label) {
  return h('div', { class: 'fig', dataset: { key } },
    h('span', { class: 'fig-n' }, figureText(key, v)),
    h('span', { class: 'fig-l' }, label || t(`dash.fig.${key}`)));
}

function renderDashboard() {
  const s = dashScope();
  const name = app.session.account.name || '';
  const scopes = officeScopes();
  const picker = scopes.length > 1 ? h('select', {
    id: 'dash-scope', 'aria-label': t('dash.scope'),
    onchange: (e) => { app.dash.scope = e.target.value; resetDash(); render(); },
  }, scopes.map((x) => h('option', { value: x.scope, selected: x.scope === (s && s.scope) }, x.label))) : null;
  const groups = [...app.groups.values()].filter((l) => OFFICERS.has(l.info.role));
  return h('div', { class: 'screen groups dashboard' },
    h('header', { class: 'bar' },
      h('h1', { class: 'bar-title' }, t('groups.title.officer', { n: groups.length })),
      connPill()),
    offlineBanner(),
    h('main', { class: 'content dash', id: 'dashboard', dataset: { scope: s ? s.scope : '' } },
      h('section', { class: 'dash-card', id: 'dash-warnings' },
        h('h2', {}, t('dash.warnings')),
        h('ol', { class: 'warn-list', id: 'warnings' }),
        h('div', { id: 'warnings-more' })),
      h('section', { class: 'dash-card', id: 'dash-summary' },
        h('div', { class: 'dash-head' },
          h('h2', {}, s ? t('dash.title', { scope: s.label }) : t('dash.title.none')),
          picker,
          h('span', { class: 'muted dash-live', id: 'dash-live' })),
        h('div', { class: 'figs', id: 'scope-stats' }),
        h('details', { class: 'dash-more' }, h('summary', {}, t('dash.more')),
          h('div', { class: 'figs', id: 'scope-figures' }))),
      h('section', { class: 'dash-card', id: 'dash-escalated', hidden: true },
        h('h2', {}, t('dash.escalated')),
        h('ul', { class: 'gov-list', id: 'escalated' })),
      h('section', { class: 'dash-groups' },
        h('h2', {}, t('dash.groups')),
        dashGroupList(groups)),
      h('section', { class: 'dash-card', id: 'dash-needs' },
        h('h2', {}, t('dash.needs')),
        h('ol', { class: 'needs', id: 'needs' }, h('li', { class: 'muted' }, t('groups.loading')))),
      h('section', { class: 'me' },
        h('p', { class: 'me-name' }, name,
          app.account && app.account.party ? h('span', { class: 'badge badge-party' }, t('badge.party')) : null),
        h('div', { class: 'toolbar' }, settingsButtons()),
        h('button', { class: 'secondary big', type: 'button', id: 'change-password', onclick: openChangePassword }, t('password.title')),
        h('button', { class: 'secondary big', type: 'button', id: 'logout', onclick: () => logoutEverywhere() }, t('settings.logout')))));
}

/** Group cards, under one heading per town when the scope spans several. */
function dashGroupList(groups) {
  const towns = [...new Set(groups.map((l) => l.info.town))];
  const list = (ls) => h('ul', { class: 'group-list' }, ls.map((l) => h('li', {}, dashGroupCard(l))));
  if (towns.length <= 1) return list(groups);
  return towns.map((town) => h('div', { class: 'dash-town', dataset: { town } },
    h('h3', {}, town), list(groups.filter((l) => l.info.town === town))));
}

function dashGroupCard(log) {
  const g = log.info;
  return h('a', { class: 'group-card dash-group', href: `#/g/${g.id}/chat`, dataset: { group: String(g.id) } },
    h('span', { class: 'group-avatar', 'aria-hidden': 'true' }, g.name.slice(0, 1)),
    h('span', { class: 'group-main' },
      h('span', { class: 'group-name' }, g.name),
      h('span', { class: 'group-sub' }, `${g.town} · ${t(`kind.${g.kind}`)}`, h('span', { class: 'online' })),
      h('span', { class: 'group-figs' })));
}

function drawDashGroup(groupId) {
  const card = document.querySelector(`#dashboard .dash-group[data-group="${groupId}"]`);
  if (!card) return;
  const st = app.dash.groupStats.get(groupId);
  const figs = card.querySelector('.group-figs');
  figs.replaceChildren(...DASH_GROUP_FIGS.map((k) => h('span', { class: 'gfig', dataset: { key: k } },
    h('b', {}, figureText(k, st ? st[k] : null)), ` ${t(`dash.gfig.${k}`)}`)));
  const online = app.dash.online.get(groupId);
  const el = card.querySelector('.online');
  el.textContent = online != null ? ` · ${t('dash.online', { n: online })}` : '';
  card.classList.toggle('warned', app.warnings.some((w) => w.group === groupId && !w.seen));
}

function dashTile(key) {
  const st = app.dash.stats;
  const f = app.dash.figures;
  if (!key.startsWith('f:')) return tile(key, st ? st[key] : null);
  const k = key.slice(2);
  // A rate of no requests at all is no figure.
  const none = f && !f.requests && (k.endsWith('_rate') || k.startsWith('median'));
  return tile(k, f && !none ? f[k] : null);
}

function drawDashStats() {
  const box = $('#scope-stats');
  if (!box) return;
  box.replaceChildren(...DASH_TILES.map(dashTile));
  $('#scope-figures').replaceChildren(...DASH_MORE.map(dashTile));
  const live = $('#dash-live');
  if (live) live.textContent = app.dash.watching ? t('dash.live') : app.dash.updatedAt ? t('dash.updated', { time: formatTime(app.dash.updatedAt) }) : '';
}

function drawDashNeeds() {
  const list = $('#needs');
  if (!list) return;
  const needs = app.dash.needs;
  if (!needs) return;
  if (!needs.length) {
    list.replaceChildren(h('li', { class: 'muted' }, t('dash.needs.empty')));
    return;
  }
  const top = needs[0].count || 1;
  list.replaceChildren(...needs.slice(0, 10).map((n, i) => h('li', { class: 'need', dataset: { term: n.term, source: n.source } },
    h('span', { class: 'need-rank' }, String(i + 1)),
    h('span', { class: 'need-term' }, n.term,
      n.source === 'category' ? h('span', { class: 'badge' }, t('dash.needs.category')) : null),
    h('span', { class: 'need-bar', style: `--w:${Math.max(8, Math.round((n.count / top) * 100))}%` }),
    h('span', { class: 'need-n' }, String(n.count)))));
}

function warningEl(w) {
  const log = app.groups.get(w.group);
  const link = (w.links && w.links[0]) || { group: w.group };
  let reason = t(`warning.reason.${w.reason}`);
  if (reason === `warning.reason.${w.reason}`) reason = w.reason;
  return h('li', { class: `warn reason-${w.reason}`, dataset: { group: String(w.group), seq: link.seq != null ? String(link.seq) : '' } },
    h('div', { class: 'warn-head' },
      h('span', { class: 'badge warn-badge' }, reason),
      h('strong', {}, log ? log.info.name : `#${w.group}`),
      h('time', { class: 'muted' }, formatTime(w.at || w.received))),
    h('p', { class: 'warn-detail' }, warningDetail(w)),
    h('a', { class: 'warn-open', href: `#/g/${link.group}/chat`, onclick: () => { w.seen = true; } }, t('dash.warning.open')));
}

/** The server's detail is for logs (「word」 in a message): say it in the reader's language. */
function warningDetail(w) {
  const word = w.reason === 'keyword' && typeof w.detail === 'string' ? w.detail.match(/「(.+?)」/) : null;
  return word ? t('warning.keyword', { word: word[1] }) : (w.detail || '');
}

function drawDashWarnings() {
  const list = $('#warnings');
  if (!list) return;
  const scoped = app.warnings.filter((w) => app.groups.has(w.group));
  list.replaceChildren(...(scoped.length ? scoped.slice(0, 30).map(warningEl) : [h('li', { class: 'muted warn-empty' }, t('dash.warnings.empty'))]));
  const more = $('#warnings-more');
  more.replaceChildren();
  if (app.dash.moreWarnings && app.dash.warningsOp) {
    more.append(h('button', { class: 'secondary', type: 'button', id: 'warnings-older', onclick: () => loadWarnings(true) }, t('audit.more')));
  }
}

function drawDashEscalated() {
  const box = $('#dash-escalated');
  if (!box) return;
  const list = app.dash.escalated;
  box.hidden = !Array.isArray(list);
  if (!Array.isArray(list)) return;
  const ul = $('#escalated');
  if (!list.length) {
    ul.replaceChildren(h('li', { class: 'muted' }, t('dash.escalated.empty')));
    return;
  }
  ul.replaceChildren(...list.map((r) => {
    const log = app.groups.get(r.group);
    return h('li', { class: 'gov-item', dataset: { group: String(r.group), seq: String(r.seq) }, role: 'button', tabindex: '0',
      onclick: () => openRequestOf(r.group, r.seq) },
    h('div', { class: 'gov-line' },
      h('span', { class: 'badge st-waiting' }, t(`request.to.${r.to || 'town'}`)),
      h('strong', { class: 'gov-title' }, `${log ? log.info.name : `#${r.group}`} · ${r.category || ''}`)),
    h('p', { class: 'gov-text' }, snippet(r.text || '', 60)),
    h('p', { class: 'muted' }, `${formatTime(r.escalated_at || r.filed_at)}${r.automatic ? ` · ${t('dash.escalated.auto')}` : ''}`));
  }));
}

/** Opens a request of any group: the group's requests tab with it shown. */
function openRequestOf(group, seq) {
  app.govDetail = { group, channel: 'requests', seq };
  go(`#/g/${group}/requests`);
}

function drawDashboard() {
  drawDashStats();
  drawDashNeeds();
  drawDashWarnings();
  drawDashEscalated();
  for (const l of app.groups.values()) drawDashGroup(l.id);
}

function resetDash() {
  stopWatchStats();
  app.dash.stats = null;
  app.dash.figures = null;
  app.dash.needs = null;
  app.dash.escalated = null;
  app.dash.needsAt = 0;
}

/** A reply, or null when the server refuses or lacks the op (planned ones). */
async function askQuietly(op) {
  try {
    return await app.hub.request(op);
  } catch (err) {
    return { error: err.code || 'unknown' };
  }
}

async function afterDashMounted() {
  if (!app.hub) return;
  await waitConnected();
  if (!app.hub || !app.hub.connected || !onDashboard()) return;
  const s = dashScope();
  drawDashboard();
  if (!s) return;
  app.dash.scope = s.scope;
  startWatchStats(s);
  refreshScope(s, true);
  const groups = [...app.groups.values()].filter((l) => OFFICERS.has(l.info.role));
  for (const l of groups) app.dash.dirty.add(l.id);
  refreshGroups();
  for (const l of groups) askPresence(l.id);
  if (app.dash.warningsOp === null || !app.warnings.length) loadWarnings(false);
  loadEscalated(s);
  clearInterval(app.dash.poll);
  app.dash.poll = setInterval(() => {
    if (!onDashboard()) {
      clearInterval(app.dash.poll);
      app.dash.poll = null;
      stopWatchStats();
      return;
    }
    const sc = dashScope();
    if (!sc) return;
    if (!app.dash.watching) refreshScope(sc, true);
    else refreshNeeds(sc);
    for (const l of app.groups.values()) if (OFFICERS.has(l.info.role)) app.dash.dirty.add(l.id);
    refreshGroups();
    loadEscalated(sc);
  }, DASH_POLL_MS);
}

async function refreshScope(s, withNeeds) {
  const [st, fig] = await Promise.all([
    app.dash.watching ? Promise.resolve(null) : askQuietly({ op: 'stats', scope: s.scope }),
    askQuietly({ op: 'figures', scope: s.kind, of: s.of }),
  ]);
  if (st && st.stats) app.dash.stats = st.stats;
  if (fig && fig.figures) app.dash.figures = fig.figures;
  if (st && st.error && st.error !== 'disconnected') toast(errorText({ code: st.error }));
  app.dash.updatedAt = Date.now();
  drawDashStats();
  if (withNeeds) refreshNeeds(s);
}

async function refreshNeeds(s) {
  app.dash.needsAt = Date.now();
  const r = await askQuietly({ op: 'needs', scope: s.scope });
  if (r && Array.isArray(r.needs)) app.dash.needs = r.needs;
  else if (r && r.error !== 'disconnected' && !app.dash.needs) app.dash.needs = []; // not "loading" for ever
  drawDashNeeds();
}

let dashGroupsBusy = false;
async function refreshGroups() {
  if (dashGroupsBusy) return;
  dashGroupsBusy = true;
  try {
    while (app.dash.dirty.size && app.hub && app.hub.connected) {
      const ids = [...app.dash.dirty];
      app.dash.dirty.clear();
      // In parallel: the hub's rate limiter paces them.
      await Promise.all(ids.map(async (id) => {
        const r = await askQuietly({ op: 'stats', scope: `group:${id}` });
        if (r && r.stats) {
          app.dash.groupStats.set(id, r.stats);
          drawDashGroup(id);
        }
      }));
    }
  } finally {
    dashGroupsBusy = false;
  }
}

async function askPresence(groupId) {
  const r = await askQuietly({ op: 'presence', group: groupId });
  if (r && typeof r.online === 'number') {
    app.dash.online.set(groupId, r.online);
    drawDashGroup(groupId);
  }
}

/** An event of a group in scope arrived: its figures (and the scope's) are stale. */
function dashOnEvent(ev) {
  if (!isOfficerHome() || !onDashboard()) return;
  app.dash.dirty.add(ev.group);
  app.dash.scopeDirty = true;
  if (ev.channel === 'requests' && ev.kind !== 'request') app.dash.escalatedDirty = true;
  if (app.dash.timer) return;
  app.dash.timer = setTimeout(() => {
    app.dash.timer = null;
    const s = dashScope();
    if (!s || !onDashboard()) return;
    if (app.dash.scopeDirty) {
      app.dash.scopeDirty = false;
      const needs = Date.now() - app.dash.needsAt > NEEDS_REFRESH_MS;
      refreshScope(s, needs);
    }
    if (app.dash.escalatedDirty) {
      app.dash.escalatedDirty = false;
      loadEscalated(s);
    }
    refreshGroups();
  }, DASH_REFRESH_MS);
}

/** `warning` push: kept (newest first), shown on the dashboard, told to everyone else. */
function onWarning(w) {
  const warning = { ...w, received: Date.now() };
  // Stored warnings (planned) carry a seq: never keep one twice.
  if (warning.seq != null && app.warnings.some((x) => x.seq === warning.seq && x.group === warning.group)) return;
  app.warnings.unshift(warning);
  if (app.warnings.length > MAX_WARNINGS) app.warnings.length = MAX_WARNINGS;
  if (onDashboard()) {
    drawDashWarnings();
    drawDashGroup(warning.group);
    return;
  }
  const log = app.groups.get(warning.group);
  let reason = t(`warning.reason.${warning.reason}`);
  if (reason === `warning.reason.${warning.reason}`) reason = warning.reason;
  toast(t('warning.toast', { group: log ? log.info.name : `#${warning.group}`, reason }));
}

/** Stored warnings (planned `warnings` op): the list before the live ones. */
async function loadWarnings(older) {
  const s = dashScope();
  if (!s || app.dash.warningsOp === false) return;
  const op = { op: 'warnings', scope: s.scope };
  if (older) {
    const withSeq = app.warnings.filter((w) => w.seq != null);
    if (withSeq.length) op.before = Math.min(...withSeq.map((w) => w.seq));
  }
  const r = await askQuietly(op);
  if (!r || !Array.isArray(r.warnings)) {
    // unknown_op / bad_request: this server pushes warnings but keeps none.
    app.dash.warningsOp = false;
    return;
  }
  app.dash.warningsOp = true;
  app.dash.moreWarnings = !!r.more;
  const have = new Set(app.warnings.filter((w) => w.seq != null).map((w) => `${w.group}:${w.seq}`));
  for (const w of r.warnings) if (!have.has(`${w.group}:${w.seq}`)) app.warnings.push({ ...w, received: w.at || Date.now() });
  app.warnings.sort((a, b) => (b.at || b.received) - (a.at || a.received));
  drawDashWarnings();
}

/** Escalated requests of the scope (planned `escalated` op). */
async function loadEscalated(s) {
  if (app.dash.escalated === false) return;
  const r = await askQuietly({ op: 'escalated', scope: s.scope });
  if (r && Array.isArray(r.requests)) {
    app.dash.escalated = r.requests.filter((x) => x.status !== 'resolved');
  } else if (r && r.error !== 'disconnected') {
    app.dash.escalated = false;
  }
  drawDashEscalated();
}

/** Live totals (planned `watch_stats`): replaces the polling of the scope's stats. */
async function startWatchStats(s) {
  if (app.dash.watching === s.scope || app.dash.noWatch) return;
  const r = await askQuietly({ op: 'watch_stats', scope: s.scope });
  if (r && r.stats) {
    app.dash.watching = s.scope;
    app.dash.stats = r.stats;
    drawDashStats();
  } else if (r && r.error !== 'disconnected') {
    app.dash.noWatch = true;
  }
}

function stopWatchStats() {
  const scope = app.dash.watching;
  if (!scope) return;
  app.dash.watching = null;
  if (app.hub && app.hub.connected) askQuietly({ op: 'unwatch_stats', scope });
}

function onStatsUpdate(u) {
  const st = u.stats;
  if (!st) return;
  if (st.scope && st.scope.startsWith('group:')) {
    app.dash.groupStats.set(Number(st.scope.slice(6)), st);
    drawDashGroup(Number(st.scope.slice(6)));
    return;
  }
  if (st.scope && st.scope !== app.dash.watching) return;
  app.dash.stats = st;
  app.dash.updatedAt = Date.now();
  drawDashStats();
}

function onPresenceUpdate(p) {
  if (typeof p.online !== 'number') return;
  app.dash.online.set(p.group, p.online);
  drawDashGroup(p.group);
}

// ---------------------------------------------------------------------------
// Pictures (protocol "Pictures": POST /api/images → {image: sha256 hex},
// shown from /api/images/<hash>; bodies carry `images`, at most 9). On an
// older server without the endpoint, the first upload's 404/405 hides every
// attach button for the session.
// ---------------------------------------------------------------------------

const MAX_IMAGES = 9;
const IMAGE_TYPES = ['image/jpeg', 'image/png', 'image/webp', 'image/gif'];
const HASH = /^[0-9a-f]{64}$/;
let imagesOff = false;

function imagesSupported() {
  return !imagesOff;
}

/** Uploads one picture; resolves with its hash, or null (told to the user). */
async function uploadImage(file) {
  if (!IMAGE_TYPES.includes(file.type)) {
    toast(t('images.bad_type'));
    return null;
  }
  let res;
  try {
    res = await fetch('/api/images', {
      method: 'POST', headers: { authorization: `Bearer ${app.session.token}`, 'content-type': file.type }, body: file,
    });
  } catch {
    toast(t('images.failed'));
    return null;
  }
  if (res.status === 404 || res.status === 405 || res.status === 501) {
    imagesOff = true;
    for (const b of document.querySelectorAll('.attach')) b.remove();
    toast(t('images.unsupported'));
    return null;
  }
  if (res.status === 413) {
    // The limit is the server's (--max-image-bytes); its message names it.
    let max = null;
    try {
      const m = /at most (\d+) bytes/.exec((await res.json()).message || '');
      if (m) max = Number(m[1]);
    } catch { /* no body: say it without the limit */ }
    toast(max ? t('images.too_large.max', { max: formatBytes(max) }) : t('images.too_large'));
    return null;
  }
  if (res.status === 415) {
    // The bytes are not the picture the name or type claims.
    toast(t('images.bad_type'));
    return null;
  }
  if (res.status === 429) {
    toast(t('images.rate_limited'));
    return null;
  }
  if (res.status === 401) {
    logout('login.expired');
    return null;
  }
  if (!res.ok) {
    toast(t('images.failed'));
    return null;
  }
  try {
    const body = await res.json();
    return body && HASH.test(body.image) ? body.image : null;
  } catch {
    return null;
  }
}

/** 8192 → "8 KB", 4194304 → "4 MB". */
function formatBytes(n) {
  if (n >= 1024 * 1024) return `${Math.round((n / (1024 * 1024)) * 10) / 10} MB`;
  return `${Math.max(1, Math.round(n / 1024))} KB`;
}

/** A button with a hidden file input; each chosen picture is uploaded and kept in app.attachments under `groupId`. */
function attachButton(groupId, onChange, id = 'attach') {
  const input = h('input', { type: 'file', accept: IMAGE_TYPES.join(','), multiple: true, hidden: true });
  const label = h('label', { class: 'attach', id, title: t('images.attach'), 'aria-label': t('images.attach') },
    svgIcon(ICON_IMAGE), input);
  input.addEventListener('change', async () => {
    const files = [...input.files];
    input.value = '';
    const list = app.attachments.get(groupId) || [];
    // On a slow line an upload takes seconds: the button shows it is busy.
    label.classList.add('busy');
    label.setAttribute('aria-busy', 'true');
    try {
      for (const f of files) {
        if (list.length >= MAX_IMAGES) {
          toast(t('images.max', { n: MAX_IMAGES }));
          break;
        }
        const hash = await uploadImage(f);
        if (hash) list.push(hash);
        if (imagesOff) break;
      }
    } finally {
      label.classList.remove('busy');
      label.removeAttribute('aria-busy');
    }
    app.attachments.set(groupId, list);
    onChange();
  });
  return label;
}

/** The chat composer's strip of attached pictures, each removable. */
function drawAttachments(groupId) {
  const box = $('#attachments');
  if (!box) return;
  const list = app.attachments.get(groupId) || [];
  box.hidden = !list.length;
  box.replaceChildren(...list.map((hash, i) => h('span', { class: 'attached' },
    h('img', { src: `/api/images/${hash}`, alt: '', loading: 'lazy' }),
    h('button', { type: 'button', class: 'attached-x', 'aria-label': t('images.remove'), onclick: () => {
      list.splice(i, 1);
      drawAttachments(groupId);
    } }, '×'))));
}

/** For a sheet form: an attach button with its thumbnails; null when pictures are off. */
function imagePicker() {
  if (!imagesSupported()) return null;
  const key = `sheet-${Date.now()}`;
  const strip = h('div', { class: 'attachments sheet-attachments', id: 'sheet-images' });
  const draw = () => {
    const list = app.attachments.get(key) || [];
    strip.replaceChildren(...list.map((hash, i) => h('span', { class: 'attached' },
      h('img', { src: `/api/images/${hash}`, alt: '' }),
      h('button', { type: 'button', class: 'attached-x', 'aria-label': t('images.remove'), onclick: () => { list.splice(i, 1); draw(); } }, '×'))));
  };
  const el = h('div', { class: 'picker', id: 'sheet-picker' }, attachButton(key, draw, 'sheet-attach'), strip);
  return { el, hashes: () => (app.attachments.get(key) || []).slice() };
}

/** Thumbnails of a post's pictures; a tap shows one full screen. */
function thumbs(images) {
  const list = Array.isArray(images) ? images.filter((x) => typeof x === 'string' && HASH.test(x)).slice(0, MAX_IMAGES) : [];
  if (!list.length) return null;
  return h('div', { class: `thumbs n${Math.min(list.length, 3)}` }, list.map((hash) => h('button', {
    type: 'button', class: 'thumb', 'aria-label': t('images.open'),
    onclick: (e) => { e.stopPropagation(); openImage(hash); },
  }, h('img', { src: `/api/images/${hash}`, alt: '', loading: 'lazy' }))));
}

function openImage(hash) {
  closeSheet();
  const overlay = h('div', { class: 'sheet-overlay lightbox', id: 'sheet', role: 'dialog', 'aria-modal': 'true', 'aria-label': t('images.open'),
    onclick: closeSheet },
  h('img', { src: `/api/images/${hash}`, alt: '' }),
  h('button', { class: 'sheet-close', type: 'button', 'aria-label': t('sheet.close') }, '×'));
  document.body.append(overlay);
}

// ---------------------------------------------------------------------------
// Exposed for tests and debugging only; the app never reads it. Boot last:
// every module-level declaration above must exist before the first render.
window.villagehub = { app };

boot();
