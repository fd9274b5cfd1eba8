// The login token expires while the resident is away: the reconnect's
// `hello` is refused, the app says so on the login screen, and what was
// written meanwhile is kept and sent after logging in again.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { phoneSuite, waitForChat, sendText, shownTexts, demoPhone, sleep } from './helpers.js';

// Tokens live 4 s.
const suite = phoneSuite({ before, after, prefix: 'vh-web-session-', extra: ['--token-ttl', '4'] });

test('an expired token leads back to login, and the queued message survives it', async () => {
  const phone = await suite.phone(demoPhone(3, 5));
  const { page } = phone;

  await suite.stop();
  await page.waitForSelector('#conn:not([data-state="connected"])');
  const text = `过期前写的消息 ${Date.now().toString(36)}`;
  await sendText(page, text);
  await page.waitForSelector('#pending .msg');
  await sleep(4500); // the token is now past its 4 s lifetime

  await suite.start();
  await page.waitForSelector('#login-error:not([hidden])', { timeout: 40_000 });
  assert.equal(await page.textContent('#login-error'), '登录已过期，请重新登录。');
  assert.equal(await page.evaluate(() => localStorage.getItem('vh.session')), null);

  await page.fill('#phone', demoPhone(3, 5));
  await page.fill('#password', 'demo1234');
  await page.click('#login-submit');
  await waitForChat(page);
  await page.waitForFunction((t) => [...document.querySelectorAll('#msglist .msg .text')].some((e) => e.textContent === t), text, { timeout: 20_000 });
  await page.waitForFunction(() => document.querySelectorAll('#pending .msg').length === 0);
  assert.equal((await shownTexts(page)).filter((t) => t === text).length, 1);
  assert.deepEqual(phone.errors, [], 'no page errors');
});
