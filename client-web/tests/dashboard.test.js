// The town and district officers' home: every group in scope with its
// figures (equal to what the `stats` op answers), the TOP-10 needs, an early
// warning arriving live when a resident posts a lexicon keyword, and the
// drill-down into a group.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { demoPhone, phoneSuite, opsAs } from './helpers.js';

const TOWN_OFFICER = '13800009001'; // 陶建华, 月浦镇: 聚源桥村 and 宝月尚园
const DISTRICT_OFFICER = '13800009003'; // 蒋国栋, 宝山区
const KEYWORD = '上访';

const lexiconDir = mkdtempSync(path.join(tmpdir(), 'vh-web-lexicon-'));
const lexicon = path.join(lexiconDir, 'lexicon.txt');
writeFileSync(lexicon, `# test lexicon\n${KEYWORD}\n`);
after(() => rmSync(lexiconDir, { recursive: true, force: true }));

const { phone, shot, phones } = phoneSuite({ before, after, prefix: 'vh-web-dash-', extra: ['--warning-lexicon', lexicon] });

/** The figure a dashboard tile shows. */
const tileText = (page, sel) => page.locator(sel).textContent();

test('the town dashboard: its groups with figures equal to the stats op, a live warning, drill-down', async () => {
  const officer = await phone(TOWN_OFFICER, { wait: 'home' });
  const o = officer.page;
  await o.waitForSelector('#dashboard');
  assert.equal(await o.locator('.dash-group').count(), 2);
  assert.match(await o.textContent('#dashboard'), /聚源桥村/);
  assert.match(await o.textContent('#dashboard'), /宝月尚园/);
  assert.doesNotMatch(await o.textContent('#dashboard'), /南周村/, 'a group of another town is not shown');

  // What the server says, asked separately, matches every tile and card.
  const { welcome } = await opsAs(o, TOWN_OFFICER, []);
  const town = welcome.offices.find((x) => x.town != null).town;
  const groups = welcome.groups.map((g) => g.id);
  const ask = async () => (await opsAs(o, TOWN_OFFICER, [{ op: 'stats', scope: `town:${town}` },
    ...groups.map((g) => ({ op: 'stats', scope: `group:${g}` })), { op: 'needs', scope: `town:${town}` }])).replies;
  const replies = await ask();
  const scope = replies[0].stats;
  for (const key of ['interactions', 'participants', 'notices', 'requests', 'requests_answered', 'likes']) {
    await o.waitForFunction(([k, v]) => document.querySelector(`#dash-summary .fig[data-key="${k}"] .fig-n`)?.textContent === v,
      [key, String(scope[key])], { timeout: 15_000 });
  }
  for (const [i, g] of groups.entries()) {
    const st = replies[1 + i].stats;
    for (const key of ['interactions', 'participants', 'requests']) {
      await o.waitForFunction(([gr, k, v]) => document.querySelector(`.dash-group[data-group="${gr}"] .gfig[data-key="${k}"] b`)?.textContent === v,
        [g, key, String(st[key])], { timeout: 15_000 });
    }
  }
  const needs = replies.at(-1).needs;
  assert.equal(await o.locator('#needs .need').count(), Math.min(10, needs.length));
  if (needs.length) assert.equal(await o.getAttribute('#needs .need:first-child', 'data-term'), needs[0].term);
  assert.equal(await o.locator('#warnings .warn').count(), 0);
  // The scope's totals are watched (watch_stats), not polled.
  await o.waitForFunction(() => document.querySelector('#dash-live')?.textContent === '实时', null, { timeout: 15_000 });

  // A resident comes online (presence_update), then posts a keyword: the
  // warning arrives live, and the figures follow.
  const group = welcome.groups.find((g) => g.name === '聚源桥村').id;
  const online = (n) => o.waitForFunction(([gr, k]) => document.querySelector(`.dash-group[data-group="${gr}"] .online`)?.textContent.includes(`${k} 人在线`),
    [group, n], { timeout: 15_000 });
  await online(0);
  const resident = await phone(demoPhone(1, 3));
  const r = resident.page;
  await online(1);
  const scopeBefore = Number(await tileText(o, '#dash-summary .fig[data-key="interactions"] .fig-n'));
  const before = Number(await tileText(o, `.dash-group[data-group="${group}"] .gfig[data-key="interactions"] b`));
  const text = `村委不管，我们要去${KEYWORD} #${Date.now()}`;
  await r.fill('#composer-input', text);
  await r.click('#send');
  const warning = o.locator(`#warnings .warn[data-group="${group}"]`);
  await warning.waitFor({ timeout: 15_000 });
  assert.match(await warning.textContent(), /聚源桥村/);
  assert.match(await warning.textContent(), new RegExp(KEYWORD));
  await o.waitForFunction(([gr, n]) => Number(document.querySelector(`.dash-group[data-group="${gr}"] .gfig[data-key="interactions"] b`)?.textContent) > n,
    [group, before], { timeout: 15_000 });
  await o.waitForFunction((n) => Number(document.querySelector('#dash-summary .fig[data-key="interactions"] .fig-n')?.textContent) > n,
    scopeBefore, { timeout: 15_000 });
  await o.evaluate(() => document.querySelector('#toast').classList.remove('show'));
  await shot(o, 'web-20-town-dashboard');

  // Warnings are stored: after a reload the list still has it.
  await o.reload();
  await o.waitForSelector(`#warnings .warn[data-group="${group}"]`, { timeout: 15_000 });

  // Drill-down from the warning into the group: read-only chat with the post.
  await warning.locator('.warn-open').click();
  await o.waitForSelector('#readonly-note');
  await o.waitForFunction((tx) => [...document.querySelectorAll('#msglist .msg .text')].some((e) => e.textContent === tx), text, { timeout: 15_000 });
  assert.equal(await o.locator('#composer-input').count(), 0);
  await o.click('.tab[data-channel="requests"]');
  await o.waitForSelector('main.gov[data-channel="requests"] .gov-h');
  await o.click('.back');
  await o.waitForSelector('#dashboard');
  await o.locator(`.dash-group[data-group="${group}"]`).click();
  await o.waitForSelector('#readonly-note');
  for (const p of phones) assert.deepEqual(p.errors, [], 'no page errors');
});

test('the district dashboard: every group of the district, by town', async () => {
  // A few requests and a topic in 南周村, so that the needs have terms.
  const resident = await phone(demoPhone(3, 3));
  const filed = ['村里路灯坏了好几盏，晚上走路看不清', '路灯不亮，老人晚上出门不方便', '垃圾桶满了没人清运，路灯也坏了'];
  const { replies: posted } = await opsAs(resident.page, demoPhone(3, 3), [
    ...filed.map((text, i) => ({ op: 'post', group: 30, client_key: `needs-${i}-${Date.now()}`,
      event: { kind: 'request', body: { category: i === 2 ? '环境卫生' : '道路交通', text } } })),
    { op: 'post', group: 30, event: { kind: 'topic', body: { title: '更换村里的路灯', text: '建议统一换成太阳能路灯', vote_until: Date.now() + 86400000 } } },
  ]);
  for (const r of posted) assert.equal(r.type, 'sent', JSON.stringify(r));

  const officer = await phone(DISTRICT_OFFICER, { wait: 'home' });
  const o = officer.page;
  await o.waitForSelector('#dashboard');
  assert.equal(await o.locator('.dash-group').count(), 3);
  await o.waitForSelector('#needs .need[data-term="路灯"]', { timeout: 15_000 });
  assert.equal(await o.locator('.dash-town').count(), 2);
  const { welcome, replies } = await opsAs(o, DISTRICT_OFFICER, [{ op: 'stats', scope: 'district:1' }]);
  const district = welcome.offices.find((x) => x.district != null).district;
  const st = district === 1 ? replies[0].stats : (await opsAs(o, DISTRICT_OFFICER, [{ op: 'stats', scope: `district:${district}` }])).replies[0].stats;
  await o.waitForFunction((v) => document.querySelector('#dash-summary .fig[data-key="participants"] .fig-n')?.textContent === v,
    String(st.participants), { timeout: 15_000 });
  await o.waitForFunction(() => document.querySelectorAll('.dash-group .gfig b').length === 15
    && [...document.querySelectorAll('.dash-group .gfig b')].every((b) => b.textContent !== '–'), null, { timeout: 15_000 });
  await shot(o, 'web-21-district-dashboard');
  await shot(o, 'web-21b-district-dashboard-full', { fullPage: true });
  await o.click('#large-toggle');
  await o.waitForFunction(() => document.querySelectorAll('.dash-group .gfig b').length === 15
    && [...document.querySelectorAll('#dash-summary .fig-n')].every((b) => b.textContent !== '–' || b.closest('[data-key$="_ms"]')), null, { timeout: 15_000 });
  await o.evaluate(() => window.scrollTo(0, 0));
  await shot(o, 'web-21c-district-dashboard-large', { fullPage: true });
  await o.click('#large-toggle');
  for (const p of phones) assert.deepEqual(p.errors, [], 'no page errors');
});
