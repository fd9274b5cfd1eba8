// Phone-size screenshots (360×740) of the main views, for a person to look
// at: saved under test-artifacts/ (gitignored). Each view is also checked
// for the one thing that most often breaks on a narrow screen: nothing may
// stick out sideways.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  phoneSuite, login, waitForChat, sendText, demoPhone, ensureArtifacts, postAs,
} from './helpers.js';

const suite = phoneSuite({ before, after, prefix: 'vh-web-shots-' });

/** Like the suite's shot, and also: the channel tabs fit. */
async function shot(page, name) {
  // No horizontal overflow at 360 px: a sideways scroll on a phone is a bug.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `${name}: the page is ${overflow}px wider than the screen`);
  // All five channel tabs fit without scrolling sideways.
  const tabs = await page.evaluate(() => {
    const el = document.querySelector('.tabs');
    return el ? el.scrollWidth - el.clientWidth : 0;
  });
  assert.ok(tabs <= 0, `${name}: the channel tabs overflow by ${tabs}px`);
  await page.screenshot({ path: path.join(ensureArtifacts(), `${name}.png`) });
}

test('screenshots of login, group home and chat at 360×740', async () => {
  const phone = await suite.blank();
  const { page } = phone;

  await page.waitForSelector('#login-submit');
  await shot(page, 'web-01-login');
  await page.click('#large-toggle');
  await shot(page, 'web-01b-login-large');
  await page.click('#large-toggle');

  await page.fill('#phone', demoPhone(1, 3));
  await page.fill('#password', 'wrong');
  await page.click('#login-submit');
  await page.waitForSelector('#login-error:not([hidden])');
  await shot(page, 'web-02-login-error');
  // The browser logs the expected 401 of the wrong password; that is not a bug.
  phone.errors.splice(0, phone.errors.length, ...phone.errors.filter((e) => !/status of 401/.test(e)));

  // A conversation with the secretary and a cadre, so badges and quotes show.
  const s1 = await postAs(page, demoPhone(1, 1), '各位村民好！本周六上午九点在村委会门口开展垃圾分类宣传，欢迎大家参加。');
  await postAs(page, demoPhone(1, 2), '需要帮忙的请在群里说一声，我们安排志愿者上门。', s1);
  await postAs(page, demoPhone(1, 4), '我家老人腿脚不便，能不能上门讲解？', s1);

  await login(page, suite.url(), demoPhone(1, 3));
  await waitForChat(page);
  await page.waitForFunction(() => document.querySelectorAll('#msglist .msg').length >= 3);
  await sendText(page, '好的，我周六去帮忙。');
  await page.waitForFunction(() => [...document.querySelectorAll('#msglist .msg .text')].some((e) => e.textContent === '好的，我周六去帮忙。'));
  await page.waitForSelector('#pending .msg', { state: 'detached' }).catch(() => {});
  assert.ok(await page.locator('.badge-secretary').count() >= 1, 'secretary badge shown');
  assert.ok(await page.locator('.badge-cadre').count() >= 1, 'cadre badge shown');
  assert.ok(await page.locator('#msglist .quote').count() >= 1, 'a reply shows its quote');
  await shot(page, 'web-03-chat');

  // Tap a message to answer it: the reply bar shows what is answered.
  await page.locator('#msglist .msg', { hasText: '垃圾分类' }).first().click();
  await page.fill('#composer-input', '我也报名');
  await shot(page, 'web-04-chat-reply');
  await page.click('#reply-cancel');
  await page.fill('#composer-input', '');

  // Every channel opens its own view.
  for (const channel of ['notices', 'deliberation', 'exchange']) {
    await page.click(`.tab[data-channel="${channel}"]`);
    await page.waitForSelector(`main.gov[data-channel="${channel}"]`);
  }
  await page.click('.tab[data-channel="requests"]');
  await page.waitForSelector('main.gov[data-channel="requests"] #request-new');
  await shot(page, 'web-05-requests');
  await page.click('.tab[data-channel="chat"]');
  await page.waitForSelector('main.chat #composer-input');

  // Large text for elderly users, kept across a reload.
  await page.click('#large-toggle');
  await page.reload();
  await waitForChat(page);
  assert.equal(await page.evaluate(() => document.documentElement.classList.contains('large')), true);
  await page.waitForFunction(() => document.querySelectorAll('#msglist .msg').length >= 4);
  await shot(page, 'web-06-chat-large');
  await page.click('#large-toggle');

  // The resident's home: the group list ("my groups") with logout; then in English.
  await page.click('.back');
  await page.waitForSelector('.group-card');
  await shot(page, 'web-07a-resident-home');
  await page.click('#lang-toggle');
  await page.waitForSelector('text=My groups');
  await shot(page, 'web-07-groups-en');
  await page.click('.group-card');
  await waitForChat(page);
  await shot(page, 'web-08-chat-en');
  await page.click('.back');
  await page.click('#lang-toggle');

  // Offline: the state is plain to see, and what is written waits greyed.
  await page.click('.group-card');
  await waitForChat(page);
  await suite.stop();
  await page.waitForSelector('#conn:not([data-state="connected"])');
  await sendText(page, '网断了也能先写，联网后自动发出。');
  await page.waitForSelector('#pending .msg');
  await page.waitForSelector('#conn[data-state="offline"]', { timeout: 20_000 });
  await shot(page, 'web-09-chat-offline');
  await suite.start();
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 40_000 });
  await page.waitForFunction(() => document.querySelectorAll('#pending .msg').length === 0);
  await page.click('.back');

  // Logout returns to the login screen and forgets the token.
  await page.click('#logout');
  await page.waitForSelector('#login-submit');
  assert.equal(await page.evaluate(() => localStorage.getItem('vh.session')), null);

  assert.deepEqual(phone.errors, [], 'no page errors');
});
