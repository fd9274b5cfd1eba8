// Governance channels in real Chromium: a resident files a request, the
// cadre (another browser) answers and resolves it, the resident sees each
// status change live and rates it; a cadre posts a must-read notice and
// watches the household unread list shrink as residents read it.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { demoPhone, phoneSuite } from './helpers.js';

const { phone, shot } = phoneSuite({ before, after, prefix: 'vh-web-gov-' });

test('a resident files a request; the cadre answers and resolves it; the resident sees it live and rates it', async () => {
  const resident = await phone(demoPhone(1, 3));
  const cadre = await phone(demoPhone(1, 2));
  const text = `村口路灯坏了三盏，晚上看不见路 #${Date.now()}`;

  const r = resident.page;
  await r.click('.tab[data-channel="requests"]');
  await r.waitForSelector('#request-new');
  await r.click('#request-new');
  await r.selectOption('#sheet-category', '道路交通');
  await r.fill('#sheet-text', text);
  await r.click('#sheet-submit');
  await r.waitForSelector('#request-detail[data-status="waiting"]');
  assert.match(await r.textContent('#request-detail'), /道路交通/);
  assert.match(await r.textContent('#request-clock'), /剩 1[45] 小时/);

  const c = cadre.page;
  await c.click('.tab[data-channel="requests"]');
  const item = c.locator('#request-list .request', { hasText: text.slice(0, 20) });
  await item.waitFor();
  assert.match(await c.textContent('.gov-h'), /诉求队列/);
  await shot(c, 'web-10-requests-queue');
  await item.click();
  await c.waitForSelector('#reply-text');
  await c.fill('#reply-text', '已联系电工，明天上午修好。');
  await c.click('#reply-send');

  await r.waitForSelector('#request-detail[data-status="replied"]', { timeout: 15_000 });
  await r.waitForFunction(() => document.querySelector('#request-timeline').textContent.includes('已联系电工'));
  assert.equal(await r.textContent('#request-status'), '已回复');

  await c.click('#resolve');
  await r.waitForSelector('#request-detail[data-status="resolved"]', { timeout: 15_000 });
  assert.equal(await r.textContent('#request-status'), '已办结');
  await r.selectOption('#rate-stars', '5');
  await r.fill('#rate-comment', '很及时');
  await r.click('#rate-send');
  await c.waitForFunction(() => document.querySelector('#request-timeline').textContent.includes('5 星'), null, { timeout: 15_000 });
  await r.waitForSelector('#rate-send', { state: 'detached' });
  await shot(r, 'web-11-request-resident');

  for (const p of [resident, cadre]) assert.deepEqual(p.errors, [], 'no page errors');
});

test('a notice: the cadre sees the household unread list shrink as residents read it', async () => {
  const cadre = await phone(demoPhone(1, 2));
  const readers = [await phone(demoPhone(1, 3)), await phone(demoPhone(1, 5))];
  const title = `停水通知 ${Date.now()}`;

  const c = cadre.page;
  await c.click('.tab[data-channel="notices"]');
  await c.click('#notice-new');
  await c.fill('#sheet-title', title);
  await c.fill('#sheet-text', '明天9点到12点停水，请提前储水。');
  await c.selectOption('#sheet-category', 'announcement');
  await c.check('#sheet-must');
  await c.click('#sheet-submit');
  const mine = c.locator('#notice-list .notice', { hasText: title });
  await mine.waitFor();
  await mine.click();
  await c.waitForSelector('#unread-list');
  const unreadCount = () => c.locator('#unread-list li').count();
  let before = await unreadCount();
  assert.ok(before >= 2, `households unread at first: ${before}`);
  await shot(c, 'web-12-notice-unread');

  for (const [i, p] of readers.entries()) {
    const page = p.page;
    await page.click('.tab[data-channel="notices"]');
    const n = page.locator('#notice-list .notice', { hasText: title });
    await n.waitFor();
    assert.match(await n.getAttribute('class'), /unread/, 'marked unread');
    assert.match(await page.textContent('#notice-list .notice:first-child'), /必读/, 'must-read first');
    await n.click();
    await page.waitForSelector('#notice-detail');
    await c.waitForFunction((k) => document.querySelector('#read-count')?.textContent.includes(`已读 ${k} 人`), i + 1, { timeout: 15_000 });
    const now = await unreadCount();
    assert.ok(now < before || (i > 0 && now <= before), `unread households ${before} → ${now}`);
    before = now;
    await page.click('#gov-back');
    await page.waitForSelector(`#notice-list .notice:not(.unread)`);
  }
  for (const p of [cadre, ...readers]) assert.deepEqual(p.errors, [], 'no page errors');
});
