// The server restarts (once gracefully, once killed with SIGKILL) on the same
// data directory and port while a resident keeps typing. After the client
// reconnects, every message is on screen exactly once — for the writer, for
// a neighbour who stayed connected, and for a newcomer who loads history.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  phoneSuite, login, waitForChat, sendText, shownTexts, demoPhone, sleep, doubles,
} from './helpers.js';

const suite = phoneSuite({ before, after, prefix: 'vh-web-restart-' });
const { phone, blank, phones, url } = suite;

const connState = (page) => page.getAttribute('#conn', 'data-state');

async function restart(how) {
  await suite.stop(how);
  // Same data directory, same port: the page's reconnects must find it.
  return () => suite.start();
}

test('messages typed across two server restarts are all there, exactly once', async () => {
  const writer = await phone(demoPhone(1, 3));
  const neighbour = await phone(demoPhone(1, 5));

  const run = Date.now().toString(36);
  const N = 30;
  const texts = Array.from({ length: N }, (_, i) => `第${i + 1}条消息 ${run}`);
  let sawPendingOffline = false;
  let sawNotConnected = new Set();
  let bringBack = null;

  for (let i = 0; i < N; i++) {
    // Down at 8 (graceful, 1001) and up at 13; down at 19 (SIGKILL) and up at 24.
    if (i === 8) bringBack = await restart('stop');
    if (i === 19) bringBack = await restart('kill');
    if (i === 13 || i === 24) {
      await bringBack();
      bringBack = null;
    }
    await sendText(writer.page, texts[i]);
    if (bringBack) {
      // Server down: the message waits greyed in the queue, persisted.
      const state = await connState(writer.page);
      if (state !== 'connected') sawNotConnected.add(state);
      const pending = await writer.page.locator('#pending .msg', { hasText: texts[i] }).count();
      const queued = await writer.page.evaluate((t) => Object.keys(localStorage)
        .filter((k) => k.startsWith('vh.outbox.'))
        .some((k) => JSON.parse(localStorage.getItem(k)).some((item) => item.text === t)), texts[i]);
      if (pending === 1 && queued) sawPendingOffline = true;
    }
    await sleep(150);
  }

  assert.ok(sawPendingOffline, 'a message typed while the server was down was shown pending and kept in localStorage');
  assert.ok(sawNotConnected.size > 0, `the connection state showed the outage (saw ${[...sawNotConnected]})`);

  // Everyone converges: nothing pending, every message once, in typing order.
  const converged = async (page) => {
    await page.waitForFunction((want) => {
      const shown = [...document.querySelectorAll('#msglist .msg .text')].map((e) => e.textContent);
      return want.every((t) => shown.includes(t)) && document.querySelectorAll('#pending .msg').length === 0;
    }, texts, { timeout: 45_000 });
    await waitForConnected(page);
    const shown = (await shownTexts(page)).filter((t) => t.endsWith(run));
    assert.deepEqual(shown, texts, 'every message exactly once, in order');
    const seqs = await page.$$eval('#msglist .msg', (els) => els.map((e) => Number(e.dataset.seq)));
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'rendered in seq order');
    assert.equal(new Set(seqs).size, seqs.length, 'no seq rendered twice');
  };
  await converged(writer.page);
  await converged(neighbour.page);
  assert.equal(await writer.page.evaluate(() => Object.keys(localStorage)
    .filter((k) => k.startsWith('vh.outbox.'))
    .reduce((n, k) => n + JSON.parse(localStorage.getItem(k)).length, 0)), 0, 'the offline queue is empty');

  // A newcomer loads history from the restarted server: the log itself has
  // every message once (a retried send was not stored twice).
  const newcomer = await phone(demoPhone(1, 6));
  await converged(newcomer.page);

  for (const p of phones) {
    assert.deepEqual(p.errors, [], 'no page errors');
    assert.deepEqual(await doubles(p.page), [], 'no message was ever visible twice');
  }
});

async function waitForConnected(page) {
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 45_000 });
}

test('a message queued offline survives closing the page, and a re-sent key never duplicates', async () => {
  const p = await blank();
  // Every send op the pages put on the wire, read from the WebSocket itself.
  const sends = [];
  const tap = (page) => page.on('websocket', (ws) => ws.on('framesent', ({ payload }) => {
    try {
      const op = JSON.parse(String(payload));
      if (op.op === 'send') sends.push(op);
    } catch { /* not JSON */ }
  }));
  tap(p.page);
  await login(p.page, url(), demoPhone(2, 4));
  await waitForChat(p.page);
  const run = Date.now().toString(36);

  // 1. Sent and confirmed; then its queue entry is put back, as if the reply
  //    had been lost in a crash: the resend with the same key is a duplicate.
  const first = `确认过的消息 ${run}`;
  await sendText(p.page, first);
  await p.page.waitForFunction((t) => [...document.querySelectorAll('#msglist .msg .text')].some((e) => e.textContent === t), first);
  await p.page.waitForFunction(() => document.querySelectorAll('#pending .msg').length === 0);
  const used = await p.page.evaluate(() => {
    const acc = JSON.parse(localStorage.getItem('vh.session')).account.id;
    return { acc, counter: Number(localStorage.getItem('vh.keyCounter')) };
  });
  const key = sends.find((op) => op.body.text === first).client_key;
  assert.match(key, new RegExp(`^web-${used.acc}-\\d+-${used.counter}$`), 'client_key is web-<account>-<ms>-<counter>');

  // 2. The server goes away; a message is written; the page is closed.
  await suite.stop();
  const offline = `断网时写的消息 ${run}`;
  await p.page.waitForSelector('#conn:not([data-state="connected"])');
  await sendText(p.page, offline);
  await p.page.waitForSelector('#pending .msg');
  await p.page.evaluate(([key, text, acc]) => {
    const k = `vh.outbox.${acc}`;
    const q = JSON.parse(localStorage.getItem(k));
    q.unshift({ client_key: key, group: q[0].group, text, created: 0 });
    localStorage.setItem(k, JSON.stringify(q));
  }, [key, first, used.acc]);
  await p.page.close();

  // 3. Back online, the resident opens the app again: both queued entries go
  //    out, and each message exists exactly once.
  await suite.start();
  const page = await p.context.newPage();
  page.on('pageerror', (e) => p.errors.push(String(e)));
  tap(page);
  await page.goto(`${url()}/`);
  await waitForChat(page);
  await page.waitForFunction((t) => [...document.querySelectorAll('#msglist .msg .text')].some((e) => e.textContent === t), offline, { timeout: 30_000 });
  await page.waitForFunction(() => document.querySelectorAll('#pending .msg').length === 0);
  const shown = (await shownTexts(page)).filter((t) => t.endsWith(run));
  assert.deepEqual(shown, [first, offline]);
  // The offline message went out with the key it was given when written.
  const offlineKeys = new Set(sends.filter((op) => op.body.text === offline).map((op) => op.client_key));
  assert.equal(offlineKeys.size, 1, 'one client_key per message, however often it is sent');
  assert.equal(sends.filter((op) => op.client_key === key).length, 2, 'the lost-reply message was re-sent once, same key');
  assert.equal(await page.evaluate((acc) => JSON.parse(localStorage.getItem(`vh.outbox.${acc}`)).length, used.acc), 0);
  assert.deepEqual(p.errors, [], 'no page errors');
  assert.deepEqual(await doubles(page), [], 'the re-sent message was never visible twice');
});

test('a send whose reply is lost is re-sent with its key; the message is never on screen twice', async () => {
  const p = await blank();
  const run = Date.now().toString(36);
  const lost = `回执丢失的消息 ${run}`;
  const keys = [];
  let dropped = false;
  // Between page and server: forward everything, except that the `sent`
  // reply for `lost` is swallowed and the connection then cut — as if the
  // network died after the server committed the message but before the
  // reply got through. Without care, the resume would show the replayed
  // message next to its greyed queued copy until the re-send's reply.
  await p.page.routeWebSocket(/\/ws$/, (ws) => {
    const server = ws.connectToServer();
    let lostId = null;
    ws.onMessage((m) => {
      const op = JSON.parse(String(m));
      if (op.op === 'send' && op.body.text === lost) {
        keys.push(op.client_key);
        if (!dropped) lostId = op.id;
      }
      server.send(m);
    });
    server.onMessage((m) => {
      const f = JSON.parse(String(m));
      if (lostId !== null && f.type === 'sent' && f.id === lostId) {
        dropped = true;
        lostId = null;
        ws.close({ code: 4008, reason: 'test: reply lost' });
        server.close();
        return;
      }
      if (f.type === 'sent' && f.duplicate) {
        // A slow network: the duplicate's reply comes well after the resume
        // has replayed the message itself.
        setTimeout(() => ws.send(m), 400);
        return;
      }
      ws.send(m);
    });
    ws.onClose(() => server.close());
    server.onClose(() => ws.close());
  });
  await login(p.page, url(), demoPhone(3, 6));
  await waitForChat(p.page);
  await sendText(p.page, 'before');
  await p.page.waitForFunction(() => !document.querySelector('#pending .msg'));
  await sendText(p.page, lost);
  await p.page.waitForFunction((t) => {
    const shown = [...document.querySelectorAll('#msglist .msg .text')].map((e) => e.textContent);
    return shown.includes(t) && !document.querySelector('#pending .msg');
  }, lost, { timeout: 30_000 });
  await p.page.waitForSelector('#conn[data-state="connected"]');
  assert.ok(dropped, 'the reply was dropped and the connection cut');
  assert.equal(keys.length, 2, 'sent twice');
  assert.equal(keys[0], keys[1], 'with the same client_key');
  assert.equal((await shownTexts(p.page)).filter((t) => t === lost).length, 1);
  assert.deepEqual(await doubles(p.page), [], 'never visible twice, not even for a frame');
  assert.deepEqual(p.errors, [], 'no page errors');
});
