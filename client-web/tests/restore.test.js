// The server comes back from an older backup: its log is shorter than what
// the page holds. The page must not take new events for ones it already
// has (same seq, different message): it starts that group afresh.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync } from 'node:fs';
import { phoneSuite, sendText, shownTexts, demoPhone, doubles } from './helpers.js';

let backupDir;
const suite = phoneSuite({
  before, after, prefix: 'vh-web-restore-',
  async setup(s) {
    // The backup: the data directory as it was right after the demo data.
    backupDir = s.tempDir('vh-web-backup-');
    await s.stop();
    cpSync(s.dataDir(), backupDir, { recursive: true });
    await s.start();
  },
});

test('after a restore from an older backup the chat shows the restored log, not a mix', async () => {
  const phone = await suite.phone(demoPhone(2, 5));
  const { page } = phone;
  const run = Date.now().toString(36);
  const gone = Array.from({ length: 5 }, (_, i) => `备份之后的消息${i + 1} ${run}`);
  for (const text of gone) await sendText(page, text);
  await page.waitForFunction((t) => [...document.querySelectorAll('#msglist .msg .text')].some((e) => e.textContent === t) && !document.querySelector('#pending .msg'), gone.at(-1));

  await suite.stop();
  await suite.start({ dataDir: backupDir });
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 40_000 });
  const after = `恢复之后的消息 ${run}`;
  await sendText(page, after);
  await page.waitForFunction((t) => [...document.querySelectorAll('#msglist .msg .text')].some((e) => e.textContent === t) && !document.querySelector('#pending .msg'), after, { timeout: 20_000 });
  const shown = await shownTexts(page);
  for (const t of gone) assert.ok(!shown.includes(t), `a message the restored server does not have is still shown: ${t}`);
  const seqs = await page.$$eval('#msglist .msg', (els) => els.map((e) => Number(e.dataset.seq)));
  assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1), 'the restored log, seq 1.. without gap or repeat');
  assert.deepEqual(await doubles(page), []);
  assert.deepEqual(phone.errors, [], 'no page errors');
});
