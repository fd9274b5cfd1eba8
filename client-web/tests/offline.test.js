// The phone loses its network (browser offline emulation) while the village
// keeps talking: the state says offline, and when the network is back the
// client resumes from its last seq — every missed message once, in order.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { phoneSuite, sendText, shownTexts, demoPhone, postAs, doubles } from './helpers.js';

const { phone, blank } = phoneSuite({ before, after, prefix: 'vh-web-offline-' });

test('offline for a while, then every missed message once, in order', async () => {
  const away = await phone(demoPhone(1, 6));
  const poster = await blank();

  const run = Date.now().toString(36);
  await away.context.setOffline(true);
  await away.page.waitForSelector('#conn[data-state="offline"]', { timeout: 20_000 });
  const mine = `没网时写的 ${run}`;
  await sendText(away.page, mine);
  await away.page.waitForSelector('#pending .msg');

  const texts = Array.from({ length: 150 }, (_, i) => `错过的第${i + 1}条 ${run}`);
  await postAs(poster.page, demoPhone(1, 2), texts);

  await away.context.setOffline(false);
  await away.page.waitForSelector('#conn[data-state="connected"]', { timeout: 30_000 });
  await away.page.waitForFunction(([last, m]) => {
    const shown = [...document.querySelectorAll('#msglist .msg .text')].map((e) => e.textContent);
    return shown.includes(last) && shown.includes(m) && !document.querySelector('#pending .msg');
  }, [texts.at(-1), mine], { timeout: 30_000 });
  const shown = (await shownTexts(away.page)).filter((t) => t.endsWith(run));
  assert.deepEqual(shown.filter((t) => t !== mine), texts, 'every missed message once, in order');
  assert.equal(shown.filter((t) => t === mine).length, 1);
  const seqs = await away.page.$$eval('#msglist .msg', (els) => els.map((e) => Number(e.dataset.seq)));
  for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1] + 1, 'contiguous seqs on screen');
  assert.deepEqual(away.errors, [], 'no page errors');
  assert.deepEqual(await doubles(away.page), [], 'no message was ever visible twice');
});
