// Issue 3 in the browser: registering with a real name, approval and
// rejection seen live, hidden messages (placeholder for members, text for
// cadres), badges, revoked tokens, officers' read-only drill-down.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  phoneSuite, login, waitForChat, demoPhone, postAs, ensureArtifacts, sleep,
} from './helpers.js';

const { phone, blank, url } = phoneSuite({ before, after, prefix: 'vh-web-membership-' });

/** The id of the (first) group in the page's welcome. */
async function firstGroup(page) {
  await page.waitForFunction(() => window.villagehub && window.villagehub.app.welcomed && window.villagehub.app.groups.size > 0);
  return page.evaluate(() => [...window.villagehub.app.groups.keys()][0]);
}

async function register(page, group, { name, phone, password, address, migrant }) {
  await page.goto(`${url()}/#/register/${group}`);
  await page.waitForSelector('#reg-name');
  assert.equal(await page.inputValue('#reg-group'), String(group), 'the invite link fills the group in');
  await page.fill('#reg-name', name);
  await page.fill('#reg-phone', phone);
  await page.fill('#reg-password', password);
  if (migrant) await page.check('#reg-kind-migrant');
  else await page.fill('#reg-address', address);
  await page.click('#register-submit');
}

test('register → a cadre approves in another browser → the applicant sees the group live; a rejection shows its reason', async () => {
  const cadre = await phone(demoPhone(1, 2)); // 张丽华, cadre of 聚源桥村
  const applicant = await blank();
  const other = await blank();

  const group = await firstGroup(cadre.page);
  await cadre.page.goto(`${url()}/#/g/${group}/manage`);
  await cadre.page.waitForSelector('#applications[data-state="ready"]');
  // The demo's pending applicant is already waiting.
  await cadre.page.waitForSelector('#applications .app-card >> text=彭玉兰');

  const name = `孔繁星${Date.now() % 1000}`;
  await register(applicant.page, group, { name, phone: '13912340001', password: 'kfx-2019-bs', address: '聚源桥村1组12号' });
  await applicant.page.waitForSelector('#application[data-status="pending"]');
  assert.match(await applicant.page.textContent('#application'), /审核中/);
  assert.match(await applicant.page.textContent('#application'), /聚源桥村1组12号/);

  // The cadre sees the application arrive live, without reloading.
  const card = cadre.page.locator('#applications .app-card', { hasText: name });
  await card.waitFor({ timeout: 15_000 });
  await cadre.page.evaluate(() => document.querySelector('#toast').classList.remove('show'));
  await sleep(400);
  await cadre.page.screenshot({ path: path.join(ensureArtifacts(), 'approvals-queue.png') });
  await card.locator('[data-action="approve"]').click();
  await card.waitFor({ state: 'detached', timeout: 15_000 });

  // The applicant is taken into the group's chat, live.
  await waitForChat(applicant.page);
  assert.equal(await applicant.page.textContent('#group-title'), '聚源桥村');
  await applicant.page.waitForSelector('#msglist .msg .text');

  // Rejection: a migrant resident applies; the reason reaches them live.
  await register(other.page, group, { name: '邓大川', phone: '13912340009', password: 'ddc-2019-bs', migrant: true });
  await other.page.waitForSelector('#application[data-status="pending"]');
  const card2 = cadre.page.locator('#applications .app-card', { hasText: '邓大川' });
  await card2.waitFor({ timeout: 15_000 });
  assert.match(await card2.textContent(), /外来人口/);
  await card2.locator('[data-action="reject"]').click();
  await cadre.page.fill('#sheet-reason', '手机号与身份证登记不符');
  await cadre.page.click('#sheet-submit');
  await other.page.waitForSelector('#application[data-status="rejected"]', { timeout: 15_000 });
  assert.match(await other.page.textContent('#application-reason'), /手机号与身份证登记不符/);

  for (const p of [cadre, applicant, other]) assert.deepEqual(p.errors, [], 'no page errors');
});

test('a cadre hides a message: the member sees the placeholder, the cadre the text — live and after a reload', async () => {
  const member = await phone(demoPhone(1, 3)); // 王秀英
  const cadre = await phone(demoPhone(1, 2)); // 张丽华

  const ad = `低价出售保健品，加微信 ${Date.now()}`;
  const ok = `志愿者今天下午在村口量血压 ${Date.now()}`;
  await postAs(member.page, demoPhone(1, 8), ad); // 邓小川, migrant resident
  await postAs(member.page, demoPhone(1, 7), ok); // 马红梅, volunteer, Party member
  for (const p of [member, cadre]) {
    await p.page.waitForFunction((t) => [...document.querySelectorAll('#msglist .msg .text')].some((e) => e.textContent === t), ok);
  }
  const adMsg = (page) => page.locator('#msglist .msg', { hasText: '邓小川' }).last();
  assert.match(await adMsg(member.page).locator('.meta').textContent(), /外来人口/);
  assert.match(await member.page.locator('#msglist .msg', { hasText: ok }).locator('.meta').textContent(), /党员/);
  // Residents get no moderation menu; cadres do.
  assert.equal(await member.page.locator('#msglist .msg-more').count(), 0);

  await adMsg(cadre.page).locator('.msg-more').click();
  await cadre.page.click('#sheet [data-action="hide"]');
  await cadre.page.fill('#sheet-reason', '广告');
  await cadre.page.click('#sheet-submit');

  const placeholder = '此消息已被管理员隐藏：广告';
  await member.page.waitForFunction((t) => [...document.querySelectorAll('#msglist .hidden-note')].some((e) => e.textContent === t), placeholder, { timeout: 15_000 });
  assert.ok(!(await member.page.textContent('#msglist')).includes(ad), 'the member no longer sees the text');
  await cadre.page.waitForSelector('#msglist .msg.is-hidden .hidden-mark');
  assert.equal(await cadre.page.locator('#msglist .msg.is-hidden .text').last().textContent(), ad);

  const dir = ensureArtifacts();
  await cadre.page.evaluate(() => document.querySelector('#toast').classList.remove('show'));
  await sleep(400);
  await member.page.screenshot({ path: path.join(dir, 'hidden-message-member.png') });
  await cadre.page.screenshot({ path: path.join(dir, 'hidden-message-cadre.png') });

  // From history (a `hidden` event): the same for both after a reload.
  await member.page.reload();
  await waitForChat(member.page);
  await member.page.waitForFunction((t) => [...document.querySelectorAll('#msglist .hidden-note')].some((e) => e.textContent === t), placeholder);
  assert.ok(!(await member.page.textContent('#msglist')).includes(ad));
  await cadre.page.reload();
  await waitForChat(cadre.page);
  await cadre.page.waitForFunction((t) => [...document.querySelectorAll('#msglist .msg.is-hidden .text')].some((e) => e.textContent === t), ad);

  // The secretary reads it in the audit log.
  const secretary = await phone(demoPhone(1, 1));
  const group = await firstGroup(secretary.page);
  await secretary.page.goto(`${url()}/#/g/${group}/manage`);
  await secretary.page.waitForSelector('#audit[data-state="ready"] .audit-entry[data-action="hide"]');
  assert.match(await secretary.page.textContent('#audit'), /广告/);
  await secretary.page.screenshot({ path: path.join(dir, 'audit-log.png') });

  for (const p of [member, cadre, secretary]) assert.deepEqual(p.errors, [], 'no page errors');
});

test('logging out revokes the other tab too (close 4003 → login with a message); officers read any group of their town', async () => {
  const a = await phone(demoPhone(2, 4));
  const b = await phone(demoPhone(2, 4));
  await b.page.click('a.back');
  await b.page.click('#logout');
  await a.page.waitForSelector('#login-error:not([hidden])', { timeout: 15_000 });
  assert.equal(await a.page.textContent('#login-error'), '已退出登录或密码已修改，请重新登录。');

  const officer = await phone('13800009001', { wait: 'home' }); // 陶建华, town officer of 月浦镇
  await officer.page.waitForSelector('.group-card');
  assert.equal(await officer.page.locator('.group-card').count(), 2);
  assert.match(await officer.page.textContent('.bar-title'), /辖区/);
  await officer.page.locator('.group-card').nth(1).click();
  await officer.page.waitForSelector('#readonly-note');
  await officer.page.waitForSelector('#msglist .msg .text');
  assert.equal(await officer.page.locator('#composer-input').count(), 0);
  await officer.page.click('#manage-link');
  await officer.page.waitForSelector('#audit[data-state="ready"]');
  for (const p of [a, officer]) assert.deepEqual(p.errors, [], 'no page errors');
});

/** Screenshot at 360×740, after checking that nothing scrolls sideways. */
async function shot(page, name) {
  await page.evaluate(() => document.querySelector('#toast').classList.remove('show'));
  await sleep(400);
  await page.screenshot({ path: path.join(ensureArtifacts(), `${name}.png`) });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `${name}: the page is ${overflow}px wider than the screen`);
  const bar = await page.evaluate(() => {
    const el = document.querySelector('.bar');
    return el ? el.scrollWidth - el.clientWidth : 0;
  });
  assert.ok(bar <= 0, `${name}: the header overflows by ${bar}px`);
}

test('screens of issue 3 fit a 360 px phone, in Chinese and in English with large text', async () => {
  const p = await blank();
  await p.page.goto(`${url()}/#/register/4`);
  await p.page.waitForSelector('#reg-name');
  await shot(p.page, 'register');
  await login(p.page, url(), demoPhone(1, 10)); // 曹伟, rejected by the demo
  await p.page.waitForSelector('#application[data-status="rejected"]');
  await shot(p.page, 'application-rejected');
  await p.page.click('#logout');
  await login(p.page, url(), demoPhone(1, 9)); // 彭玉兰, pending
  await p.page.waitForSelector('#application[data-status="pending"]');
  await shot(p.page, 'application-pending');
  await p.page.click('#logout');

  await login(p.page, url(), demoPhone(1, 1)); // 李建国, secretary
  await waitForChat(p.page);
  await p.page.locator('#msglist .msg .msg-more').last().click();
  await p.page.waitForSelector('#sheet [data-action="reply"]');
  await shot(p.page, 'message-menu');
  await p.page.click('#sheet .sheet-close');
  await p.page.click('#lang-toggle').catch(() => {}); // not on the group screen
  await p.page.evaluate(() => { localStorage.setItem('vh.lang', 'en'); localStorage.setItem('vh.largeText', '1'); });
  await p.page.reload();
  await waitForChat(p.page);
  await shot(p.page, 'chat-en-large');
  await p.page.click('#manage-link');
  await p.page.waitForSelector('#audit[data-state="ready"]');
  await p.page.waitForSelector('#applications[data-state="ready"]');
  await shot(p.page, 'manage-en-large');
  assert.deepEqual(p.errors, [], 'no page errors');
});

test('the secretary mutes, promotes and removes a member from the message menu; the member sees each live', async () => {
  const secretary = await phone(demoPhone(3, 1)); // 黄德明, secretary of 南周村
  const member = await phone(demoPhone(3, 5)); // 梁永强, member
  const text = `我家门口路灯坏了 ${Date.now()}`;
  await member.page.fill('#composer-input', text);
  await member.page.click('#send');
  const msg = secretary.page.locator('#msglist .msg', { hasText: text });
  await msg.waitFor({ timeout: 15_000 });

  const act = async (action, fill) => {
    await msg.locator('.msg-more').click();
    await secretary.page.click(`#sheet [data-action="${action}"]`);
    await fill();
    await secretary.page.click('#sheet-submit');
    await secretary.page.waitForSelector('#sheet', { state: 'detached' });
  };

  await act('mute', async () => {
    await secretary.page.selectOption('#sheet-until', '1h');
    await secretary.page.fill('#sheet-reason', '连续刷屏');
  });
  await member.page.waitForSelector('#muted-note', { timeout: 15_000 });
  assert.equal(await member.page.locator('#composer-input').count(), 0);
  await act('mute', async () => {
    await secretary.page.selectOption('#sheet-until', 'lift');
    await secretary.page.fill('#sheet-reason', '已改正');
  });
  await member.page.waitForSelector('#composer-input', { timeout: 15_000 });

  await act('set_role', async () => {
    await secretary.page.selectOption('#sheet-role', 'volunteer');
  });
  // As a volunteer the member may now hide messages: the menu appears.
  await member.page.waitForSelector('#msglist .msg-more', { timeout: 15_000 });

  await act('remove', async () => {
    await secretary.page.fill('#sheet-reason', '已迁出本村');
  });
  await member.page.waitForFunction(() => location.hash === '#/groups' || document.querySelector('main.content .placeholder'), null, { timeout: 15_000 });
  await member.page.goto(`${url()}/#/groups`);
  await member.page.waitForSelector('.groups .placeholder');
  assert.equal(await member.page.locator('.group-card').count(), 0);

  await secretary.page.click('#manage-link');
  await secretary.page.waitForSelector('#audit .audit-entry[data-action="remove"]');
  const actions = await secretary.page.$$eval('#audit .audit-entry', (els) => els.map((e) => e.dataset.action));
  for (const a of ['remove', 'set_role', 'mute']) assert.ok(actions.includes(a), `audit has ${a}: ${actions}`);
  for (const p of [secretary, member]) assert.deepEqual(p.errors, [], 'no page errors');
});

test('change password: back to the login screen with a message; the new password works', async () => {
  const p = await phone(demoPhone(2, 5)); // 冯建平, 宝月尚园
  await p.page.click('a.back');
  await p.page.click('#change-password');
  await p.page.fill('#pw-old', 'not-my-password');
  await p.page.fill('#pw-new', 'a-better-one-2026');
  await p.page.click('#sheet-submit');
  await p.page.waitForSelector('#sheet .form-error:not([hidden])');
  assert.equal(await p.page.textContent('#sheet .form-error'), '原密码不对。');
  await p.page.fill('#pw-old', 'demo1234');
  await p.page.fill('#pw-new', 'a-better-one-2026');
  await p.page.click('#sheet-submit');
  await p.page.waitForSelector('#login-error:not([hidden])', { timeout: 15_000 });
  assert.equal(await p.page.textContent('#login-error'), '密码已修改，请用新密码重新登录。');
  await login(p.page, url(), demoPhone(2, 5), 'a-better-one-2026');
  await waitForChat(p.page);
  assert.deepEqual(p.errors, [], 'no page errors');
});

test('the secretary transfers ownership from the message menu: both see their new roles', async () => {
  const secretary = await phone(demoPhone(2, 1)); // 周国华, secretary of 宝月尚园
  const heir = await phone(demoPhone(2, 2)); // 吴晓梅, cadre
  const msg = secretary.page.locator('#msglist .msg', { hasText: '吴晓梅' }).last();
  await msg.locator('.msg-more').click();
  await secretary.page.click('#sheet [data-action="transfer"]');
  await secretary.page.fill('#sheet-reason', '换届');
  await secretary.page.click('#sheet-submit');
  const roleOf = (page) => page.evaluate(() => [...window.villagehub.app.groups.values()][0].info.role);
  await secretary.page.waitForFunction(() => [...window.villagehub.app.groups.values()][0].info.role === 'cadre', null, { timeout: 15_000 });
  await heir.page.waitForFunction(() => [...window.villagehub.app.groups.values()][0].info.role === 'secretary', null, { timeout: 15_000 });
  assert.equal(await roleOf(secretary.page), 'cadre');
  // The new secretary reads the audit log; the transfer is in it.
  await heir.page.click('#manage-link');
  await heir.page.waitForSelector('#audit .audit-entry[data-action="transfer"]');
  for (const p of [secretary, heir]) assert.deepEqual(p.errors, [], 'no page errors');
});
