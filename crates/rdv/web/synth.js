// A small polyphonic WebAudio synth for the join page. No samples (the page
// must stay small and work offline): each voice is one or two oscillators
// through a filter and an envelope. Voices are keyed by who played them
// (source), channel and key, so two players on the same key do not cut each
// other off, and a peer leaving releases only its own notes.

/** @typedef {{name:string, waves:OscillatorType[], detune:number[], attack:number, decay:number, sustain:number, release:number, cutoff:number, gain:number}} Preset */

/** @type {Preset[]} */
export const PRESETS = [
  { name: "Soft piano", waves: ["triangle", "sine"], detune: [0, 1200], attack: 0.005, decay: 1.2, sustain: 0.0, release: 0.3, cutoff: 3500, gain: 0.5 },
  { name: "Electric piano", waves: ["sine", "sine"], detune: [0, 2400], attack: 0.003, decay: 0.9, sustain: 0.25, release: 0.4, cutoff: 5000, gain: 0.45 },
  { name: "Organ", waves: ["sine", "square"], detune: [0, 1200], attack: 0.01, decay: 0.05, sustain: 0.9, release: 0.08, cutoff: 2500, gain: 0.22 },
  { name: "Warm pad", waves: ["sawtooth", "sawtooth"], detune: [-7, 7], attack: 0.25, decay: 0.4, sustain: 0.7, release: 0.9, cutoff: 1400, gain: 0.22 },
];

/** Most voices at once; the oldest is stolen past it (a phone has little CPU). */
export const MAX_VOICES = 32;

/** @param {number} key */
const freq = (key) => 440 * Math.pow(2, (key - 69) / 12);

export class Synth {
  constructor() {
    /** @type {AudioContext|null} */ this.ctx = null;
    /** @type {GainNode|null} */ this.master = null;
    /** @type {AnalyserNode|null} */ this.analyser = null;
    /** @type {Map<string, {oscs:OscillatorNode[], env:GainNode, preset:Preset, held:boolean, sustained:boolean, ch:number, src:string, started:number}>} */
    this.voices = new Map();
    /** Preset index per MIDI channel (program change picks one). */
    this.program = new Array(16).fill(0);
    /** Channel volume (CC 7), 0..1. */
    this.chanVol = new Array(16).fill(1);
    /** Sustain pedal per source and channel. */
    /** @type {Set<string>} */ this.pedal = new Set();
    this.volume = 0.8;
  }

  /** Must run inside a user gesture (the join tap): browsers keep audio off until then. */
  start() {
    if (!this.ctx) {
      const AC = window.AudioContext || /** @type {any} */ (window).webkitAudioContext;
      this.ctx = new AC({ latencyHint: "interactive" });
      const comp = this.ctx.createDynamicsCompressor();
      this.master = this.ctx.createGain();
      this.master.gain.value = this.volume;
      this.analyser = this.ctx.createAnalyser();
      this.analyser.fftSize = 512;
      this.master.connect(comp);
      comp.connect(this.analyser);
      this.analyser.connect(this.ctx.destination);
    }
    if (this.ctx.state !== "running") this.ctx.resume().catch(() => {});
  }

  /** @param {number} v 0..1 */
  setVolume(v) {
    this.volume = v;
    if (this.master && this.ctx) this.master.gain.setTargetAtTime(v, this.ctx.currentTime, 0.02);
  }

  /** @param {number} i */
  setPreset(i) {
    this.program.fill(((i % PRESETS.length) + PRESETS.length) % PRESETS.length);
  }

  /** Voices sounding (held, sustained or still in their release). */
  voiceCount() {
    return this.voices.size;
  }

  /** RMS level at the output, 0..1: what a test (or a meter) reads. */
  level() {
    if (!this.analyser) return 0;
    const buf = new Float32Array(this.analyser.fftSize);
    this.analyser.getFloatTimeDomainData(buf);
    let s = 0;
    for (const x of buf) s += x * x;
    return Math.sqrt(s / buf.length);
  }

  /**
   * Applies one MIDI message (canonical bytes) played by `src`.
   * @param {string} src @param {number[]|Uint8Array} m
   */
  midi(src, m) {
    const st = m[0] & 0xf0, ch = m[0] & 0x0f;
    if (st === 0x90 && m[2] > 0) this.noteOn(src, ch, m[1], m[2]);
    else if (st === 0x80 || st === 0x90) this.noteOff(src, ch, m[1]);
    else if (st === 0xb0) {
      if (m[1] === 64) this.sustain(src, ch, m[2] >= 64);
      else if (m[1] === 7) this.chanVol[ch] = m[2] / 127;
      else if (m[1] === 120 || m[1] === 123) this.releaseWhere((v) => v.src === src && v.ch === ch, m[1] === 120);
      else if (m[1] === 121) this.sustain(src, ch, false);
    } else if (st === 0xc0) this.program[ch] = m[1] % PRESETS.length;
    else if (m[0] === 0xff) this.releaseWhere((v) => v.src === src, true);
  }

  /** @param {string} src @param {number} ch @param {number} key @param {number} vel */
  noteOn(src, ch, key, vel) {
    if (!this.ctx || !this.master) return;
    const id = `${src}:${ch}:${key}`;
    const old = this.voices.get(id);
    if (old) this.stop(id, old, 0.01);
    if (this.voices.size >= MAX_VOICES) {
      /** @type {[string, any] | null} */
      let oldest = null;
      for (const [k, v] of this.voices) if (!oldest || v.started < oldest[1].started) oldest = [k, v];
      if (oldest) this.stop(oldest[0], oldest[1], 0.01);
    }
    const ctx = this.ctx, t = ctx.currentTime;
    const p = PRESETS[this.program[ch]];
    const filter = ctx.createBiquadFilter();
    filter.type = "lowpass";
    filter.frequency.value = p.cutoff * (0.6 + vel / 200);
    const env = ctx.createGain();
    const peak = p.gain * (vel / 127) * this.chanVol[ch];
    env.gain.setValueAtTime(0, t);
    env.gain.linearRampToValueAtTime(peak, t + p.attack);
    env.gain.setTargetAtTime(peak * p.sustain, t + p.attack, p.decay / 3);
    filter.connect(env);
    env.connect(this.master);
    const oscs = p.waves.map((w, i) => {
      const o = ctx.createOscillator();
      o.type = w;
      o.frequency.value = freq(key);
      o.detune.value = p.detune[i] || 0;
      const g = ctx.createGain();
      g.gain.value = i === 0 ? 1 : 0.3;
      o.connect(g);
      g.connect(filter);
      o.start(t);
      return o;
    });
    this.voices.set(id, { oscs, env, preset: p, held: true, sustained: false, ch, src, started: t });
    // A decaying preset (sustain 0) frees its voice once silent, even while held.
    if (p.sustain === 0) {
      const end = t + p.attack + p.decay * 2.5;
      oscs[0].onended = null;
      for (const o of oscs) o.stop(end);
      oscs[0].onended = () => { if (this.voices.get(id)?.oscs === oscs) this.voices.delete(id); };
    }
  }

  /** @param {string} src @param {number} ch @param {number} key */
  noteOff(src, ch, key) {
    const id = `${src}:${ch}:${key}`;
    const v = this.voices.get(id);
    if (!v || !v.held) return;
    v.held = false;
    if (this.pedal.has(`${src}:${ch}`)) v.sustained = true;
    else this.stop(id, v, v.preset.release);
  }

  /** @param {string} src @param {number} ch @param {boolean} down */
  sustain(src, ch, down) {
    const k = `${src}:${ch}`;
    if (down) { this.pedal.add(k); return; }
    this.pedal.delete(k);
    for (const [id, v] of this.voices) if (v.sustained && v.src === src && v.ch === ch) this.stop(id, v, v.preset.release);
  }

  /**
   * Ends every voice `pred` selects (a peer left, all notes off).
   * @param {(v: {src:string, ch:number}) => boolean} pred @param {boolean} [hard]
   */
  releaseWhere(pred, hard = false) {
    for (const [id, v] of this.voices) if (pred(v)) this.stop(id, v, hard ? 0.01 : v.preset.release);
    for (const k of [...this.pedal]) if (pred({ src: k.split(":")[0], ch: Number(k.split(":")[1]) })) this.pedal.delete(k);
  }

  /** Ends every voice (leaving, the host gone). */
  releaseAll() {
    this.releaseWhere(() => true);
  }

  /** @param {string} id @param {any} v @param {number} release */
  stop(id, v, release) {
    if (!this.ctx) return;
    const t = this.ctx.currentTime;
    v.held = false;
    v.sustained = false;
    v.env.gain.cancelScheduledValues(t);
    v.env.gain.setValueAtTime(v.env.gain.value, t);
    v.env.gain.setTargetAtTime(0, t, release / 4);
    const end = t + release + 0.05;
    for (const o of v.oscs) {
      try { o.stop(end); } catch { /* already stopped */ }
    }
    v.oscs[0].onended = () => { if (this.voices.get(id) === v) this.voices.delete(id); };
  }
}
