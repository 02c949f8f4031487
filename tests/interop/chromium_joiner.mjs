#!/usr/bin/env node
// An independent WebRTC joiner: headless Debian Chromium (driven by playwright-core)
// joins a jam the way MidiEditor AI does, with the browser's own RTCPeerConnection and
// fetch(). Same options, events and exit codes as aiortc_joiner.py (see README.md):
//
//   GET /health, GET /code/<c>, one PeerConnection with iceServers: [], data channel(s)
//   (midieditor first; reliable, ordered, binary), the offer after ICE gathering
//   completed, a fresh 16-char joinerId, POST /code/<c>/joiner-offer while polling
//   GET /code/<c>/host-answer/<id> every 750 ms in parallel (404 = keep polling, other
//   non-200 = fail), the answer, and a framed hello when `midieditor` opens.
//
// The page is about:blank (opaque origin "null"), so every rendezvous request is
// cross-origin and relies on the rendezvous' CORS headers (the POSTs are preflighted).
//
// Exit codes: 0 ok, 1 internal/browser error, 2 usage, 3 rendezvous, 4 WebRTC
// connection, 5 an expectation not met, 6 closed by the remote before --stay ended.
//
// Run it inside a network namespace (README.md). Chromium gathers loopback candidates
// only with --allow-loopback-in-peer-connection, WebRtcHideLocalIpsWithMdns disabled, and
// camera+microphone permission granted (without it, Chromium enumerates no interface and
// only offers the default route's address, which a namespace without a route lacks).

import { chromium } from 'playwright-core';
import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';

const T0 = performance.timeOrigin + performance.now();
const emit = (rec) => {
  const ms = Math.round((performance.timeOrigin + performance.now() - T0) * 10) / 10;
  const { event, ...rest } = rec;
  process.stdout.write(JSON.stringify({ event, ms, ...rest }) + '\n');
};

const USAGE = `usage: chromium_joiner.mjs --url URL --code CODE [options]
  --name NAME               displayName in hello (default chromium-joiner)
  --machine-id ID           machineId in hello (default: a fresh uuid)
  --session-id ID           sessionId in hello (default: from GET /code)
  --app-version V           (default 2.0.1)   --current-head H (default "")
  --joiner-id ID            use this joinerId instead of a fresh one
  --channels L[,L]          data channel labels, midieditor first (default midieditor)
  --stay S                  seconds to stay connected after open (default 5)
  --send-heartbeats         send {type:heartbeat} every --heartbeat-interval s (10)
  --send-garbage            send malformed messages after the host's first frame
  --garbage-first           ... right at open, before hello
  --no-hello                do not send hello
  --vanish-after-offer      post the offer, then exit 0 without connecting
  --ping                    send framed midieditor-ping, require midieditor-pong
  --big N                   send one JSON frame whose payload is exactly N bytes
  --big-type T              type field of that frame (default bigTest)
  --midi-hex HEX            send these bytes as one message on the midi channel
  --expect-first TYPE       fail (exit 5) unless the host's first frame has this type
  --exit-on TYPE            leave (exit 0) once a frame of this type (and the pong) came
  --max-message-size N      rewrite a=max-message-size in the posted offer (default: keep)
  --poll-ms MS (750)  --max-polls N (360)  --connect-timeout S (20)
  --gather-timeout-ms MS    (8000, MidiEditor's default)
  --max-body-print N        larger frames are reported without body (65536)
  --preflight-gets          send Content-Type: application/json on GETs too, as
                            MidiEditor does (each GET is then CORS-preflighted)
  --chromium PATH           (default /usr/bin/chromium)
  --mdns-candidates         keep Chromium's default of hiding local IPs behind
                            <uuid>.local mDNS host candidates (default: raw IPs); no
                            camera/microphone permission then, so Chromium gathers
                            only on the default route's interface
  --verbose                 also report every answer poll`;

function parseCli() {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      code: { type: 'string' },
      name: { type: 'string', default: 'chromium-joiner' },
      'machine-id': { type: 'string' },
      'session-id': { type: 'string' },
      'app-version': { type: 'string', default: '2.0.1' },
      'current-head': { type: 'string', default: '' },
      'joiner-id': { type: 'string' },
      channels: { type: 'string', default: 'midieditor' },
      stay: { type: 'string', default: '5' },
      'send-heartbeats': { type: 'boolean', default: false },
      'heartbeat-interval': { type: 'string', default: '10' },
      'send-garbage': { type: 'boolean', default: false },
      'garbage-first': { type: 'boolean', default: false },
      'no-hello': { type: 'boolean', default: false },
      'vanish-after-offer': { type: 'boolean', default: false },
      ping: { type: 'boolean', default: false },
      big: { type: 'string', default: '0' },
      'big-type': { type: 'string', default: 'bigTest' },
      'midi-hex': { type: 'string' },
      'expect-first': { type: 'string' },
      'exit-on': { type: 'string' },
      'max-message-size': { type: 'string' },
      'poll-ms': { type: 'string', default: '750' },
      'max-polls': { type: 'string', default: '360' },
      'connect-timeout': { type: 'string', default: '20' },
      'gather-timeout-ms': { type: 'string', default: '8000' },
      'max-body-print': { type: 'string', default: '65536' },
      'preflight-gets': { type: 'boolean', default: false },
      chromium: { type: 'string', default: '/usr/bin/chromium' },
      'mdns-candidates': { type: 'boolean', default: false },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    process.exit(0);
  }
  if (!values.url || !values.code) throw new Error('--url and --code are required');
  const num = (k) => {
    const n = Number(values[k]);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${k} must be a non-negative number`);
    return n;
  };
  const channels = values.channels.split(',').map((s) => s.trim()).filter(Boolean);
  if (channels[0] !== 'midieditor') throw new Error('--channels must start with midieditor');
  if (values['midi-hex'] !== undefined && !/^([0-9a-fA-F]{2})+$/.test(values['midi-hex']))
    throw new Error('--midi-hex must be an even number of hex digits');
  return {
    url: values.url.replace(/\/+$/, ''),
    code: values.code,
    name: values.name,
    machineId: values['machine-id'] ?? randomUUID(),
    sessionId: values['session-id'] ?? null,
    appVersion: values['app-version'],
    currentHead: values['current-head'],
    joinerId: values['joiner-id'] ?? null,
    channels,
    stay: num('stay'),
    sendHeartbeats: values['send-heartbeats'],
    heartbeatInterval: num('heartbeat-interval'),
    sendGarbage: values['send-garbage'],
    garbageFirst: values['garbage-first'],
    noHello: values['no-hello'],
    vanishAfterOffer: values['vanish-after-offer'],
    ping: values.ping,
    big: num('big'),
    bigType: values['big-type'],
    midiHex: values['midi-hex'] ?? null,
    expectFirst: values['expect-first'] ?? null,
    exitOn: values['exit-on'] ?? null,
    maxMessageSize: values['max-message-size'] !== undefined ? num('max-message-size') : null,
    pollMs: num('poll-ms'),
    maxPolls: num('max-polls'),
    connectTimeout: num('connect-timeout'),
    gatherTimeoutMs: num('gather-timeout-ms'),
    maxBodyPrint: num('max-body-print'),
    preflightGets: values['preflight-gets'],
    chromium: values.chromium,
    mdnsCandidates: values['mdns-candidates'],
    verbose: values.verbose,
    t0: T0,
  };
}

// ---------------------------------------------------------------------------------------
// Runs inside the page (serialised by page.evaluate: it must not use anything from this
// module). Reports through window.__jamEmit and resolves with a summary.
async function joinInPage(o) {
  const EXIT = { OK: 0, INTERNAL: 1, RENDEZVOUS: 3, CONNECT: 4, EXPECT: 5, CLOSED: 6 };
  const now = () => performance.timeOrigin + performance.now();
  const ms = () => Math.round((now() - o.t0) * 10) / 10;
  const emit = (event, fields = {}) => window.__jamEmit({ event, ms: ms(), ...fields });
  const enc = new TextEncoder();
  const dec = new TextDecoder('utf-8', { fatal: true });
  const PING = 'midieditor-ping';
  const PONG = 'midieditor-pong';

  class JoinError extends Error {
    constructor(code, stage, message, fields = {}) {
      super(message);
      this.code = code;
      this.stage = stage;
      this.fields = fields;
    }
  }

  const frame = (payload) => {
    const bytes = typeof payload === 'string' ? enc.encode(payload) : payload;
    const out = new Uint8Array(4 + bytes.length);
    new DataView(out.buffer).setUint32(0, bytes.length, false);
    out.set(bytes, 4);
    return out;
  };
  const frameJson = (obj) => frame(JSON.stringify(obj));
  const raw = (prefix, bytes) => {
    const b = typeof bytes === 'string' ? enc.encode(bytes) : bytes;
    const out = new Uint8Array(4 + b.length);
    new DataView(out.buffer).setUint32(0, prefix >>> 0, false);
    out.set(b, 4);
    return out;
  };
  const hex = (u8) => Array.from(u8, (b) => b.toString(16).padStart(2, '0')).join('');
  const short = (t) => (t.length <= 300 ? t : t.slice(0, 300) + '...');
  const sleep = (t) => new Promise((r) => setTimeout(r, t));

  async function http(method, path, body, timeoutMs = 5000) {
    const headers = {};
    if (body !== undefined || o.preflightGets) headers['Content-Type'] = 'application/json';
    const resp = await fetch(o.url + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
      cache: 'no-store',
    });
    return { status: resp.status, text: await resp.text() };
  }

  const st = {
    frames: 0, firstType: undefined, seen: new Set(), pong: false, pingAt: null,
    tOfferPosted: null, tAnswer: null, tOpen: null, closing: false,
  };
  let finishResolve, finishReject;
  const finish = new Promise((res, rej) => { finishResolve = res; finishReject = rej; });
  let finished = false;
  const end = (code) => { if (!finished) { finished = true; finishResolve(code); } };
  const fail = (err) => { if (!finished) { finished = true; finishReject(err); } };
  // Never rejects, so racing it cannot leave an unhandled rejection behind.
  const finished$ = finish.then((code) => ({ code }), (err) => ({ err }));
  const unwrap = (r) => { if (r.err) throw r.err; return r.code; };
  let firstFrameResolve;
  const firstFrame = new Promise((res) => { firstFrameResolve = res; });

  let pc = null;
  const channels = {};
  const timers = [];

  const send = (label, data, what, fields = {}) => {
    const ch = channels[label];
    if (!ch || ch.readyState !== 'open') {
      emit('error', { stage: 'send', message: `channel ${label} not open`, what });
      return false;
    }
    try {
      ch.send(data);
    } catch (e) {
      emit('error', { stage: 'send', message: String(e), what, ...fields });
      return false;
    }
    emit('sent', { channel: label, what, ...fields });
    return true;
  };

  const checkDone = () => {
    if (!o.exitOn) return;
    if (o.ping && !st.pong) return;
    if (st.seen.has(o.exitOn)) end(EXIT.OK);
  };
  const noteFirst = (type) => {
    if (st.firstType !== undefined) return;
    st.firstType = type;
    firstFrameResolve(type);
    if (o.expectFirst && type !== o.expectFirst)
      fail(new JoinError(EXIT.EXPECT, 'expect', 'unexpected first frame', { want: o.expectFirst, got: type }));
  };

  const onMessage = (label, data) => {
    if (label !== 'midieditor') {
      if (typeof data === 'string') emit('message', { channel: label, text: data.slice(0, 512), len: data.length });
      else {
        const u8 = new Uint8Array(data);
        emit('message', { channel: label, len: u8.length, hex: hex(u8.subarray(0, 256)) });
      }
      return;
    }
    if (typeof data === 'string') {
      emit('frame-error', { channel: label, reason: 'text message', text: data.slice(0, 512) });
      return;
    }
    const u8 = new Uint8Array(data);
    if (u8.length < 4) {
      emit('frame-error', { channel: label, reason: 'shorter than 4 bytes', hex: hex(u8) });
      return;
    }
    const length = new DataView(u8.buffer, u8.byteOffset).getUint32(0, false);
    const payload = u8.subarray(4);
    if (length !== payload.length) {
      emit('frame-error', { channel: label, reason: 'length prefix does not match the message', declared: length, actual: payload.length });
      return;
    }
    let text;
    try {
      text = dec.decode(payload);
    } catch {
      emit('frame-error', { channel: label, reason: 'payload is not UTF-8', len: length });
      return;
    }
    if (text === PONG) {
      st.frames++;
      st.pong = true;
      const rtt = st.pingAt === null ? null : Math.round((now() - st.pingAt) * 100) / 100;
      emit('frame', { channel: label, type: null, raw: PONG, len: length });
      emit('pong', { rtt_ms: rtt });
      noteFirst(null);
      checkDone();
      return;
    }
    if (text === PING) {
      st.frames++;
      emit('frame', { channel: label, type: null, raw: PING, len: length });
      noteFirst(null);
      send(label, frame(PONG), 'pong');
      return;
    }
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      emit('frame-error', { channel: label, reason: 'payload is not JSON', len: length, text: text.slice(0, 256) });
      return;
    }
    st.frames++;
    const type = body && typeof body === 'object' && !Array.isArray(body) ? (body.type ?? null) : null;
    const rec = { channel: label, type, len: length };
    if (length <= o.maxBodyPrint) rec.body = body;
    else {
      rec.body_truncated = true;
      if (type !== null) rec.keys = Object.keys(body).sort();
    }
    emit('frame', rec);
    st.seen.add(type);
    noteFirst(type);
    checkDone();
  };

  const garbage = () => [
    ['text-message', '{"type":"heartbeat"}'],
    ['unprefixed-json', enc.encode('{"type":"heartbeat"}')],
    ['short', new Uint8Array([0, 1])],
    ['length-too-big', raw(100, '0123456789')],
    ['length-too-small', raw(2, '{"type":"heartbeat"}')],
    ['max-length', raw(0xffffffff, '{}')],
    ['not-utf8', frame(new Uint8Array([0xff, 0xfe, 0xfd, 0x20, 0x6e, 0x6f]))],
    ['not-json', frame('this is not json')],
    ['json-array', frame('[1,2,3]')],
    ['json-string', frame('"hello"')],
    ['no-type', frame('{"hello":1}')],
    ['type-not-string', frame('{"type":42}')],
    ['unknown-type', frameJson({ type: 'zzUnknownType', x: [1, 2] })],
    ['empty-payload', frame(new Uint8Array(0))],
    ['empty-message', new Uint8Array(0)],
  ];
  const sendGarbage = () => { for (const [kind, data] of garbage()) send('midieditor', data, 'garbage', { kind }); };

  const bigFrame = (size, type) => {
    const head = JSON.stringify({ type, pad: '' });
    const pad = size - head.length;
    if (pad < 0) throw new JoinError(EXIT.INTERNAL, 'big', `--big must be at least ${head.length} bytes`);
    return frame(head.slice(0, -2) + 'x'.repeat(pad) + head.slice(-2));
  };

  async function afterOpen(sessionId) {
    if (o.sendGarbage && o.garbageFirst) sendGarbage();
    if (!o.noHello) {
      const hello = {
        type: 'hello', sessionId, displayName: o.name, machineId: o.machineId,
        appVersion: o.appVersion, currentHead: o.currentHead, historyTailHashes: [],
      };
      send('midieditor', frameJson(hello), 'hello', { body: hello });
    }
    if (o.sendGarbage && !o.garbageFirst) {
      await Promise.race([firstFrame, sleep(5000)]);
      sendGarbage();
    }
    if (o.ping) {
      st.pingAt = now();
      send('midieditor', frame(PING), 'ping');
    }
    if (o.big) {
      const data = bigFrame(o.big, o.bigType);
      if (!send('midieditor', data, 'big', { payload_len: o.big, message_len: data.length }))
        fail(new JoinError(EXIT.EXPECT, 'big', 'the big frame could not be sent'));
    }
    if (o.midiHex) {
      if (!channels.midi) throw new JoinError(EXIT.INTERNAL, 'midi', '--midi-hex needs --channels midieditor,midi');
      const bytes = new Uint8Array(o.midiHex.match(/../g).map((h) => parseInt(h, 16)));
      send('midi', bytes, 'midi', { hex: o.midiHex.toLowerCase() });
    }
    if (o.sendHeartbeats)
      timers.push(setInterval(() => send('midieditor', frameJson({ type: 'heartbeat' }), 'heartbeat'), o.heartbeatInterval * 1000));
  }

  const candidatesOf = (sdp) => sdp.split(/\r?\n/).filter((l) => l.startsWith('a=candidate:')).map((l) => l.slice(2));
  const maxMessageSizeOf = (sdp) => { const m = /a=max-message-size:(\d+)/.exec(sdp); return m ? Number(m[1]) : null; };

  async function run() {
    // 1. Pre-flight and verify.
    let r;
    try {
      r = await http('GET', '/health', undefined, 3000);
    } catch (e) {
      throw new JoinError(EXIT.RENDEZVOUS, 'health', `GET /health failed: ${e}`);
    }
    if (r.status !== 200) throw new JoinError(EXIT.RENDEZVOUS, 'health', 'GET /health not 200', { status: r.status });
    emit('health', { status: r.status });
    try {
      r = await http('GET', `/code/${o.code}`);
    } catch (e) {
      throw new JoinError(EXIT.RENDEZVOUS, 'verify', `GET /code failed: ${e}`);
    }
    if (r.status !== 200) throw new JoinError(EXIT.RENDEZVOUS, 'verify', 'code not found', { status: r.status, body: short(r.text) });
    let info;
    try { info = JSON.parse(r.text); } catch { throw new JoinError(EXIT.RENDEZVOUS, 'verify', 'verify body is not JSON', { body: short(r.text) }); }
    emit('verified', { sessionId: info.sessionId ?? null, displayName: info.displayName ?? null });
    const sessionId = o.sessionId ?? info.sessionId ?? '';

    // 2. PeerConnection, channels, offer, complete gathering.
    pc = new RTCPeerConnection({ iceServers: [] });
    pc.addEventListener('connectionstatechange', () => {
      emit('state', { state: pc.connectionState });
      if (pc.connectionState === 'failed') fail(new JoinError(EXIT.CONNECT, 'connect', 'PeerConnection failed'));
      else if (pc.connectionState === 'closed' && !st.closing) { emit('closed', { channel: null, by: 'remote' }); end(EXIT.CLOSED); }
    });
    const opened = [];
    for (const label of o.channels) {
      const ch = pc.createDataChannel(label, { ordered: true }); // reliable: no maxRetransmits/maxPacketLifeTime
      ch.binaryType = 'arraybuffer';
      channels[label] = ch;
      opened.push(new Promise((res) => ch.addEventListener('open', res, { once: true })));
      ch.addEventListener('message', (ev) => onMessage(label, ev.data));
      ch.addEventListener('close', () => {
        if (!st.closing) { emit('closed', { channel: label, by: 'remote' }); end(EXIT.CLOSED); }
      });
    }
    const tGather = now();
    await pc.setLocalDescription(await pc.createOffer());
    const gathered = await new Promise((res) => {
      if (pc.iceGatheringState === 'complete') return res(true);
      const t = setTimeout(() => res(false), o.gatherTimeoutMs);
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') { clearTimeout(t); res(true); }
      });
    });
    let sdp = pc.localDescription.sdp;
    if (o.maxMessageSize !== null) sdp = sdp.replace(/a=max-message-size:\d+/g, `a=max-message-size:${o.maxMessageSize}`);
    const candidates = candidatesOf(sdp);
    emit('offer', { gather_ms: Math.round((now() - tGather) * 10) / 10, gathering_complete: gathered, candidates, sdp_len: sdp.length });
    if (candidates.length === 0)
      throw new JoinError(EXIT.CONNECT, 'offer', 'no ICE candidates (Chromium needs the loopback flags and camera/microphone permission)');

    // 3. joinerId, offer POST and answer polls in parallel.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-';
    let joinerId = o.joinerId;
    if (!joinerId) {
      joinerId = '';
      while (joinerId.length < 16) {
        const b = crypto.getRandomValues(new Uint8Array(1))[0];
        if (b < 252) joinerId += alphabet[b % 63]; // 252 = 4 * 63: no modulo bias
      }
    }
    let answerResolve, answerReject, answered = false;
    const answer = new Promise((res, rej) => { answerResolve = res; answerReject = rej; });
    const settle = (ok, v) => { if (answered) return; answered = true; (ok ? answerResolve : answerReject)(v); };
    let polls = 0, n404 = 0;
    const pollOnce = async (n) => {
      let pr;
      try {
        pr = await http('GET', `/code/${o.code}/host-answer/${joinerId}`);
      } catch (e) {
        settle(false, new JoinError(EXIT.RENDEZVOUS, 'answer', `answer poll failed: ${e}`, { poll: n }));
        return;
      }
      if (o.verbose) emit('poll', { n, status: pr.status });
      if (answered) return;
      if (pr.status === 404) { n404++; return; }
      if (pr.status !== 200) {
        settle(false, new JoinError(EXIT.RENDEZVOUS, 'answer', 'answer poll got a status other than 200/404', { status: pr.status, body: short(pr.text), poll: n }));
        return;
      }
      try {
        const a = JSON.parse(pr.text).sdp;
        if (typeof a !== 'string' || !a) throw new Error('empty sdp');
        settle(true, { sdp: a, poll: n, n404 });
      } catch (e) {
        settle(false, new JoinError(EXIT.RENDEZVOUS, 'answer', `bad answer body: ${e}`, { body: short(pr.text) }));
      }
    };
    // A timer that fires whether or not the previous poll finished, like MidiEditor's.
    const tick = () => {
      if (answered) return;
      if (polls >= o.maxPolls) {
        setTimeout(() => settle(false, new JoinError(EXIT.RENDEZVOUS, 'answer', 'no answer after the last poll', { polls })), 5000);
        clearInterval(poller);
        return;
      }
      polls++;
      pollOnce(polls);
    };
    const poller = setInterval(tick, o.pollMs);
    timers.push(poller);
    const postOffer = http('POST', `/code/${o.code}/joiner-offer`, { joinerId, sdp });
    tick(); // the first poll goes out with the POST
    try {
      r = await postOffer;
    } catch (e) {
      clearInterval(poller);
      throw new JoinError(EXIT.RENDEZVOUS, 'offer', `POST joiner-offer failed: ${e}`);
    }
    if (r.status !== 200) {
      clearInterval(poller);
      throw new JoinError(EXIT.RENDEZVOUS, 'offer', 'joiner-offer refused', { status: r.status, body: short(r.text) });
    }
    st.tOfferPosted = now();
    emit('offer-posted', { joinerId, status: r.status });
    if (o.vanishAfterOffer) {
      clearInterval(poller);
      settle(false, new Error('vanished'));
      answer.catch(() => {});
      emit('vanished', { joinerId });
      return EXIT.OK;
    }

    const ans = await answer.finally(() => clearInterval(poller));
    st.tAnswer = now();
    emit('answer', {
      poll: ans.poll, polls_404: ans.n404,
      since_offer_ms: Math.round((st.tAnswer - st.tOfferPosted) * 10) / 10,
      candidates: candidatesOf(ans.sdp), max_message_size: maxMessageSizeOf(ans.sdp),
    });
    await pc.setRemoteDescription({ type: 'answer', sdp: ans.sdp });

    // 4. Channels open (or failure / timeout).
    const outcome = await Promise.race([
      Promise.all(opened).then(() => 'open'),
      finished$,
      sleep(o.connectTimeout * 1000).then(() => 'timeout'),
    ]);
    if (typeof outcome === 'object') return unwrap(outcome);
    if (outcome === 'timeout') {
      const missing = o.channels.filter((l) => channels[l].readyState !== 'open');
      throw new JoinError(EXIT.CONNECT, 'connect', 'data channel did not open in time', { missing, state: pc.connectionState });
    }
    st.tOpen = now();
    emit('open', {
      channels: o.channels,
      offer_to_open_ms: Math.round((st.tOpen - st.tOfferPosted) * 10) / 10,
      answer_to_open_ms: Math.round((st.tOpen - st.tAnswer) * 10) / 10,
    });
    await afterOpen(sessionId);

    const stayed = await Promise.race([finished$, sleep(o.stay * 1000).then(() => 'stayed')]);
    if (typeof stayed === 'object') return unwrap(stayed);
    if (o.expectFirst && st.firstType === undefined)
      throw new JoinError(EXIT.EXPECT, 'expect', 'no frame received', { want: o.expectFirst });
    if (o.ping && !st.pong) throw new JoinError(EXIT.EXPECT, 'expect', 'no midieditor-pong received');
    if (o.exitOn) throw new JoinError(EXIT.EXPECT, 'expect', 'frame type never received', { want: o.exitOn });
    return EXIT.OK;
  }

  async function close() {
    st.closing = true;
    for (const t of timers) clearInterval(t);
    if (!pc) return;
    // Let queued messages (a big frame) leave, then close the channels (an orderly SCTP
    // stream reset, after the data) before the PeerConnection.
    const deadline = now() + 10000;
    while (now() < deadline && Object.values(channels).some((c) => c.readyState === 'open' && c.bufferedAmount > 0)) await sleep(20);
    const closes = Object.values(channels).filter((c) => c.readyState === 'open').map((c) => {
      const p = new Promise((res) => c.addEventListener('close', res, { once: true }));
      c.close();
      return p;
    });
    await Promise.race([Promise.all(closes), sleep(2000)]);
    pc.close();
  }

  let code = EXIT.INTERNAL;
  try {
    const r = await Promise.race([run().then((c) => ({ code: c }), (err) => ({ err })), finished$]);
    code = unwrap(r);
  } catch (e) {
    if (e instanceof JoinError) {
      emit('error', { stage: e.stage, message: e.message, ...e.fields });
      code = e.code;
    } else {
      emit('error', { stage: 'internal', message: String(e && e.stack ? e.stack : e) });
      code = EXIT.INTERNAL;
    }
  }
  try { await close(); } catch (e) { emit('error', { stage: 'close', message: String(e) }); }
  const summary = {
    code, ok: code === EXIT.OK, frames: st.frames,
    first_type: st.firstType === undefined ? null : st.firstType, pong: st.pong,
  };
  if (st.tOpen !== null) summary.offer_to_open_ms = Math.round((st.tOpen - st.tOfferPosted) * 10) / 10;
  return summary;
}

// ---------------------------------------------------------------------------------------

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--allow-loopback-in-peer-connection',
];
// Raw IP host candidates instead of <uuid>.local names (libjuice does not resolve mDNS).
// This replaces playwright's own --disable-features list (last one wins). Left out with
// --mdns-candidates, so Chromium offers <uuid>.local host candidates as it does by default
// (it then needs a multicast-capable interface, e.g. a veth pair; not plain loopback).
const NO_MDNS_ARG = '--disable-features=WebRtcHideLocalIpsWithMdns';

async function main() {
  let o;
  try {
    o = parseCli();
  } catch (e) {
    process.stderr.write(`${e.message}\n${USAGE}\n`);
    process.exit(2);
  }
  emit({ event: 'start', joiner: 'chromium', url: o.url, code: o.code, machineId: o.machineId });
  const userDataDir = mkdtempSync(path.join(tmpdir(), 'jam-chromium-'));
  let ctx = null;
  let summary = { code: 1, ok: false, frames: 0, first_type: null, pong: false };
  try {
    ctx = await chromium.launchPersistentContext(userDataDir, {
      executablePath: o.chromium,
      headless: true,
      args: o.mdnsCandidates ? CHROMIUM_ARGS : [...CHROMIUM_ARGS, NO_MDNS_ARG],
    });
    // Media permission makes Chromium enumerate interfaces (lo included, with the flag
    // above) for ICE; without it only the default route's address is offered. It also
    // makes Chromium offer raw IPs even with WebRtcHideLocalIpsWithMdns enabled, so
    // --mdns-candidates leaves it out: Chromium then offers one <uuid>.local candidate for
    // the default route's address (the namespace needs a default route).
    if (!o.mdnsCandidates) await ctx.grantPermissions(['camera', 'microphone']);
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    await page.exposeFunction('__jamEmit', (rec) => {
      process.stdout.write(JSON.stringify(rec) + '\n');
    });
    page.on('pageerror', (err) => emit({ event: 'error', stage: 'page', message: String(err) }));
    emit({ event: 'browser', version: ctx.browser()?.version() ?? null, page: page.url() });
    summary = await page.evaluate(joinInPage, o);
  } catch (e) {
    emit({ event: 'error', stage: 'browser', message: String(e && e.message ? e.message : e) });
  } finally {
    if (ctx) await ctx.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  }
  emit({ event: 'done', ...summary });
  process.exit(summary.code);
}

main();
