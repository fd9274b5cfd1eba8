// What cadres and officers do beyond the daily channels: the hall settings
// (who proposes topics, votes per household or person) taking effect live;
// a request escalated by the cadre to the town, answered there and sent on
// to the district, which resolves it; disclosures amended and the chain
// verified; likes on a notice counted live.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { demoPhone, phoneSuite, opsAs } from './helpers.js';

const { phone, shot, phones } = phoneSuite({ before, after, prefix: 'vh-web-cadre-' });

const TOWN_OFFICER = '13800009001';
const DISTRICT_OFFICER = '13800009003';

test('hall settings: only cadres propose, one vote per person — seen live by a resident', async () => {
  const secretary = (await phone(demoPhone(2, 1))).page;
  const resident = (await phone(demoPhone(2, 3))).page;
  await resident.click('.tab[data-channel="deliberation"]');
  await resident.waitForSelector('#topic-new');
  assert.equal(await resident.getAttribute('#hall-settings', 'data-proposers'), 'members');
  assert.equal(await resident.locator('#hall-settings-edit').count(), 0, 'only the secretary sets the hall');

  await secretary.click('.tab[data-channel="deliberation"]');
  await secretary.click('#hall-settings-edit');
  await secretary.selectOption('#sheet-proposers', 'cadres');
  await secretary.selectOption('#sheet-voting', 'person');
  await secretary.click('#sheet-submit');
  await resident.waitForSelector('#hall-settings[data-proposers="cadres"][data-voting="person"]', { timeout: 15_000 });
  assert.equal(await resident.locator('#topic-new').count(), 0, 'a resident can no longer propose');
  assert.match(await resident.textContent('#hall-settings'), /仅干部发起议题 · 每人一票/);
  await shot(resident, 'web-22-hall-settings');

  // The server enforces it too; and a cadre's topic now counts votes per person.
  const { replies } = await opsAs(resident, demoPhone(2, 3), [{ op: 'post', group: 17, event: { kind: 'topic',
    body: { title: '试一试', text: '居民发起', vote_until: Date.now() + 86400000 } } }]);
  assert.equal(replies[0].code, 'forbidden');
  const title = `楼道加装扶手 ${Date.now()}`;
  await secretary.click('#topic-new');
  await secretary.fill('#sheet-title', title);
  await secretary.fill('#sheet-text', '方便老人上下楼');
  await secretary.click('#sheet-submit');
  await secretary.waitForSelector('#topic-detail');
  await resident.locator('#topic-list .topic', { hasText: title }).click();
  assert.match(await resident.textContent('#topic-voting'), /每人一票/);
  for (const p of phones) assert.deepEqual(p.errors, [], 'no page errors');
});

test('escalation: cadre → town (answers, sends on) → district (resolves); the resident sees each step', async () => {
  const resident = (await phone(demoPhone(1, 4))).page;
  const cadre = (await phone(demoPhone(1, 2))).page;
  const text = `河道有人偷排污水，村里管不了 #${Date.now()}`;
  const { replies } = await opsAs(resident, demoPhone(1, 4), [{ op: 'post', group: 4, client_key: `esc-test-${Date.now()}`,
    event: { kind: 'request', body: { category: '环境卫生', text } } }]);
  const seq = replies[0].seq;
  assert.ok(seq, JSON.stringify(replies[0]));
  await resident.click('.tab[data-channel="requests"]');
  await resident.locator(`#request-list .request[data-seq="${seq}"]`).click();
  await resident.waitForSelector('#request-detail');

  await cadre.click('.tab[data-channel="requests"]');
  await cadre.locator(`#request-list .request[data-seq="${seq}"]`).click();
  await cadre.click('#escalate[data-to="town"]');
  await cadre.fill('#sheet-reason', '涉及上游企业，需镇里协调');
  await cadre.click('#sheet-submit');
  await cadre.waitForSelector('#request-detail[data-escalated="town"]', { timeout: 15_000 });
  assert.equal(await cadre.locator('#escalate').count(), 0, 'escalated once by the cadre');
  await resident.waitForSelector('#request-detail[data-escalated="town"]', { timeout: 15_000 });

  // The town officer: the request waits on the dashboard; drilling into the
  // group instead, it is first in the queue.
  const town = (await phone(TOWN_OFFICER, { wait: 'home' })).page;
  await town.waitForSelector(`#escalated .gov-item[data-group="4"][data-seq="${seq}"]`, { timeout: 15_000 });
  await town.evaluate(() => window.scrollTo(0, document.querySelector('#dash-escalated').getBoundingClientRect().top + window.scrollY - 70));
  await shot(town, 'web-25-town-dashboard-escalated');
  await town.locator('.dash-group[data-group="4"]').click();
  await town.click('.tab[data-channel="requests"]');
  await town.waitForSelector(`#request-list .request[data-seq="${seq}"]`);
  assert.equal(await town.getAttribute('#request-list .request:first-child', 'data-seq'), String(seq));
  await town.click('.back');
  await town.locator(`#escalated .gov-item[data-seq="${seq}"]`).click();
  await town.waitForSelector(`#request-detail[data-seq="${seq}"][data-escalated="town"]`);
  await town.fill('#reply-text', '镇环保办已派人现场查看。');
  await town.click('#reply-send');
  await resident.waitForSelector('#request-detail[data-status="replied"]', { timeout: 15_000 });
  await resident.waitForFunction(() => document.querySelector('#request-timeline').textContent.includes('镇环保办'));
  await town.click('#escalate[data-to="district"]');
  await town.fill('#sheet-reason', '跨镇河道，需区里统筹');
  await town.click('#sheet-submit');
  await town.waitForSelector('#request-detail[data-escalated="district"]', { timeout: 15_000 });
  await shot(town, 'web-23-request-escalated');

  // The district officer resolves it.
  const district = (await phone(DISTRICT_OFFICER, { wait: 'home' })).page;
  await district.locator(`#escalated .gov-item[data-group="4"][data-seq="${seq}"]`).click({ timeout: 15_000 });
  await district.waitForSelector('#request-detail[data-escalated="district"]');
  assert.equal(await district.locator('#escalate').count(), 0, 'nowhere further to escalate');
  await district.click('#resolve');
  await resident.waitForSelector('#request-detail[data-status="resolved"]', { timeout: 15_000 });
  await resident.waitForSelector('#rate-send');
  for (const p of phones) assert.deepEqual(p.errors, [], 'no page errors');
});

test('disclosures: amend one with a later one, verify the chain; likes on a notice, live', async () => {
  const cadre = (await phone(demoPhone(3, 2))).page;
  const resident = (await phone(demoPhone(3, 4))).page;
  const title = `2026年第三季度财务公开 ${Date.now()}`;
  await cadre.click('.tab[data-channel="notices"]');
  await cadre.click('#notice-new');
  await cadre.fill('#sheet-title', title);
  await cadre.fill('#sheet-text', '收入12万元，支出8万元');
  await cadre.selectOption('#sheet-category', 'affairs');
  await cadre.click('#sheet-submit');
  const first = cadre.locator('#notice-list .notice', { hasText: title });
  await first.waitFor();
  const seq = await first.getAttribute('data-seq');
  await first.click();
  await cadre.waitForSelector('#notice-detail .hash');
  await cadre.click('#notice-amend');
  assert.equal(await cadre.inputValue('#sheet-category'), 'affairs');
  await cadre.fill('#sheet-text', '收入12万元，支出8.5万元（更正支出）');
  await cadre.click('#sheet-submit');
  await cadre.waitForSelector('#amends-note', { timeout: 15_000 });
  assert.match(await cadre.textContent('#amends-note'), new RegExp(title));
  await cadre.click('#amends-note a');
  await cadre.waitForSelector('#amended-note');

  await resident.click('.tab[data-channel="notices"]');
  await resident.click('#verify-disclosures');
  await resident.waitForSelector('#verify-result[data-ok="true"]', { timeout: 15_000 });
  assert.match(await resident.textContent('#verify-result'), /已核验 \d+ 条，链条完整/);

  const like = resident.locator(`#notice-list .notice[data-seq="${seq}"] .like`);
  await resident.waitForFunction((s) => document.querySelector(`#notice-list .notice[data-seq="${s}"] .like`)?.textContent === '赞 0', seq);
  await like.click();
  await cadre.click('#gov-back');
  await cadre.waitForFunction((s) => document.querySelector(`#notice-list .notice[data-seq="${s}"] .like`)?.textContent === '赞 1', seq, { timeout: 15_000 });
  await resident.waitForSelector(`#notice-list .notice[data-seq="${seq}"] .like[aria-pressed="true"]`);
  await shot(resident, 'web-24-disclosures-verified');
  for (const p of phones) assert.deepEqual(p.errors, [], 'no page errors');
});
