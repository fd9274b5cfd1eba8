// Deliberation and exchange in real Chromium: a resident starts a topic, a
// neighbour discusses it, both vote, the cadre closes the vote and reports
// the project's progress — each seen live by the resident; an item offered
// by one resident is claimed by another and handed over.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { demoPhone, phoneSuite } from './helpers.js';

const { phone, shot, phones } = phoneSuite({ before, after, prefix: 'vh-web-hall-' });

test('a topic: discussion, votes, the cadre closes it as a project and reports progress, seen live', async () => {
  const a = (await phone(demoPhone(2, 3))).page;
  const b = (await phone(demoPhone(2, 4))).page;
  const cadre = (await phone(demoPhone(2, 2))).page;
  const title = `村口加装路灯 ${Date.now()}`;

  await a.click('.tab[data-channel="deliberation"]');
  await a.click('#topic-new');
  await a.fill('#sheet-title', title);
  await a.fill('#sheet-text', '晚上村口太黑，建议加装路灯');
  await a.selectOption('#sheet-proposes', 'project');
  await a.click('#sheet-submit');
  await a.waitForSelector('#topic-detail[data-state="open"]');
  await a.click('#vote-yes');
  await a.waitForSelector('#my-vote');

  await b.click('.tab[data-channel="deliberation"]');
  await b.locator('#topic-list .topic', { hasText: title }).click();
  await b.fill('#comment-text', '赞成，最好用太阳能灯');
  await b.click('#comment-send');
  await a.waitForFunction(() => document.querySelector('#comment-list')?.textContent.includes('太阳能灯'), null, { timeout: 15_000 });
  await b.click('#vote-yes');
  await b.waitForSelector('#my-vote, #vote-row');

  await cadre.click('.tab[data-channel="deliberation"]');
  await cadre.locator('#topic-list .topic', { hasText: title }).click();
  await cadre.click('#topic-close');
  await a.waitForSelector('#topic-result', { timeout: 15_000 });
  assert.match(await a.textContent('#topic-result'), /立项/);
  assert.match(await a.textContent('#topic-result'), /赞成 [12]/);

  await cadre.fill('#progress-status', '施工中');
  await cadre.fill('#progress-percent', '40');
  await cadre.fill('#progress-note', '已安装8盏');
  await cadre.click('#progress-send');
  await a.waitForFunction(() => document.querySelector('#progress-list')?.textContent.includes('40% · 施工中'), null, { timeout: 15_000 });
  await shot(a, 'web-13-topic-project');
  for (const p of phones) assert.deepEqual(p.errors, [], 'no page errors');
});

test('exchange: an offer is claimed by a neighbour and handed over', async () => {
  const a = (await phone(demoPhone(3, 3))).page;
  const b = (await phone(demoPhone(3, 4))).page;
  const title = `儿童自行车 ${Date.now()}`;
  await a.click('.tab[data-channel="exchange"]');
  await a.click('#item-new');
  await a.selectOption('#sheet-mode', 'offer');
  await a.fill('#sheet-title', title);
  await a.fill('#sheet-text', '九成新，免费送');
  await a.click('#sheet-submit');
  const mine = a.locator('#item-list .item', { hasText: title });
  await mine.waitFor();

  await b.click('.tab[data-channel="exchange"]');
  const theirs = b.locator('#item-list .item', { hasText: title });
  await theirs.locator('button[id^="claim-"]').click();
  await a.locator('#item-list .item[data-status="claimed"]', { hasText: title }).waitFor({ timeout: 15_000 });
  await mine.locator('button[id^="hand-"]').click();
  await b.locator('#item-list .item[data-status="handed"]', { hasText: title }).waitFor({ timeout: 15_000 });
  await shot(b, 'web-14-exchange');
  for (const p of phones) assert.deepEqual(p.errors, [], 'no page errors');
});

test('likes on a chat message: counts and my like, live for a neighbour; undo', async () => {
  const a = (await phone(demoPhone(1, 3))).page;
  const b = (await phone(demoPhone(1, 4))).page;
  const text = `明天一起打扫村口 #${Date.now()}`;
  await a.fill('#composer-input', text);
  await a.click('#send');
  const onB = b.locator('#msglist .msg', { hasText: text }).locator('.like');
  await onB.waitFor({ timeout: 15_000 });
  assert.equal(await onB.textContent(), '赞 0');
  await onB.click();
  await b.waitForFunction((tx) => [...document.querySelectorAll('#msglist .msg')].find((m) => m.textContent.includes(tx))
    ?.querySelector('.like[aria-pressed="true"]'), text, { timeout: 15_000 });
  const onA = a.locator('#msglist .msg', { hasText: text }).locator('.like');
  await a.waitForFunction((tx) => [...document.querySelectorAll('#msglist .msg')].find((m) => m.textContent.includes(tx))
    ?.querySelector('.like')?.textContent === '赞 1', text, { timeout: 15_000 });
  assert.equal(await onA.getAttribute('aria-pressed'), 'false');
  await onB.click();
  await a.waitForFunction((tx) => [...document.querySelectorAll('#msglist .msg')].find((m) => m.textContent.includes(tx))
    ?.querySelector('.like')?.textContent === '赞 0', text, { timeout: 15_000 });
  for (const p of phones) assert.deepEqual(p.errors, [], 'no page errors');
});
