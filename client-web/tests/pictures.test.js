// Pictures in real Chromium against the real server (protocol "Pictures"):
// a resident attaches a PNG to a chat message, a neighbour sees the
// thumbnail live (the <img> really loads) and enlarges it; a request with a
// picture as the cadre sees it; a cadre's notice with a picture as a
// resident reads it; and the refusals a resident sees plainly (not a
// picture, too large — the server runs with a small --max-image-bytes).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import { demoPhone, phoneSuite, sendText } from './helpers.js';

const MAX_IMAGE_BYTES = 8192;
const { phone, shot } = phoneSuite({
  before, after, prefix: 'vh-web-pics-', extra: ['--max-image-bytes', String(MAX_IMAGE_BYTES)],
});

// --- a tiny PNG encoder (RGB, 8 bits), so the test needs no picture files ---

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

/** A width×height PNG whose pixel (x, y) is `pixel(x, y)` → [r, g, b]; `level` 0 stores it uncompressed. */
function png(width, height, pixel, level = 9) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8 bits, RGB, deflate, no filter choice, no interlace
  const raw = Buffer.alloc(height * (1 + width * 3));
  for (let y = 0; y < height; y += 1) {
    const row = y * (1 + width * 3);
    raw[row] = 0; // filter: none
    for (let x = 0; x < width; x += 1) raw.set(pixel(x, y), row + 1 + x * 3);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level })), chunk('IEND', Buffer.alloc(0)),
  ]);
}

// A green field under a blue sky with a red sun: small, and recognisable in a screenshot.
const SCENE = png(48, 32, (x, y) => {
  if ((x - 36) ** 2 + (y - 8) ** 2 < 25) return [220, 60, 40];
  return y < 20 ? [120, 170, 230] : [70, 150, 70];
});
// Noise stored uncompressed: far over MAX_IMAGE_BYTES.
const BIG = png(64, 64, () => [Math.random() * 256, Math.random() * 256, Math.random() * 256], 0);

const file = (name, buffer, mimeType = 'image/png') => ({ name, mimeType, buffer });

/** Waits until every <img> under `selector` has loaded real pixels. */
async function imagesLoaded(page, selector, n = 1) {
  await page.waitForFunction(([sel, n]) => {
    const imgs = [...document.querySelectorAll(`${sel} img`)];
    return imgs.length >= n && imgs.every((i) => i.complete && i.naturalWidth > 0);
  }, [selector, n], { timeout: 15_000 });
}

function noErrors(phones) {
  for (const p of phones) assert.deepEqual(p.errors, [], 'no page errors');
}

test('sizes of the generated pictures fit the test', () => {
  assert.ok(SCENE.length < MAX_IMAGE_BYTES, `scene ${SCENE.length} bytes`);
  assert.ok(BIG.length > MAX_IMAGE_BYTES, `big ${BIG.length} bytes`);
});

test('chat: a picture attached by one resident loads live for a neighbour, who enlarges it', async () => {
  const writer = await phone(demoPhone(1, 3));
  const reader = await phone(demoPhone(1, 4));
  const w = writer.page;
  const r = reader.page;

  await w.setInputFiles('#attach input[type="file"]', file('field.png', SCENE));
  await w.waitForSelector('#attachments:not([hidden]) .attached');
  await imagesLoaded(w, '#attachments');
  const text = `村口的麦子熟了 #${Date.now()}`;
  await sendText(w, text);
  await w.waitForSelector('#attachments', { state: 'hidden' });

  const msg = (page) => page.locator('#msglist .msg', { hasText: text });
  await msg(r).waitFor({ timeout: 15_000 });
  await imagesLoaded(r, `#msglist .msg[data-seq="${await msg(r).getAttribute('data-seq')}"] .thumbs`);
  await imagesLoaded(w, `#msglist .msg[data-seq="${await msg(w).getAttribute('data-seq')}"] .thumbs`);
  await shot(r, 'web-30-chat-picture');

  // Tap to enlarge, tap to close.
  await msg(r).locator('.thumb').click();
  await r.waitForSelector('.lightbox');
  await imagesLoaded(r, '.lightbox');
  const box = await r.locator('.lightbox img').boundingBox();
  assert.ok(box.width >= 300, `enlarged to ${box.width}px wide`);
  await shot(r, 'web-31-picture-enlarged');
  await r.click('.lightbox');
  await r.waitForSelector('.lightbox', { state: 'detached' });

  // A picture alone: the server wants text with every message, so the page
  // asks for a line first and keeps the picture attached meanwhile.
  await w.setInputFiles('#attach input[type="file"]', file('field.png', SCENE));
  await w.waitForSelector('#attachments:not([hidden]) .attached');
  await w.click('#send');
  await w.waitForFunction(() => /请为图片写一句说明/.test(document.querySelector('#toast.show')?.textContent || ''));
  assert.equal(await w.locator('#attachments .attached').count(), 1, 'still attached');
  assert.equal(await w.locator('#pending .msg').count(), 0, 'nothing queued');
  await sendText(w, `再来一张 #${Date.now()}`);
  await r.waitForFunction(() => document.querySelectorAll('#msglist .msg .thumbs').length >= 2, null, { timeout: 15_000 });
  await imagesLoaded(r, '#msglist .msg:last-child .thumbs');

  // After a reload (history, not the live push) the pictures are still there.
  await r.reload();
  await r.waitForSelector('#conn[data-state="connected"]', { timeout: 20_000 });
  await r.waitForFunction(() => document.querySelectorAll('#msglist .msg .thumbs').length >= 2, null, { timeout: 15_000 });
  await imagesLoaded(r, '#msglist .thumbs', 2);
  noErrors([writer, reader]);
});

test('a request with a picture: the cadre sees it in the queue\'s detail', async () => {
  const resident = await phone(demoPhone(2, 5));
  const cadre = await phone(demoPhone(2, 2));
  const text = `河边有人倒垃圾，见图 #${Date.now()}`;

  const r = resident.page;
  await r.click('.tab[data-channel="requests"]');
  await r.click('#request-new');
  await r.selectOption('#sheet-category', '环境卫生');
  await r.fill('#sheet-text', text);
  await r.setInputFiles('#sheet-attach input[type="file"]', file('river.png', SCENE));
  await imagesLoaded(r, '#sheet-images');
  await r.click('#sheet-submit');
  await r.waitForSelector('#request-detail');
  await imagesLoaded(r, '#request-detail .thumbs');

  const c = cadre.page;
  await c.click('.tab[data-channel="requests"]');
  const item = c.locator('#request-list .request', { hasText: text.slice(0, 12) });
  await item.waitFor({ timeout: 15_000 });
  await item.click();
  await c.waitForSelector('#request-detail');
  await imagesLoaded(c, '#request-detail .thumbs');
  await c.click('#request-detail .thumb');
  await imagesLoaded(c, '.lightbox');
  await shot(c, 'web-32-request-picture-cadre');
  noErrors([resident, cadre]);
});

test('a cadre\'s notice with a picture, as a resident reads it', async () => {
  const cadre = await phone(demoPhone(3, 2));
  const resident = await phone(demoPhone(3, 4));
  const title = `道路修缮公示 ${Date.now()}`;

  const c = cadre.page;
  await c.click('.tab[data-channel="notices"]');
  await c.click('#notice-new');
  await c.fill('#sheet-title', title);
  await c.fill('#sheet-text', '施工范围见图。');
  await c.selectOption('#sheet-category', 'announcement');
  await c.setInputFiles('#sheet-attach input[type="file"]', file('road.png', SCENE));
  await imagesLoaded(c, '#sheet-images');
  await c.click('#sheet-submit');
  await c.locator('#notice-list .notice', { hasText: title }).waitFor({ timeout: 15_000 });

  const r = resident.page;
  await r.click('.tab[data-channel="notices"]');
  const n = r.locator('#notice-list .notice', { hasText: title });
  await n.waitFor({ timeout: 15_000 });
  await n.click();
  await r.waitForSelector('#notice-detail');
  await imagesLoaded(r, '#notice-detail .thumbs');
  await shot(r, 'web-33-notice-picture');
  noErrors([cadre, resident]);
});

test('refusals, said plainly: not a picture, a file pretending to be one, too large', async () => {
  const p = await phone(demoPhone(1, 6));
  const page = p.page;
  const toastSays = async (re) => {
    await page.waitForFunction((src) => new RegExp(src).test(document.querySelector('#toast.show')?.textContent || ''), re.source, { timeout: 10_000 });
    // Gone before the next one, so each check reads its own message.
    await page.evaluate(() => document.querySelector('#toast').classList.remove('show'));
  };

  // A document: the browser refuses before uploading.
  await page.setInputFiles('#attach input[type="file"]', file('notes.txt', Buffer.from('not a picture'), 'text/plain'));
  await toastSays(/只能发送 JPEG、PNG、WebP 或 GIF 图片/);
  // Text named .png: the server reads the bytes and refuses (415).
  await page.setInputFiles('#attach input[type="file"]', file('fake.png', Buffer.from('this is plain text, not a PNG at all')));
  await toastSays(/只能发送 JPEG、PNG、WebP 或 GIF 图片/);
  // Over --max-image-bytes: 413, and the limit is told.
  await page.setInputFiles('#attach input[type="file"]', file('big.png', BIG));
  await toastSays(/图片太大了.*8 KB/);
  assert.equal(await page.isHidden('#attachments'), true, 'nothing attached');
  // The attach button stays (the server does take pictures), and a good one still goes.
  await page.setInputFiles('#attach input[type="file"]', file('field.png', SCENE));
  await page.waitForSelector('#attachments:not([hidden]) .attached');
  assert.equal(await page.locator('#attachments .attached').count(), 1);
  // The browser logs the refused uploads' statuses; those are the point here.
  p.errors.splice(0, p.errors.length, ...p.errors.filter((e) => !/status of 41[35]/.test(e)));
  noErrors([p]);
});
