// Two residents of one village chat; a resident of another village sees
// none of it. Real server binary, real Chromium, one browser per person.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  phoneSuite, login, waitForChat, sendText, shownTexts, demoPhone, sleep, postAs, doubles,
} from './helpers.js';

const { phone, blank, close, url } = phoneSuite({ before, after, prefix: 'vh-web-chat-' });

function hasText(page, text, selector = '#msglist .msg .text') {
  return page.waitForFunction(
    ([sel, t]) => [...document.querySelectorAll(sel)].some((e) => e.textContent === t),
    [selector, text],
    { timeout: 15_000 },
  );
}

test('a wrong password gets a friendly error and no token', async () => {
  const p = await blank();
  await login(p.page, url(), demoPhone(1, 3), 'wrong-password');
  await p.page.waitForSelector('#login-error:not([hidden])');
  assert.equal(await p.page.textContent('#login-error'), '手机号或密码不对，请再试一次。');
  assert.equal(await p.page.evaluate(() => localStorage.getItem('vh.session')), null);
  await close(p);
});

test('two residents of one village see each other; a resident of another village does not', async () => {
  const alice = await phone(demoPhone(1, 3)); // member of 聚源桥村
  const bob = await phone(demoPhone(1, 4)); // another member of 聚源桥村
  const carol = await phone(demoPhone(3, 3)); // member of 南周村

  assert.equal(await alice.page.textContent('#group-title'), '聚源桥村');
  assert.equal(await bob.page.textContent('#group-title'), '聚源桥村');
  assert.equal(await carol.page.textContent('#group-title'), '南周村');
  // The token is kept for the next visit.
  assert.ok(await alice.page.evaluate(() => JSON.parse(localStorage.getItem('vh.session')).token));

  const hello = `今晚七点在村委会议室开会，请大家准时参加。#${Date.now()}`;
  await sendText(alice.page, hello);
  await hasText(bob.page, hello);
  await hasText(alice.page, hello);
  // The sender's own copy is confirmed (not left greyed) and shown once.
  await alice.page.waitForSelector('#pending .msg', { state: 'detached', timeout: 15_000 }).catch(() => {});
  assert.equal(await alice.page.locator('#pending .msg').count(), 0);
  assert.equal((await shownTexts(alice.page)).filter((t) => t === hello).length, 1);
  assert.equal((await shownTexts(bob.page)).filter((t) => t === hello).length, 1);

  // Bob answers Alice: tap her message, the reply bar quotes it, send.
  await bob.page.locator('#msglist .msg', { hasText: hello }).click();
  await bob.page.waitForSelector('#replybar:not([hidden])');
  assert.match(await bob.page.textContent('#replybar'), /回复/);
  const answer = `收到，准时到。#${Date.now()}`;
  await sendText(bob.page, answer);
  await hasText(alice.page, answer);
  const quoted = alice.page.locator('#msglist .msg', { hasText: answer }).locator('.quote');
  assert.match(await quoted.textContent(), /今晚七点在村委会议室开会/);
  assert.equal(await bob.page.isHidden('#replybar'), true);

  // Carol's village is live too (her own message comes back), but nothing of
  // 聚源桥村 ever reaches her, and nothing of hers reaches them.
  const hers = `南周村的消息 #${Date.now()}`;
  await sendText(carol.page, hers);
  await hasText(carol.page, hers);
  await sleep(1000);
  const carolSees = await shownTexts(carol.page);
  assert.ok(!carolSees.includes(hello), 'a resident of another village saw the message');
  assert.ok(!carolSees.includes(answer), 'a resident of another village saw the reply');
  assert.ok(!(await shownTexts(alice.page)).includes(hers));
  assert.ok(!(await shownTexts(bob.page)).includes(hers));

  for (const p of [alice, bob, carol]) {
    assert.deepEqual(p.errors, [], 'no page errors');
    assert.deepEqual(await doubles(p.page), [], 'no message was ever visible twice');
  }
});

test('history pages upward: older messages load above, each once, until there are no more', async () => {
  // 宝月尚园: 120 messages from its secretary, then a resident opens the chat.
  const p = await blank();
  const run = Date.now().toString(36);
  const texts = Array.from({ length: 120 }, (_, i) => `第${i + 1}条通知 ${run}`);
  await postAs(p.page, demoPhone(2, 1), texts);
  await login(p.page, url(), demoPhone(2, 3));
  await waitForChat(p.page);
  const ours = async () => (await shownTexts(p.page)).filter((t) => t.endsWith(run));
  await p.page.waitForFunction((t) => [...document.querySelectorAll('#msglist .msg .text')].some((e) => e.textContent === t), texts.at(-1));
  const first = await ours();
  assert.ok(first.length < texts.length, 'the first page is not everything');
  assert.deepEqual(first, texts.slice(-first.length), 'the newest page, in order');
  // Tap "show older" until it says there is nothing older.
  const settled = () => p.page.waitForSelector('#older:is([data-state="more"], [data-state="end"])');
  await settled();
  // Scrolling to the top loads the previous page by itself...
  const n0 = (await shownTexts(p.page)).length;
  await p.page.evaluate(() => { document.querySelector('#messages').scrollTop = 0; });
  await p.page.waitForFunction((n) => document.querySelectorAll('#msglist .msg').length > n, n0);
  await settled();
  // ...and the button does the same for those who do not scroll.
  for (let i = 0; i < 10 && (await p.page.getAttribute('#older', 'data-state')) === 'more'; i++) {
    const before = (await shownTexts(p.page)).length;
    // Clicked in place: scrolling the button into view would itself load the
    // next page (reaching the top loads more), racing the click.
    await p.page.evaluate(() => document.querySelector('#load-older')?.click());
    await p.page.waitForFunction((n) => document.querySelectorAll('#msglist .msg').length > n, before);
    await settled();
  }
  assert.equal(await p.page.getAttribute('#older', 'data-state'), 'end');
  assert.deepEqual(await ours(), texts, 'every message once, in order');
  const seqs = await p.page.$$eval('#msglist .msg', (els) => els.map((e) => Number(e.dataset.seq)));
  assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1), 'seq 1.. without gap or repeat');
  assert.match(await p.page.textContent('#older'), /没有更早的消息了/);
  assert.deepEqual(p.errors, [], 'no page errors');
});

test('a text over the limit is refused before sending, with a friendly message', async () => {
  const p = await phone(demoPhone(3, 4));
  await p.page.fill('#composer-input', '长'.repeat(2001));
  await p.page.click('#send');
  await p.page.waitForSelector('#toast.show');
  assert.match(await p.page.textContent('#toast'), /消息太长了/);
  assert.equal(await p.page.locator('#pending .msg').count(), 0);
  assert.equal((await p.page.inputValue('#composer-input')).length, 2001, 'the text is kept to be shortened');
  assert.deepEqual(p.errors, [], 'no page errors');
});

test('pictures: a server without POST /api/images takes the attach button away, plainly', async () => {
  const p = await phone(demoPhone(2, 6));
  await p.page.waitForSelector('#attach');
  // An older server: this one has the endpoint (pictures.test.js), so the
  // upload is answered 404 here, as an older server would.
  await p.page.route('**/api/images', (route) => route.fulfill({
    status: 404, contentType: 'application/json', body: '{"code":"not_found","message":"no route"}',
  }));
  // A 1×1 PNG.
  const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');
  await p.page.setInputFiles('#attach input[type="file"]', { name: 'dot.png', mimeType: 'image/png', buffer: png });
  await p.page.waitForSelector('#toast.show');
  assert.match(await p.page.textContent('#toast'), /暂不支持图片/);
  await p.page.waitForSelector('#attach', { state: 'detached' });
  assert.equal(await p.page.isHidden('#attachments'), true, 'nothing attached');
  // Sending text still works.
  const text = `没有图片也能发 #${Date.now()}`;
  await sendText(p.page, text);
  await hasText(p.page, text);
  // The browser logs the expected 404 of the upload; that is not a bug.
  p.errors.splice(0, p.errors.length, ...p.errors.filter((e) => !/status of 404/.test(e)));
  assert.deepEqual(p.errors, [], 'no page errors');
});
