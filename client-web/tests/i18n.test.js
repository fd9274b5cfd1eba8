// Both languages have every string, with the same {placeholders}; and no
// module other than i18n.js holds Chinese text meant for the screen.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tables } from '../i18n.js';

const here = path.dirname(fileURLToPath(import.meta.url));

test('zh-CN and en have the same keys and placeholders', () => {
  const { 'zh-CN': zh, en } = tables();
  assert.deepEqual(Object.keys(en).sort(), Object.keys(zh).sort());
  const holes = (s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
  for (const k of Object.keys(zh)) {
    assert.ok(zh[k] && en[k], `empty string for ${k}`);
    assert.deepEqual(holes(en[k]), holes(zh[k]), `placeholders differ for ${k}`);
  }
});

test('every t() key used by the app exists', () => {
  const { 'zh-CN': zh } = tables();
  const dir = path.join(here, '..');
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.js') && n !== 'i18n.js')) {
    const src = readFileSync(path.join(dir, f), 'utf8');
    for (const m of src.matchAll(/\bt\('([\w.]+)'/g)) assert.ok(m[1] in zh, `${f}: unknown key ${m[1]}`);
    // Chinese text belongs in i18n.js (comments aside).
    const code = src.replace(/\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '');
    assert.doesNotMatch(code, /[\u4e00-\u9fff]/, `${f} holds Chinese text outside i18n.js`);
  }
});

test('every error code and close code of the protocol has a friendly message', () => {
  const { 'zh-CN': zh, en } = tables();
  const lib = readFileSync(path.join(here, '..', '..', 'protocol', 'src', 'lib.rs'), 'utf8');
  const codes = [...lib.matchAll(/ErrorCode::\w+ => "(\w+)"/g)].map((m) => m[1]);
  assert.ok(codes.length >= 10, `found the error codes in protocol/src/lib.rs (${codes})`);
  for (const c of codes) {
    assert.ok(zh[`error.${c}`] && en[`error.${c}`], `no message for error code ${c}`);
  }
  const closes = [...lib.matchAll(/pub const \w+: u16 = (\d+);/g)].map((m) => m[1]).filter((c) => c !== '1001');
  assert.ok(closes.length >= 4, `found the close codes (${closes})`);
  for (const c of closes) assert.ok(zh[`error.close.${c}`] && en[`error.close.${c}`], `no message for close code ${c}`);
});
