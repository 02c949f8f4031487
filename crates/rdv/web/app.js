// The join page: a browser peer of the jam. It joins through the v3
// rendezvous as the WebRTC offerer (like MidiEditor's joiner), speaks the
// `midieditor` channel's hello handshake and the `midi` channel's frames
// (docs/midi-frames.md), plays what everyone plays on a WebAudio synth, and
// sends what is played on its keyboard. Nothing here reaches past the host
// that served the page.

import { Synth, PRESETS } from "./synth.js";

const BASE = document.documentElement.dataset.base || "";
const VERSION = document.documentElement.dataset.version || "0";
/** How the host's registry tells this page from MidiEditor and from the app. */
const CLIENT = `midi-jam-web/${VERSION}`;
const CODE_RE = /^[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{4}$/;
const KEEPALIVE = 0x02;
const RELEASE = 0x01;

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const synth = new Synth();

/** Everything the page knows about its jam; also what tests read. */
const state = {
  phase: "idle", // idle | joining | joined | rejoining | left | failed
  code: "",
  jamName: "",
  /** @type {Map<number, {id:number, displayName:string, client:string, machineId:string}>} */
  peers: new Map(),
  hostName: "",
  /** @type {RTCPeerConnection|null} */ pc: null,
  /** @type {RTCDataChannel|null} */ dc: null,
  /** @type {RTCDataChannel|null} */ midi: null,
  machineId: "",
  /** Notes we sent that are still on: "ch:key". */
  held: new Set(),
  sustainDown: false,
  /** Frames received on `midi`, and dropped as malformed. */
  framesIn: 0,
  framesBad: 0,
  /** Whether the host promised keep-alives, and when its last frame came. */
  hostPromised: false,
  lastFromHost: 0,
  /** Which sources sound on the synth from the host's `midi` channel. */
  /** @type {Set<string>} */ remoteSounding: new Set(),
  timers: /** @type {number[]} */ ([]),
  /** Times the page joined again by itself after a host restart. */
  rejoins: 0,
  lastSent: 0,
};

// ---- words ------------------------------------------------------------

/** @param {string} text */
function status(text) { $("status").textContent = text; }

/** A problem, in words, with the code field ready to try again. @param {string} text */
function problem(text) {
  const p = $("problem");
  p.textContent = text;
  p.hidden = !text;
  if (text) {
    $("join-form").hidden = false;
    $("jam").hidden = true;
    $("leave").hidden = true;
    /** @type {HTMLButtonElement} */ ($("join")).disabled = false;
  }
}

function hostAddr() { return location.host; }

// ---- HTTP (the v3 rendezvous on this origin) ------------------------

class NetError extends Error {}

/** @param {string} path @param {RequestInit & {timeout?: number}} [init] */
async function api(path, init = {}) {
  const ctl = new AbortController();
  const t = setTimeout(() => ctl.abort(), init.timeout || 5000);
  try {
    const r = await fetch(BASE + path, { ...init, signal: ctl.signal, cache: "no-store" });
    let body = null;
    try { body = await r.json(); } catch { /* not JSON */ }
    return { status: r.status, body };
  } catch (e) {
    throw new NetError(String(e));
  } finally {
    clearTimeout(t);
  }
}

const unreachable = () =>
  `Cannot reach the jam's host at ${hostAddr()}. Is the host still running, and is this device on the same network (Wi-Fi)?`;
/** @param {string} code */
const unknownCode = (code) =>
  `No jam with code ${code} is open on ${hostAddr()}. The jam may have ended, or the code is mistyped: type the code shown on the host's screen.`;

/** Looks the code up; returns the session or says why not. @param {string} code */
async function lookup(code) {
  if (!CODE_RE.test(code)) {
    problem(code ? `"${code}" is not a jam code: codes are 4 characters (letters and digits, no I, L, O, 0 or 1).` : "Type the 4-character code shown on the host's screen.");
    return null;
  }
  let r;
  try { r = await api(`/code/${code}`); } catch { problem(unreachable()); return null; }
  if (r.status === 200 && r.body) return /** @type {{sessionId:string, displayName:string}} */ (r.body);
  if (r.status === 429) { problem("Too many wrong codes from this device; wait a minute and try again."); return null; }
  problem(unknownCode(code));
  return null;
}

// ---- framing ----------------------------------------------------------

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

/** `[u32 BE length][JSON]`, one frame per message. @param {object} obj */
function frameJson(obj) {
  const body = enc.encode(JSON.stringify(obj));
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

/** @param {object} obj */
function sendJson(obj) {
  if (state.dc && state.dc.readyState === "open") state.dc.send(frameJson(obj));
}

function nowUs() { return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)); }

/** A `midi` frame, version 1, origin 0, KEEPALIVE promised. @param {number[]} msgs */
function midiFrame(msgs) {
  const out = new Uint8Array(11 + msgs.length);
  out[0] = 1; out[1] = KEEPALIVE; out[2] = 0;
  new DataView(out.buffer).setBigUint64(3, nowUs());
  out.set(msgs, 11);
  return out;
}

/** Data bytes after a status byte (SysEx handled apart). @param {number} s */
function dataLen(s) {
  if (s < 0xf0) return [2, 2, 2, 2, 1, 1, 2][(s >> 4) - 8];
  return { 0xf1: 1, 0xf2: 2, 0xf3: 1, 0xf6: 0, 0xf8: 0, 0xfa: 0, 0xfb: 0, 0xfc: 0, 0xfe: 0, 0xff: 0 }[s] ?? -1;
}

/**
 * Reads a whole `midi` frame or nothing (all or nothing: a half-applied frame
 * could leave a note on).
 * @param {Uint8Array} b
 * @returns {{flags:number, origin:number, timeUs:bigint, msgs:Uint8Array[]}|null}
 */
export function parseMidiFrame(b) {
  if (b.length < 11 || b[0] !== 1 || b.length > 262144) return null;
  let i = 2, origin = 0, shift = 0;
  for (;;) {
    if (i >= b.length || i > 11) return null;
    const x = b[i++];
    origin += (x & 0x7f) * Math.pow(2, shift);
    shift += 7;
    if (!(x & 0x80)) break;
  }
  if (i + 8 > b.length) return null;
  const timeUs = new DataView(b.buffer, b.byteOffset).getBigUint64(i);
  i += 8;
  const msgs = [];
  while (i < b.length) {
    const s = b[i];
    if (s === 0xf0) {
      let j = i + 1;
      while (j < b.length && b[j] < 0x80) j++;
      if (j >= b.length || b[j] !== 0xf7 || j + 1 - i > 65536) return null;
      msgs.push(b.subarray(i, j + 1)); i = j + 1; continue;
    }
    const n = s >= 0x80 ? dataLen(s) : -1;
    if (n < 0 || i + 1 + n > b.length) return null;
    for (let k = 1; k <= n; k++) if (b[i + k] >= 0x80) return null;
    msgs.push(b.subarray(i, i + 1 + n)); i += 1 + n;
  }
  return { flags: b[1], origin, timeUs, msgs };
}

// ---- playing out ---------------------------------------------------------

/** Sends messages on `midi` and tracks what we hold for the keep-alive promise. @param {number[]} msgs */
function play(msgs) {
  for (let i = 0; i < msgs.length; ) {
    const s = msgs[i], st = s & 0xf0, ch = s & 0x0f;
    const n = dataLen(s);
    if (st === 0x90 && msgs[i + 2] > 0) state.held.add(`${ch}:${msgs[i + 1]}`);
    else if (st === 0x80 || st === 0x90) state.held.delete(`${ch}:${msgs[i + 1]}`);
    else if (st === 0xb0 && msgs[i + 1] === 64) state.sustainDown = msgs[i + 2] >= 64;
    synth.midi("me", msgs.slice(i, i + 1 + n));
    i += 1 + Math.max(n, 0);
  }
  midiOut(msgs);
  if (state.midi && state.midi.readyState === "open") {
    state.midi.send(midiFrame(msgs));
    state.lastSent = performance.now();
  }
}

/** The promise: a frame at least every 250 ms while anything we sent holds a note or pedal. */
function keepAlive() {
  if (!state.midi || state.midi.readyState !== "open") return;
  if ((state.held.size || state.sustainDown) && performance.now() - state.lastSent >= 180) {
    state.midi.send(midiFrame([]));
    state.lastSent = performance.now();
  }
}

/** Note Offs for everything we hold, pedal up: before leaving. */
function releaseOwn() {
  const msgs = [];
  for (const k of state.held) { const [ch, key] = k.split(":").map(Number); msgs.push(0x80 | ch, key, 64); }
  if (state.sustainDown) msgs.push(0xb0, 64, 0);
  if (msgs.length) play(msgs);
}

// ---- receiving ---------------------------------------------------------------

/** @param {MessageEvent} ev */
function onMidiMessage(ev) {
  if (!(ev.data instanceof ArrayBuffer)) { state.framesBad++; return; }
  const f = parseMidiFrame(new Uint8Array(ev.data));
  if (!f) { state.framesBad++; return; }
  state.framesIn++;
  state.lastFromHost = performance.now();
  if (f.flags & KEEPALIVE) state.hostPromised = true;
  const src = `p${f.origin}`;
  for (const m of f.msgs) {
    synth.midi(src, m);
    if ((m[0] & 0xf0) === 0x90 && m[2] > 0) state.remoteSounding.add(src);
    midiOut(Array.from(m));
  }
  const lat = f.timeUs > 0n ? Number(nowUs() - f.timeUs) / 1000 : null;
  if (lat !== null && f.msgs.length) jamPage.lastLatencyMs = lat;
  void RELEASE;
}

/** The host promised keep-alives and went silent for 1 s while its notes sound: release them (once). */
function checkStall() {
  if (state.hostPromised && state.remoteSounding.size && performance.now() - state.lastFromHost > 1000) {
    synth.releaseWhere((v) => v.src !== "me");
    state.remoteSounding.clear();
  }
}

/** @param {MessageEvent} ev */
function onControl(ev) {
  if (!(ev.data instanceof ArrayBuffer)) return;
  const b = new Uint8Array(ev.data);
  if (b.length < 4) return;
  const len = new DataView(b.buffer).getUint32(0);
  if (len !== b.length - 4) return;
  let msg;
  try { msg = JSON.parse(dec.decode(b.subarray(4))); } catch { return; }
  if (!msg || typeof msg !== "object") return;
  switch (msg.type) {
    case "sessionWelcome": welcomed(); break;
    case "joinrejected": fail(`The host turned this device away: ${msg.reason || "no reason given"}.`); break;
    case "sessionEnded":
      if (msg.restarting === true && state.phase === "joined") void rejoin();
      else hostGone("The host ended the jam.");
      break;
    case "peerList": {
      state.peers.clear();
      for (const p of Array.isArray(msg.peers) ? msg.peers.slice(0, 64) : []) addPeer(p);
      if (msg.host) { state.hostName = String(msg.host.displayName || ""); setJamName(state.hostName || state.jamName); }
      renderPeers();
      if (msg.host && Array.isArray(msg.host.features) && msg.host.features.includes("midi")) openMidi();
      break;
    }
    case "peerJoined": addPeer(msg.peer); renderPeers(); break;
    case "peerLeft":
      if (msg.peer && typeof msg.peer.id === "number") {
        state.peers.delete(msg.peer.id);
        synth.releaseWhere((v) => v.src === `p${msg.peer.id}`);
        renderPeers();
      }
      break;
    default: break;
  }
}

/** @param {any} p */
function addPeer(p) {
  if (!p || typeof p.id !== "number" || state.peers.size >= 64) return;
  state.peers.set(p.id, {
    id: p.id,
    displayName: String(p.displayName || "").slice(0, 64) || "(no name)",
    client: String(p.client || "").slice(0, 32),
    machineId: String(p.machineId || ""),
  });
}

const KINDS = /** @type {Record<string,string>} */ ({ midiEditor: "MidiEditor", thisApp: "MIDI Jam", browser: "Browser" });

function renderPeers() {
  const ul = $("people");
  ul.replaceChildren();
  const host = document.createElement("li");
  host.textContent = `${state.hostName || "Host"} (host)`;
  ul.append(host);
  for (const p of state.peers.values()) {
    const li = document.createElement("li");
    const you = p.machineId === state.machineId;
    li.textContent = `${p.displayName}${you ? " (you)" : ""}${KINDS[p.client] ? ` · ${KINDS[p.client]}` : ""}`;
    if (you) li.className = "you";
    ul.append(li);
  }
  $("people-count").textContent = String(state.peers.size + 1);
}

/** @param {string} name */
function setJamName(name) {
  $("jam-name").textContent = name || "MIDI Jam";
  document.title = name ? `${name} · Join the jam` : "Join the jam";
}

// ---- joining -----------------------------------------------------------------

function randomId(n = 16) {
  const a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-";
  const r = crypto.getRandomValues(new Uint8Array(n));
  return Array.from(r, (x) => a[x % 64]).join("");
}

/** A v4 UUID; crypto.randomUUID exists only in secure contexts. */
function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** @param {RTCPeerConnection} pc @param {number} ms */
function gathered(pc, ms) {
  return new Promise((res) => {
    if (pc.iceGatheringState === "complete") return res(undefined);
    const t = setTimeout(res, ms);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") { clearTimeout(t); res(undefined); }
    });
  });
}

/** @param {string} code @param {string} name */
async function join(code, name) {
  if (state.phase === "joining" || state.phase === "joined") return;
  problem("");
  state.phase = "joining";
  /** @type {HTMLButtonElement} */ ($("join")).disabled = true;
  status("Looking up the jam…");
  const session = await lookup(code);
  if (!session) { state.phase = "failed"; return; }
  state.code = code;
  state.jamName = session.displayName;
  setJamName(session.displayName);
  let ice = [];
  try {
    const c = await api("/join/config.json");
    if (c.body && Array.isArray(c.body.iceServers)) ice = c.body.iceServers;
  } catch { return fail(unreachable()); }
  status("Connecting…");
  const pc = new RTCPeerConnection({ iceServers: ice });
  state.pc = pc;
  const dc = pc.createDataChannel("midieditor", { ordered: true });
  dc.binaryType = "arraybuffer";
  state.dc = dc;
  state.machineId = localStorage.getItem("jam.machineId") || uuid();
  try { localStorage.setItem("jam.machineId", state.machineId); } catch { /* private mode */ }
  dc.onopen = () => {
    sendJson({ type: "hello", sessionId: session.sessionId, displayName: name, machineId: state.machineId, appVersion: VERSION, currentHead: "", historyTailHashes: [], client: CLIENT });
    state.timers.push(window.setInterval(() => sendJson({ type: "heartbeat" }), 10000));
  };
  dc.onmessage = onControl;
  dc.onclose = () => { if (state.phase === "joined" || state.phase === "joining") hostGone("The host closed the connection: the host left or ended the jam, or removed this device from it."); };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "failed") hostGone(state.phase === "joined" ? "Lost the connection to the host." : "Could not connect to the host's computer over this network.");
  };
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc, 3000);
  const joinerId = randomId();
  let posted;
  try {
    posted = await api(`/code/${code}/joiner-offer`, { method: "POST", headers: { "Content-Type": "text/plain" }, body: JSON.stringify({ joinerId, sdp: pc.localDescription?.sdp }) });
  } catch { return fail(unreachable()); }
  if (posted.status === 404) return fail(unknownCode(code));
  if (posted.status === 503) return fail("The jam is full. Ask someone to leave, or the host to allow more people.");
  if (posted.status !== 200) return fail(`The host refused to connect (${posted.body?.error || posted.status}).`);
  status("Waiting for the host to answer…");
  let answer = null;
  const giveUp = performance.now() + 60000;
  while (!answer && state.phase === "joining" && performance.now() < giveUp) {
    let r;
    const asked = performance.now();
    try { r = await api(`/code/${code}/host-answer/${joinerId}?wait=10000`, { timeout: 15000 }); } catch { return fail(unreachable()); }
    if (r.status === 200 && r.body?.sdp) answer = r.body.sdp;
    else if (r.status !== 404) return fail(`The rendezvous answered ${r.status}.`);
    // A rendezvous without the long-poll extension answers at once: poll
    // at MidiEditor's pace (750 ms) rather than in a tight loop.
    else if (performance.now() - asked < 500) await new Promise((res) => setTimeout(res, 750));
  }
  if (!answer) { if (state.phase === "joining") fail("The host did not answer within a minute. Is the jam still open on the host's screen?"); return; }
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  status("Saying hello…");
  state.timers.push(window.setTimeout(() => { if (state.phase === "joining") fail("The host did not let this device in (no welcome within 20 s)."); }, 20000));
}

function welcomed() {
  if (state.phase !== "joining") return;
  state.phase = "joined";
  status(`In the jam as ${/** @type {HTMLInputElement} */ ($("name")).value || "Phone"} · code ${state.code}`);
  $("join-form").hidden = true;
  $("jam").hidden = false;
  $("leave").hidden = false;
  renderPeers();
  history.replaceState(null, "", `${BASE}/join/${state.code}`);
  state.timers.push(window.setInterval(() => { keepAlive(); checkStall(); }, 50));
  // Only our host lists the `midi` feature; MidiEditor hosts a file, not live MIDI.
  state.timers.push(window.setTimeout(() => {
    if (state.phase === "joined" && !state.midi) status("Joined, but this host does not take live MIDI (it is MidiEditor, or an older MIDI Jam): what you play sounds only here.");
  }, 3000));
}

function openMidi() {
  if (state.midi || !state.pc) return;
  const ch = state.pc.createDataChannel("midi", { ordered: true });
  ch.binaryType = "arraybuffer";
  ch.onmessage = onMidiMessage;
  ch.onclose = () => synth.releaseWhere((v) => v.src !== "me");
  state.midi = ch;
}

function teardown() {
  for (const t of state.timers) { clearInterval(t); clearTimeout(t); }
  state.timers = [];
  try { state.pc?.close(); } catch { /* closed */ }
  state.pc = state.dc = state.midi = null;
  state.held.clear();
  state.peers.clear();
  synth.releaseAll();
}

/** @param {string} text */
function fail(text) {
  state.phase = "failed";
  teardown();
  status("Not connected");
  problem(text);
}

/** @param {string} text */
function hostGone(text) {
  if (state.phase === "left" || state.phase === "failed") return;
  state.phase = "failed";
  teardown();
  status("Not connected");
  problem(`${text} To join again, type the code shown on the host's screen.`);
}

/** Waits `ms`. @param {number} ms */
const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

/**
 * The host restarts the jam under the same code (a new song or settings on
 * its side) and said so in `sessionEnded`: join again by ourselves, with
 * the same name, a few times while it comes back (about 20 s in all).
 * Leaving meanwhile stops it; after the last try the reason is shown with
 * the code field, as for any failed join.
 */
async function rejoin() {
  const code = state.code;
  const name = /** @type {HTMLInputElement} */ ($("name")).value;
  releaseOwn();
  teardown();
  state.phase = "rejoining";
  state.rejoins++;
  status("The host is restarting the jam under the same code: joining again…");
  for (const wait of [500, 1000, 2000, 4000, 8000]) {
    await sleep(wait);
    if (state.phase !== "rejoining") return;
    state.phase = "idle";
    await join(code, name);
    // `join` returns once the host answered; the welcome follows.
    const until = performance.now() + 20000;
    while (state.phase === "joining" && performance.now() < until) await sleep(100);
    if (state.phase !== "failed") return;
    state.phase = "rejoining";
    status("The host is restarting the jam under the same code: joining again…");
  }
  state.phase = "failed";
  problem(`Could not join the restarted jam ${code}. To join again, type the code shown on the host's screen.`);
}

function leave() {
  if (state.phase === "rejoining") {
    state.phase = "left";
    status("You left the jam.");
    problem("");
    $("join-form").hidden = false;
    $("jam").hidden = true;
    $("leave").hidden = true;
    /** @type {HTMLButtonElement} */ ($("join")).disabled = false;
    return;
  }
  if (state.phase !== "joined" && state.phase !== "joining") return;
  releaseOwn();
  state.phase = "left";
  teardown();
  status("You left the jam.");
  problem("");
  $("join-form").hidden = false;
  $("jam").hidden = true;
  $("leave").hidden = true;
  /** @type {HTMLButtonElement} */ ($("join")).disabled = false;
}

// ---- keyboard ------------------------------------------------------------------

const NAMES = ["C", "C♯", "D", "D♯", "E", "F", "F♯", "G", "G♯", "A", "A♯", "B"];
const BLACK = new Set([1, 3, 6, 8, 10]);
let octave = 4;
/** Pointer id -> key it holds (a slide moves it). */
const pointers = new Map();
/** Computer key -> MIDI key it started. */
const pressedKeys = new Map();
/** How many sources hold each key down (pointer, computer key, MIDI in). */
const downCount = new Map();

function velocity() { return Number(/** @type {HTMLInputElement} */ ($("velocity")).value); }

/** @param {number} key @param {number} [vel] */
function keyDown(key, vel = velocity()) {
  downCount.set(key, (downCount.get(key) || 0) + 1);
  if (downCount.get(key) === 1) play([0x90, key, Math.max(1, Math.min(127, vel))]);
  paintKey(key);
}
/** @param {number} key */
function keyUp(key) {
  const n = (downCount.get(key) || 0) - 1;
  if (n > 0) { downCount.set(key, n); return; }
  downCount.delete(key);
  play([0x80, key, 64]);
  paintKey(key);
}
/** @param {number} key */
function paintKey(key) {
  const el = document.querySelector(`.key[data-key="${key}"]`);
  if (el) { el.classList.toggle("down", downCount.has(key)); el.setAttribute("aria-pressed", String(downCount.has(key))); }
}

function buildKeys() {
  const box = $("keys");
  box.replaceChildren();
  const count = box.clientWidth >= 640 || innerWidth >= 640 ? 25 : 17;
  const first = 12 * (octave + 1);
  const whites = [];
  for (let i = 0; i < count; i++) if (!BLACK.has(i % 12)) whites.push(i);
  const w = 100 / whites.length;
  let wi = 0;
  for (let i = 0; i < count; i++) {
    const key = first + i;
    const b = document.createElement("button");
    b.type = "button";
    b.className = BLACK.has(i % 12) ? "key black" : "key";
    b.dataset.key = String(key);
    const label = `${NAMES[key % 12]}${Math.floor(key / 12) - 1}`;
    b.setAttribute("aria-label", label);
    b.setAttribute("aria-pressed", "false");
    if (BLACK.has(i % 12)) { b.style.left = `${wi * w - w * 0.32}%`; b.style.width = `${w * 0.64}%`; }
    else { wi++; if (i % 12 === 0) { const s = document.createElement("span"); s.textContent = label; b.append(s); } }
    // Enter/space on a focused key plays it (screen readers and keyboards).
    b.addEventListener("keydown", (e) => { if ((e.key === "Enter" || e.key === " ") && !e.repeat) { e.preventDefault(); e.stopPropagation(); keyDown(key); } });
    b.addEventListener("keyup", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); e.stopPropagation(); keyUp(key); } });
    box.append(b);
  }
  $("octave").textContent = `C${octave}`;
}

/** The key under a point, black keys first (they lie on top). @param {number} x @param {number} y */
function keyAt(x, y) {
  const el = document.elementFromPoint(x, y);
  const k = el instanceof HTMLElement ? el.closest(".key") : null;
  return k instanceof HTMLElement ? Number(k.dataset.key) : null;
}

/** Velocity from where on the key the finger lands (higher up = softer), or the slider. @param {PointerEvent} e @param {number} key */
function touchVelocity(e, key) {
  if (e.pointerType !== "touch") return velocity();
  const el = document.querySelector(`.key[data-key="${key}"]`);
  if (!el) return velocity();
  const r = el.getBoundingClientRect();
  const f = Math.min(1, Math.max(0, (e.clientY - r.top) / r.height));
  return Math.round(40 + f * 87);
}

function wireKeys() {
  const box = $("keys");
  box.addEventListener("pointerdown", (e) => {
    const key = keyAt(e.clientX, e.clientY);
    if (key === null) return;
    e.preventDefault();
    box.setPointerCapture?.(e.pointerId);
    pointers.set(e.pointerId, key);
    keyDown(key, touchVelocity(e, key));
  });
  box.addEventListener("pointermove", (e) => {
    if (!pointers.has(e.pointerId)) return;
    const key = keyAt(e.clientX, e.clientY);
    const was = pointers.get(e.pointerId);
    if (key === null || key === was) return;
    pointers.set(e.pointerId, key);
    keyUp(was);
    keyDown(key, touchVelocity(e, key));
  });
  const up = (/** @type {PointerEvent} */ e) => {
    const was = pointers.get(e.pointerId);
    if (was === undefined) return;
    pointers.delete(e.pointerId);
    keyUp(was);
  };
  box.addEventListener("pointerup", up);
  box.addEventListener("pointercancel", up);
  box.addEventListener("lostpointercapture", up);
  box.addEventListener("contextmenu", (e) => e.preventDefault());

  const map = "awsedftgyhujkolp;'";
  document.addEventListener("keydown", (e) => {
    if (state.phase !== "joined" || e.repeat || e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLSelectElement) return;
    const k = e.key.toLowerCase();
    if (k === "z" || k === "x") { shiftOctave(k === "z" ? -1 : 1); return; }
    if (k === " " && !(t instanceof HTMLButtonElement)) { e.preventDefault(); setSustain(true); return; }
    const i = map.indexOf(k);
    if (i < 0 || pressedKeys.has(k)) return;
    const key = 12 * (octave + 1) + i;
    pressedKeys.set(k, key);
    keyDown(key);
  });
  document.addEventListener("keyup", (e) => {
    const k = e.key.toLowerCase();
    if (k === " " && !(e.target instanceof HTMLButtonElement)) { setSustain(false); return; }
    const key = pressedKeys.get(k);
    if (key === undefined) return;
    pressedKeys.delete(k);
    keyUp(key);
  });
  addEventListener("blur", () => { for (const [k, key] of pressedKeys) { pressedKeys.delete(k); keyUp(key); } });
}

/** @param {number} d */
function shiftOctave(d) {
  octave = Math.max(0, Math.min(8, octave + d));
  buildKeys();
}

/** @param {boolean} down */
function setSustain(down) {
  if (down === state.sustainDown) return;
  $("sustain").setAttribute("aria-pressed", String(down));
  play([0xb0, 64, down ? 127 : 0]);
}

// ---- Web MIDI ------------------------------------------------------------------

/** @type {any} */ let midiAccess = null;
/** @param {number[]} bytes */
function midiOut(bytes) {
  const id = /** @type {HTMLSelectElement} */ ($("midi-out")).value;
  const port = id && midiAccess ? midiAccess.outputs.get(id) : null;
  if (port) try { port.send(bytes); } catch { /* unplugged */ }
}

async function setupMidi() {
  const note = $("midi-note");
  if (!window.isSecureContext) {
    note.textContent = `MIDI devices are not available on this page: browsers allow Web MIDI only on secure pages (https:// or localhost), and this page comes over plain http:// from ${hostAddr()} on your network. Play with the keys above; the sound is on this device.`;
    return;
  }
  if (!("requestMIDIAccess" in navigator)) { note.textContent = "This browser has no Web MIDI (Safari and Firefox on iOS do not): play with the keys above."; return; }
  note.textContent = "Pick a MIDI device to play into the jam or to hear the jam on.";
  try {
    midiAccess = await /** @type {any} */ (navigator).requestMIDIAccess({ sysex: false });
  } catch {
    note.textContent = "MIDI access was refused in this browser's permissions.";
    return;
  }
  const out = /** @type {HTMLSelectElement} */ ($("midi-out"));
  const inp = /** @type {HTMLSelectElement} */ ($("midi-in"));
  const fill = () => {
    for (const [sel, ports] of [[out, midiAccess.outputs], [inp, midiAccess.inputs]]) {
      const keep = sel.value;
      sel.replaceChildren(new Option("None", ""));
      for (const p of ports.values()) sel.append(new Option(p.name, p.id));
      sel.value = keep;
      sel.disabled = false;
    }
  };
  fill();
  midiAccess.onstatechange = fill;
  let current = null;
  inp.onchange = () => {
    if (current) current.onmidimessage = null;
    current = inp.value ? midiAccess.inputs.get(inp.value) : null;
    if (current) current.onmidimessage = (/** @type {any} */ e) => {
      const d = Array.from(/** @type {Uint8Array} */ (e.data));
      if (state.phase === "joined" && d.length && d[0] >= 0x80 && d[0] < 0xf0) play(d);
    };
  };
}

// ---- start ---------------------------------------------------------------------

function codeFromUrl() {
  const q = new URLSearchParams(location.search).get("code");
  const m = location.pathname.match(/\/join\/([A-Za-z0-9]+)\/?$/);
  return (q || (m && m[1]) || "").toUpperCase();
}

function init() {
  const codeIn = /** @type {HTMLInputElement} */ ($("code"));
  const nameIn = /** @type {HTMLInputElement} */ ($("name"));
  const params = new URLSearchParams(location.search);
  nameIn.value = params.get("name") || localStorage.getItem("jam.name") || "Phone";
  const code = codeFromUrl();
  codeIn.value = code;
  const preset = /** @type {HTMLSelectElement} */ ($("preset"));
  PRESETS.forEach((p, i) => preset.append(new Option(p.name, String(i))));
  preset.onchange = () => synth.setPreset(Number(preset.value));
  const vol = /** @type {HTMLInputElement} */ ($("volume"));
  vol.oninput = () => synth.setVolume(Number(vol.value) / 100);
  $("oct-down").onclick = () => shiftOctave(-1);
  $("oct-up").onclick = () => shiftOctave(1);
  $("sustain").onclick = () => setSustain(!state.sustainDown);
  $("panic").onclick = () => { releaseOwn(); synth.releaseAll(); };
  $("leave").onclick = leave;
  $("join-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const c = codeIn.value.trim().toUpperCase();
    const n = nameIn.value.trim().slice(0, 40) || "Phone";
    try { localStorage.setItem("jam.name", n); } catch { /* private mode */ }
    synth.start(); // inside the tap: browsers start audio only on a gesture
    join(c, n).catch((err) => fail(`Joining failed: ${err && err.message ? err.message : err}`));
  });
  buildKeys();
  wireKeys();
  addEventListener("resize", () => { if ($("keys").children.length !== ((innerWidth >= 640) ? 25 : 17)) buildKeys(); });
  // Closing the page is leaving: release what we hold and close the
  // connection so the host drops us at once (not after a timeout).
  addEventListener("pagehide", () => { if (state.phase === "joined") { releaseOwn(); teardown(); } });
  setupMidi();
  if (code) {
    status("Checking the code…");
    lookup(code).then((s) => {
      if (s) { setJamName(s.displayName); status(`Jam found. Tap "Join and play" to join with sound.`); }
      else status("Not connected");
    });
  } else {
    status("Type the code to join.");
    codeIn.focus();
  }
}

// What tests (and curious people in the console) read.
const jamPage = {
  state,
  lastLatencyMs: /** @type {number|null} */ (null),
  voices: () => synth.voiceCount(),
  level: () => synth.level(),
  audioState: () => synth.ctx?.state || "none",
  peers: () => [...state.peers.values()].map((p) => p.displayName),
  phase: () => state.phase,
  problem: () => ($("problem").hidden ? "" : $("problem").textContent),
  press: keyDown,
  release: keyUp,
};

/** @type {any} */ (window).jamPage = jamPage;
init();
