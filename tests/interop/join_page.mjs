#!/usr/bin/env node
// Drives the browser join page (served by the rendezvous at /join) in headless
// Debian Chromium, the way a phone would use it: a 390x844 touch viewport, no
// camera/microphone permission (so Chromium offers <uuid>.local candidates as
// a stock phone browser does), real taps through the DevTools touch input.
//
// It reads one JSON command per stdin line and answers each with one JSON
// line on stdout: {"id":N,"ok":true,...} or {"id":N,"ok":false,"error":"..."}.
// Events it was not asked for ({"event":...}) may come in between.
//
// Commands:
//   {"cmd":"open","url":U}                  load U; answers status and bytes (transferred on first load)
//   {"cmd":"eval","js":EXPR}                evaluate EXPR in the page; answers value
//   {"cmd":"wait","js":EXPR,"ms":T}         poll EXPR until truthy (or T ms); answers value
//   {"cmd":"fill","sel":S,"text":T}         type into an input
//   {"cmd":"tap","sel":S}                   a touch tap on an element
//   {"cmd":"touch","keys":[K...]}           touchStart one finger on each piano key K (a chord)
//   {"cmd":"untouch"}                       lift every finger
//   {"cmd":"click_key","key":K}             mouse down then up on piano key K
//   {"cmd":"press","key":"a"}               computer key down+up
//   {"cmd":"theme","scheme":"dark"|"light"}  prefers-color-scheme
//   {"cmd":"screenshot","path":P}           PNG of the viewport
//   {"cmd":"close"}                         close the page (as a phone closing the tab)
//   {"cmd":"quit"}                          close the browser and exit 0
//
// Answers to touch/untouch/click_key carry t_us: the wall clock (µs since the
// epoch) just before the input was dispatched, for latency measurements.
//
// Options: --chromium PATH (default /usr/bin/chromium); --loopback for a
// namespace with only `lo` (raw-IP candidates on loopback: Chromium needs the
// two flags below and the media permission, see README.md).

import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];

const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

async function main() {
  const i = process.argv.indexOf('--chromium');
  const exe = i > 0 ? process.argv[i + 1] : '/usr/bin/chromium';
  const loopback = process.argv.includes('--loopback');
  const args = loopback
    ? [...ARGS, '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns']
    : ARGS;
  const dir = mkdtempSync(path.join(tmpdir(), 'jam-page-'));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: exe,
    headless: true,
    args,
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
  if (loopback) await ctx.grantPermissions(['camera', 'microphone']);
  let page = ctx.pages()[0] ?? (await ctx.newPage());
  let cdp = await ctx.newCDPSession(page);
  let bytes = 0;
  const track = (p) => {
    p.on('pageerror', (e) => out({ event: 'pageerror', message: String(e) }));
    p.on('console', (m) => { if (m.type() === 'error') out({ event: 'console', text: m.text() }); });
  };
  track(page);
  const keyCenter = async (k) => {
    const box = await page.locator(`.key[data-key="${k}"]`).boundingBox();
    if (!box) throw new Error(`no key ${k} on the page`);
    // Black keys: near their top; white keys: low, below the black ones.
    const black = await page.locator(`.key[data-key="${k}"]`).evaluate((e) => e.classList.contains('black'));
    return { x: box.x + box.width / 2, y: box.y + box.height * (black ? 0.4 : 0.85) };
  };
  let touching = [];
  const cleanup = async () => {
    await ctx.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('SIGTERM', async () => { await cleanup(); process.exit(0); });

  const rl = readline.createInterface({ input: process.stdin });
  let n = 0;
  for await (const line of rl) {
    if (!line.trim()) continue;
    const id = ++n;
    let c;
    try { c = JSON.parse(line); } catch { out({ id, ok: false, error: 'not JSON' }); continue; }
    try {
      switch (c.cmd) {
        case 'open': {
          bytes = 0;
          if (page.isClosed()) { page = await ctx.newPage(); track(page); cdp = await ctx.newCDPSession(page); }
          await cdp.send('Network.enable');
          const onDone = (ev) => { bytes += ev.encodedDataLength; };
          cdp.on('Network.loadingFinished', onDone);
          const r = await page.goto(c.url, { waitUntil: 'load' });
          await page.waitForTimeout(300);
          cdp.off('Network.loadingFinished', onDone);
          out({ id, ok: true, status: r ? r.status() : null, bytes });
          break;
        }
        case 'eval': out({ id, ok: true, value: await page.evaluate(c.js) }); break;
        case 'wait': {
          // Polled from here: the page's CSP (rightly) forbids the eval
          // that page.waitForFunction would need.
          const end = Date.now() + (c.ms ?? 10000);
          let v = await page.evaluate(c.js);
          while (!v && Date.now() < end) { await new Promise((r) => setTimeout(r, 20)); v = await page.evaluate(c.js); }
          out({ id, ok: !!v, value: v, error: v ? undefined : 'timed out' });
          break;
        }
        case 'fill': await page.fill(c.sel, c.text); out({ id, ok: true }); break;
        case 'tap': await page.tap(c.sel); out({ id, ok: true }); break;
        case 'touch': {
          const pts = [];
          for (const [j, k] of c.keys.entries()) { const p = await keyCenter(k); pts.push({ x: p.x, y: p.y, id: j + 1 }); }
          touching = pts;
          const t_us = nowUs();
          await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: pts });
          out({ id, ok: true, t_us });
          break;
        }
        case 'untouch': {
          const t_us = nowUs();
          await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
          touching = [];
          out({ id, ok: true, t_us });
          break;
        }
        case 'click_key': {
          const p = await keyCenter(c.key);
          await page.mouse.move(p.x, p.y);
          await page.mouse.down();
          if (c.hold_ms) await page.waitForTimeout(c.hold_ms);
          await page.mouse.up();
          out({ id, ok: true });
          break;
        }
        case 'press': await page.keyboard.press(c.key); out({ id, ok: true }); break;
        case 'theme': await page.emulateMedia({ colorScheme: c.scheme }); out({ id, ok: true }); break;
        case 'screenshot': await page.screenshot({ path: c.path }); out({ id, ok: true }); break;
        case 'close': await page.close({ runBeforeUnload: false }); out({ id, ok: true, t: Date.now() }); break;
        case 'quit': out({ id, ok: true }); await cleanup(); process.exit(0); break;
        default: out({ id, ok: false, error: `unknown command ${c.cmd}` });
      }
    } catch (e) {
      out({ id, ok: false, error: String(e && e.message ? e.message : e) });
    }
  }
  await cleanup();
  void touching;
}

main().catch((e) => { out({ event: 'fatal', error: String(e) }); process.exit(1); });
