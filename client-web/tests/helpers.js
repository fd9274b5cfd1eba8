// Shared by the browser tests: start the real villagehub binary, launch
// Debian's Chromium through playwright-core, log a demo resident in.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '..', '..');
// The binary `cargo build -p villagehub` makes (test.sh runs it), honouring
// CARGO_TARGET_DIR like cargo does; VILLAGEHUB_BIN overrides.
const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(REPO, process.env.CARGO_TARGET_DIR) : path.join(REPO, 'target');
export const BIN = process.env.VILLAGEHUB_BIN || path.join(TARGET, 'debug', 'villagehub');
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const ARTIFACTS = path.join(REPO, 'test-artifacts');
export const PASSWORD = 'demo1234';

/** Demo login: group g (1..3), person p (1 secretary, 2 cadre, 3..6 members). */
export function demoPhone(g, p) {
  return `1380000${g}${String(p).padStart(3, '0')}`;
}

export function tempDir(prefix) {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

const LISTENING = /villagehub listening on (http:\/\/127\.0\.0\.1:(\d+))/;

/**
 * Starts the server binary and resolves once it prints its listening line.
 * `listen` defaults to port 0; pass the old address to restart on the same
 * port, so that the browser's reconnects find it again.
 */
export async function startServer({ dataDir, listen = '127.0.0.1:0', demo = true, extra = [], timeoutMs = 60_000 }) {
  if (!existsSync(BIN)) throw new Error(`server binary not found at ${BIN}: run cargo build -p villagehub (or set VILLAGEHUB_BIN)`);
  const args = ['--listen', listen, '--data-dir', dataDir, ...extra];
  if (demo) args.push('--demo');
  const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' } });
  let out = '';
  let err = '';
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`server did not print its listening line within ${timeoutMs} ms\nstdout:\n${out}\nstderr:\n${err}`));
    }, timeoutMs);
    proc.stdout.setEncoding('utf8');
    proc.stderr.setEncoding('utf8');
    proc.stdout.on('data', (chunk) => {
      out += chunk;
      const m = out.match(LISTENING);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.stderr.on('data', (chunk) => {
      err += chunk;
      if (err.length > 200_000) err = err.slice(-100_000);
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`server exited early (code ${code}, signal ${signal})\nstdout:\n${out}\nstderr:\n${err}`));
    });
  });
  const port = Number(new URL(url).port);
  let stopping = false;
  proc.once('exit', (code, signal) => {
    // A server that dies on its own is a bug worth seeing in the test output.
    if (!stopping) console.error(`villagehub exited unexpectedly (code ${code}, signal ${signal})\nstderr tail:\n${err.slice(-4000)}`);
  });
  return {
    proc,
    url,
    port,
    listen: `127.0.0.1:${port}`,
    stdout: () => out,
    stderr: () => err,
    /** Graceful stop (SIGTERM: the server closes sockets with 1001). */
    async stop() {
      stopping = true;
      if (proc.exitCode !== null || proc.signalCode !== null) return exited;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
    /** Crash (SIGKILL): sockets just drop, nothing is flushed by the server. */
    async kill() {
      stopping = true;
      if (proc.exitCode !== null || proc.signalCode !== null) return exited;
      proc.kill('SIGKILL');
      return exited;
    },
  };
}

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-sync',
];

/**
 * One resident = one Chromium with its own fresh, empty profile directory
 * (a persistent context on a mkdtemp dir): as separate as two phones.
 */
export async function launchPhone({ width = 360, height = 740 } = {}) {
  const profile = tempDir('vh-chromium-');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width, height },
    deviceScaleFactor: 2,
    isMobile: false,
    hasTouch: true,
    locale: 'zh-CN',
    timezoneId: 'Asia/Shanghai',
  });
  await watchDoubles(context);
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    // A refused WebSocket while the server is down is the browser's own log
    // line, expected in the restart test; anything else is a bug.
    if (m.type() === 'error' && !/WebSocket connection to .* failed/.test(m.text())) errors.push(`console: ${m.text()}`);
  });
  return {
    context,
    page,
    errors,
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Opens the app and logs in through the form, as a person would. */
export async function login(page, baseUrl, phone, password = PASSWORD) {
  await page.goto(`${baseUrl}/`);
  await page.fill('#phone', phone);
  await page.fill('#password', password);
  await page.click('#login-submit');
}

/** Waits until the chat of some group is open and connected. */
export async function waitForChat(page) {
  await page.waitForSelector('main.chat #composer-input', { timeout: 20_000 });
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 20_000 });
}

/** Types a message in the composer and presses the send button. */
export async function sendText(page, text) {
  await page.fill('#composer-input', text);
  await page.click('#send');
}

/** Texts of the confirmed (not pending) messages on screen, in order. */
export async function shownTexts(page) {
  return page.$$eval('#msglist .msg .text', (els) => els.map((e) => e.textContent));
}

export function ensureArtifacts() {
  mkdirSync(ARTIFACTS, { recursive: true });
  return ARTIFACTS;
}

export function rmDir(dir) {
  rmSync(dir, { recursive: true, force: true });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Posts chat messages as another demo account, over its own WebSocket opened
 * inside `page` (Node 20 has no WebSocket client of its own), paced under the
 * server's rate limit. `items` is a text or a list of texts or {text, reply_to}.
 * Resolves with the seqs from the `sent` replies.
 */
export async function postAs(page, phone, items, replyTo) {
  const list = (Array.isArray(items) ? items : [items]).map((x) => (typeof x === 'string' ? { text: x, reply_to: replyTo ?? null } : x));
  const seqs = await page.evaluate(async ([phone, password, list]) => {
    const res = await fetch('/api/login', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ phone, password }),
    });
    if (!res.ok) throw new Error(`login ${phone}: HTTP ${res.status}`);
    const { token } = await res.json();
    const ws = new WebSocket(`ws://${location.host}/ws`);
    const frames = [];
    let wake = null;
    ws.onmessage = (m) => { frames.push(JSON.parse(m.data)); if (wake) wake(); };
    const reply = async (id) => {
      for (;;) {
        const i = frames.findIndex((x) => x.id === id);
        if (i >= 0) return frames.splice(i, 1)[0];
        await new Promise((r) => { wake = r; setTimeout(r, 200); });
      }
    };
    await new Promise((r, j) => { ws.onopen = r; ws.onerror = j; });
    ws.send(JSON.stringify({ op: 'hello', id: 1, token, client: 'test' }));
    const w = await reply(1);
    if (w.type !== 'welcome') throw new Error(JSON.stringify(w));
    const out = [];
    let id = 2;
    for (const item of list) {
      const body = { text: item.text };
      if (item.reply_to != null) body.reply_to = item.reply_to;
      ws.send(JSON.stringify({
        op: 'send', id, group: w.groups[0].id, channel: 'chat', body, client_key: `test-${Date.now()}-${id}-${Math.random()}`,
      }));
      const s = await reply(id);
      if (s.type !== 'sent') throw new Error(JSON.stringify(s));
      out.push(s.seq);
      id += 1;
      await new Promise((r) => setTimeout(r, 70)); // ~14 ops/s, under the 20/s limit
    }
    ws.close(1000);
    return out;
  }, [phone, PASSWORD, list]);
  return Array.isArray(items) ? seqs : seqs[0];
}

/**
 * Installs, in every page of the context, a watcher that records any moment
 * at which one message text is visible twice (a confirmed message and a
 * greyed copy, or two confirmed ones): "never shown twice" must hold at every
 * frame, not only once things settle. Read the record with `doubles(page)`.
 */
export async function watchDoubles(context) {
  await context.addInitScript(() => {
    window.__vhDoubles = [];
    const check = () => {
      const seen = new Set();
      const visible = [...document.querySelectorAll('#msglist .msg .text, #pending .msg:not([hidden]) .text')];
      for (const el of visible) {
        const text = el.textContent;
        if (seen.has(text)) window.__vhDoubles.push(text);
        seen.add(text);
      }
    };
    let scheduled = false;
    new MutationObserver(() => {
      if (scheduled) return;
      scheduled = true;
      // After the current task's DOM changes, before the next paint.
      queueMicrotask(() => { scheduled = false; check(); });
    }).observe(document, { childList: true, subtree: true, attributes: true, attributeFilter: ['hidden'] });
  });
}

export async function doubles(page) {
  return page.evaluate(() => [...new Set(window.__vhDoubles || [])]);
}

/**
 * Runs protocol ops as another demo account over its own WebSocket opened
 * inside `page` (any page of the server; Node 20 has no WebSocket client),
 * paced under the rate limit. Each op gets an `id`; resolves with the
 * replies in order — error replies included, not thrown — and, in
 * `pushes`, every id-less frame that arrived meanwhile.
 */
export async function opsAs(page, phone, ops, { password = PASSWORD, linger = 0 } = {}) {
  return page.evaluate(async ([phone, password, ops, linger]) => {
    const res = await fetch('/api/login', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ phone, password }),
    });
    if (!res.ok) throw new Error(`login ${phone}: HTTP ${res.status}`);
    const { token } = await res.json();
    const ws = new WebSocket(`ws://${location.host}/ws`);
    const frames = [];
    const pushes = [];
    let wake = null;
    ws.onmessage = (m) => {
      const f = JSON.parse(m.data);
      if (f.id == null) pushes.push(f);
      else frames.push(f);
      if (wake) wake();
    };
    const reply = async (id) => {
      for (;;) {
        const i = frames.findIndex((x) => x.id === id);
        if (i >= 0) return frames.splice(i, 1)[0];
        await new Promise((r) => { wake = r; setTimeout(r, 200); });
      }
    };
    await new Promise((r, j) => { ws.onopen = r; ws.onerror = j; });
    ws.send(JSON.stringify({ op: 'hello', id: 1, token, client: 'test' }));
    const w = await reply(1);
    if (w.type !== 'welcome') throw new Error(JSON.stringify(w));
    const replies = [];
    let id = 2;
    for (const op of ops) {
      ws.send(JSON.stringify({ ...op, id }));
      replies.push(await reply(id));
      id += 1;
      await new Promise((r) => setTimeout(r, 70)); // ~14 ops/s, under the 20/s limit
    }
    if (linger) await new Promise((r) => setTimeout(r, linger));
    ws.close(1000);
    return { welcome: w, replies, pushes };
  }, [phone, password, ops, linger]);
}

/**
 * One server for a test file, and phones on it: registers the node:test
 * `before`/`after` hooks (pass them in). `extra`: more server flags, kept
 * across restarts; `setup(suite)`: runs once the server is up. Returns
 *  - `phone(who, {wait})`: a Chromium logged in as `who`, waiting for the
 *    chat (`wait: 'chat'`, default), the home screen (`'home'`: the officers'
 *    dashboard or the group list) or nothing (`'none'`);
 *  - `blank()`: a Chromium on the login page, nobody logged in;
 *  - `stop('stop'|'kill')`, `start({dataDir, listen, demo})`: take the
 *    server down and bring it back (same port and data directory unless
 *    told otherwise; no demo data the second time) — the pages' reconnects
 *    find it again;
 *  - `tempDir(prefix)`: a directory removed after the file;
 *  - `shot(page, name, {fullPage})`: fails the test if the page scrolls
 *    sideways at phone width, then saves a screenshot under test-artifacts/;
 *  - `server()`, `url()`, `dataDir()`, and `phones` (every phone opened, e.g.
 *    to check none had page errors).
 */
export function phoneSuite({ before, after, prefix, extra = [], setup }) {
  let server;
  let dataDir;
  let dir;
  const phones = [];
  const dirs = [];
  let suite;
  before(async () => {
    dir = ensureArtifacts();
    dataDir = tempDir(prefix);
    dirs.push(dataDir);
    server = await startServer({ dataDir, extra });
    // A file's own set-up goes here, not in a `before` of its own: node:test
    // does not wait for this hook before starting another.
    if (setup) await setup(suite);
  });
  after(async () => {
    for (const p of phones) await p.close();
    if (server) await server.stop();
    for (const d of dirs) rmDir(d);
  });
  const open = async () => {
    const p = await launchPhone();
    phones.push(p);
    return p;
  };
  suite = {
    phones,
    server: () => server,
    url: () => server.url,
    dataDir: () => dataDir,
    async blank() {
      const p = await open();
      await p.page.goto(`${server.url}/`);
      return p;
    },
    async phone(who, { wait = 'chat' } = {}) {
      const p = await open();
      await login(p.page, server.url, who);
      if (wait === 'chat') await waitForChat(p.page);
      else if (wait === 'home') {
        await p.page.waitForSelector('#dashboard, .group-list, #application', { timeout: 20_000 });
        await p.page.waitForSelector('#conn[data-state="connected"]', { timeout: 20_000 });
      }
      return p;
    },
    /** Closes one phone early (its profile goes with it). */
    async close(p) {
      const i = phones.indexOf(p);
      if (i >= 0) phones.splice(i, 1);
      await p.close();
    },
    async stop(how = 'stop') {
      if (how === 'kill') await server.kill();
      else await server.stop();
      return server.listen;
    },
    async start({ dataDir: from = dataDir, listen = server.listen, demo = false } = {}) {
      server = await startServer({ dataDir: from, listen, demo, extra });
      return server;
    },
    tempDir(p) {
      const d = tempDir(p);
      dirs.push(d);
      return d;
    },
    async shot(page, name, { fullPage = false } = {}) {
      const overflow = await page.evaluate(
        () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
      );
      if (overflow > 0) throw new Error(`${name}: the page is ${overflow}px wider than the screen`);
      await page.screenshot({ path: path.join(dir, `${name}.png`), fullPage });
    },
  };
  return suite;
}
