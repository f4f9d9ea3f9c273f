"""Synthetic music: songs with 4 stems (drums, bass, chords, melody), generated from note events, in numpy.

Each song draws (from ``seed`` and its index) a tempo (80–140 bpm), a key (any root, major or minor), a
four-bar chord progression, per-stem rhythm patterns, band-limited harmonic timbres (wavetables), ADSR
envelopes, levels and stereo pans. Drums are synthesised kick / snare / hi-hat hits. Audio is rendered on demand
for just the window asked for, and a window is sample-identical to the same span of the whole song, so songs
cost no memory and any segment is cheap (10 s of 4-stem 16 kHz audio in a few ms; see
benchmarks/bench_data.py).
"""

import math

import numpy as np

from trackformer.data.audio import check_channels, check_rate
from trackformer.data.songs import Song, SongCollection

STEMS = ("drums", "bass", "chords", "melody")
_TABLE = 4096  # wavetable length (power of two: phase wrap is a bit mask)
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (1, 4, 0, 5), (0, 3, 4, 3), (5, 3, 0, 4), (0, 6, 5, 4), (0, 3, 0, 4))
_BASS_PATTERNS = ((0, 2), (0, 1, 2, 3), (0, 1.5, 2, 3), (0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5), (0, 0.75, 2, 2.5))
_CHORD_PATTERNS = ((0,), (0, 2), (0, 1, 2, 3), (0.5, 1.5, 2.5, 3.5), (0, 1.5, 3))
_KICK_PATTERNS = ((0, 2), (0, 2.5), (0, 1.5, 2), (0, 1, 2, 3), (0, 0.75, 2, 2.5))


def midi_hz(m):
    """MIDI note number → frequency in Hz."""
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=np.float64) - 69.0) / 12.0)


class _Voice:
    """A pitched stem: note events (sample onsets, lengths, Hz, amplitudes) and a timbre; ``render`` adds the
    notes overlapping a window into a mono buffer."""

    def __init__(self, rng, sr, harmonics, attack, decay, sustain, release):
        self.sr = sr
        n = np.arange(1, len(harmonics) + 1)
        k = np.arange(_TABLE) * (2 * np.pi / _TABLE)
        partials = np.asarray(harmonics)[:, None] * np.sin(n[:, None] * k[None, :] + rng.uniform(0, 2 * np.pi,
                                                                                                 (len(n), 1)))
        tables = np.cumsum(partials, axis=0)  # tables[h-1] holds harmonics 1..h: pick h below Nyquist per note
        self.tables = (tables / np.abs(tables).max(axis=1, keepdims=True)).astype(np.float32)
        self.attack, self.decay, self.sustain, self.release = attack, decay, sustain, release
        self.onsets, self.lengths, self.hz, self.amps = [], [], [], []

    def add(self, onset_s, length_s, midi, amp):
        self.onsets.append(round(onset_s * self.sr))
        self.lengths.append(max(1, round(length_s * self.sr)))
        self.hz.append(float(midi_hz(midi)))
        self.amps.append(amp)

    def finish(self):
        self.onsets, self.lengths = np.asarray(self.onsets, np.int64), np.asarray(self.lengths, np.int64)
        self.hz, self.amps = np.asarray(self.hz), np.asarray(self.amps)
        self.tail = round(5 * self.release * self.sr)  # samples rendered after a note's release starts

    def render(self, out, w0):
        w1 = w0 + len(out)
        for i in np.flatnonzero((self.onsets < w1) & (self.onsets + self.lengths + self.tail > w0)):
            o, n, f = self.onsets[i], self.lengths[i], self.hz[i]
            a, b = max(o, w0), min(o + n + self.tail, w1)
            s = np.arange(a - o, b - o)
            t = s / self.sr
            h = min(len(self.tables), max(1, int(0.45 * self.sr / f)))
            wave = self.tables[h - 1][(s * (f * _TABLE / self.sr)).astype(np.int64) & (_TABLE - 1)]
            env = np.minimum(t / self.attack, 1.0) * (self.sustain + (1 - self.sustain) * np.exp(-t / self.decay))
            rel = s >= n
            env[rel] *= np.exp(-(s[rel] - n) / (self.release * self.sr))
            out[a - w0:b - w0] += (self.amps[i] * env * wave).astype(np.float32)


class SynthSong(Song):
    """One synthetic song (see module doc). Events are planned on first use; audio is rendered per window."""

    def __init__(self, name: str, seed_key: tuple, *, seconds: float, sample_rate: int, channels: int):
        self.name, self.stem_names = name, list(STEMS)
        self.meta = {"artist": "synthetic", "song": name, "genre": "synthetic"}
        self.sample_rate, self.channels = sample_rate, channels
        self._frames = round(seconds * sample_rate)
        self._seed_key = seed_key
        self._plan = None

    @property
    def num_frames(self) -> int:
        return self._frames

    @property
    def plan(self) -> dict:
        """The song's musical facts (tempo, key, mode, progression) and renderers; drawn once, deterministic."""
        if self._plan is None:
            self._plan = _plan_song(np.random.default_rng(self._seed_key), self.sample_rate,
                                    self._frames / self.sample_rate)
        return self._plan

    def _load(self, start: int, frames: int) -> np.ndarray:
        plan = self.plan
        out = np.zeros((len(STEMS), 2, frames), dtype=np.float32)
        n = max(0, min(frames, self._frames - start))  # the song is silent past its end
        if n:
            _render_drums(plan["drums"], out[0, :, :n], start)
            for k, name in enumerate(STEMS[1:], start=1):
                mono = np.zeros(n, dtype=np.float32)
                plan[name].render(mono, start)
                out[k, :, :n] = mono * plan["pans"][k][:, None]
        if self.channels == 1:
            return out.mean(axis=1, keepdims=True)
        return out


def _pan(p):
    """Constant-power (left, right) gains for a pan position p in [-1, 1]."""
    angle = (p + 1) * np.pi / 4
    return np.array([np.cos(angle), np.sin(angle)], dtype=np.float32) * np.float32(np.sqrt(2))


def _drum_kit(rng, sr):
    """Per-song kick, snare, closed hat (mono float32 templates)."""
    def t_of(sec):
        return np.arange(round(sec * sr)) / sr
    t = t_of(0.35)
    f0, f1 = rng.uniform(110, 170), rng.uniform(40, 60)
    phase = 2 * np.pi * (f1 * t + (f0 - f1) * 0.04 * (1 - np.exp(-t / 0.04)))
    kick = np.sin(phase) * np.exp(-t / rng.uniform(0.08, 0.16))
    t = t_of(0.25)
    noise = rng.standard_normal(len(t))
    noise = noise - 0.6 * np.concatenate([[0.0], noise[:-1]])  # tilt towards highs
    snare = (0.7 * noise * np.exp(-t / rng.uniform(0.04, 0.08))
             + 0.5 * np.sin(2 * np.pi * rng.uniform(160, 240) * t) * np.exp(-t / 0.05))
    t = t_of(0.08)
    hiss = np.diff(rng.standard_normal(len(t) + 1))  # first difference: a crude high-pass
    hat = hiss * np.exp(-t / rng.uniform(0.01, 0.025))
    return [(x / np.abs(x).max()).astype(np.float32) for x in (kick, snare, hat)]


def _render_drums(drums, out, w0):
    """Adds the drum hits overlapping window [w0, w0 + out.shape[1]) into stereo ``out``."""
    w1 = w0 + out.shape[1]
    for kind, template in enumerate(drums["kit"]):
        onsets, amps = drums["onsets"][kind], drums["amps"][kind]
        gain = drums["pans"][kind][:, None]
        for i in np.flatnonzero((onsets < w1) & (onsets + len(template) > w0)):
            o = onsets[i]
            a, b = max(o, w0), min(o + len(template), w1)
            out[:, a - w0:b - w0] += amps[i] * gain * template[a - o:b - o]


def _plan_song(rng, sr, seconds):
    bpm = rng.uniform(80, 140)
    beat = 60.0 / bpm
    bars = math.ceil(seconds / (4 * beat))
    root = int(rng.integers(0, 12))
    minor = bool(rng.random() < 0.4)
    scale = _MINOR if minor else _MAJOR
    prog = _PROGRESSIONS[rng.integers(len(_PROGRESSIONS))]
    swing = rng.uniform(0.0, 0.004)  # timing jitter, seconds

    def degree_midi(deg, base):
        """MIDI pitch of scale degree ``deg`` (may exceed 6 or be negative) above MIDI ``base`` (a root)."""
        octave, d = divmod(deg, 7)
        return base + 12 * octave + scale[d]

    def when(bar, beat_pos):
        return (4 * bar + beat_pos) * beat + rng.normal(0, swing)

    # bass: harmonic-poor, plucked envelope, root (sometimes fifth) of each chord in octave 2
    bass = _Voice(rng, sr, rng.uniform(0.3, 0.6) ** np.arange(8), 0.005, rng.uniform(0.15, 0.4),
                  rng.uniform(0.3, 0.7), 0.05)
    bass_pat = _BASS_PATTERNS[rng.integers(len(_BASS_PATTERNS))]
    bass_root = 33 + (root - 9) % 12  # between A1 and G#2
    # chords: soft pad or organ-like, slow attack, three or four voices around middle C
    chords = _Voice(rng, sr, 1.0 / np.arange(1, 13) ** rng.uniform(1.3, 2.5), rng.uniform(0.02, 0.12),
                    rng.uniform(0.3, 1.0), rng.uniform(0.5, 0.8), rng.uniform(0.08, 0.2))
    chord_pat = _CHORD_PATTERNS[rng.integers(len(_CHORD_PATTERNS))]
    sevenths = bool(rng.random() < 0.4)
    chord_root = 48 + root
    # melody: bright (saw-like or square-like), short attack, scale random walk in octave 5
    n = np.arange(1, 21)
    melody_h = 1.0 / n if rng.random() < 0.5 else np.where(n % 2 == 1, 1.0 / n, 0.05 / n)
    melody = _Voice(rng, sr, melody_h, rng.uniform(0.005, 0.02), rng.uniform(0.2, 0.6), rng.uniform(0.4, 0.8),
                    rng.uniform(0.04, 0.1))
    durations = np.array([0.5, 1.0, 1.0, 1.5, 2.0]) * (0.5 if rng.random() < 0.3 else 1.0)
    melody_root = 72 + root if root < 6 else 60 + root
    deg = 0
    kick_pat = _KICK_PATTERNS[rng.integers(len(_KICK_PATTERNS))]
    hat_step = 0.25 if rng.random() < 0.3 else 0.5
    hits = [[], [], []]
    for bar in range(bars):
        chord_deg = prog[bar % len(prog)]
        for p in bass_pat:
            interval = 4 if (p == 2 and rng.random() < 0.3) else 0  # the fifth on beat 3, sometimes
            bass.add(when(bar, p), 0.9 * beat * min(1.0, 4 - p), degree_midi(chord_deg + interval, bass_root),
                     rng.uniform(0.6, 0.9))
        voicing = (0, 2, 4, 6) if sevenths else (0, 2, 4)
        length = 4.0 / len(chord_pat) if len(chord_pat) > 1 else 4.0
        for p in chord_pat:
            for v in voicing:
                chords.add(when(bar, p), 0.95 * beat * length, degree_midi(chord_deg + v, chord_root),
                           rng.uniform(0.2, 0.3))
        pos = 0.0
        while pos < 4.0:
            d = float(min(rng.choice(durations), 4.0 - pos))
            if rng.random() > 0.15:  # else a rest
                if pos == 0.0:
                    deg = chord_deg + int(rng.choice([0, 2, 4]))  # a chord tone on the downbeat
                else:
                    deg += int(rng.choice([-2, -1, -1, 1, 1, 2, 0]))
                deg = int(np.clip(deg, -3, 11))
                melody.add(when(bar, pos), 0.9 * beat * d, degree_midi(deg, melody_root), rng.uniform(0.5, 0.8))
            pos += d
        for p in kick_pat:
            hits[0].append((when(bar, p), rng.uniform(0.8, 1.0)))
        for p in (1, 3):
            hits[1].append((when(bar, p), rng.uniform(0.6, 0.8)))
        for p in np.arange(0, 4, hat_step):
            hits[2].append((when(bar, p), rng.uniform(0.2, 0.35) * (1.3 if p % 1 == 0 else 1.0)))
    for v in (bass, chords, melody):
        v.finish()
    levels = 10 ** (rng.uniform([-4, -6, -8, -6], [-1, -2, -4, -2]) / 20) * 0.3
    bass.amps *= levels[1]
    chords.amps *= levels[2]
    melody.amps *= levels[3]
    drums = {
        "kit": _drum_kit(rng, sr),
        "onsets": [np.array([max(0, round(t * sr)) for t, _ in h], np.int64) for h in hits],
        "amps": [np.array([a for _, a in h], np.float32) * np.float32(levels[0]) for h in hits],
        "pans": [_pan(0.0), _pan(rng.uniform(-0.15, 0.15)), _pan(rng.uniform(-0.5, 0.5))],
    }
    pans = [None, _pan(rng.uniform(-0.1, 0.1)), _pan(rng.uniform(-0.6, 0.6)), _pan(rng.uniform(-0.4, 0.4))]
    return {"bpm": bpm, "key": root, "minor": minor, "progression": prog, "drums": drums, "bass": bass,
            "chords": chords, "melody": melody, "pans": pans}


class SyntheticMusic(SongCollection):
    """``n_songs`` synthetic 4-stem songs of ``seconds`` each (see module doc). Song i depends only on
    (``seed``, i): the same every run, and a larger ``n_songs`` adds songs without changing the first ones."""

    def __init__(self, n_songs: int, *, seconds: float, sample_rate: int, channels: int = 2, seed: int = 0):
        if isinstance(n_songs, bool) or not isinstance(n_songs, int) or n_songs < 0:
            raise ValueError(f"n_songs must be a non-negative int, got {n_songs!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if not seconds > 0 or not math.isfinite(seconds):
            raise ValueError(f"seconds must be a positive number, got {seconds!r}")
        self.sample_rate = check_rate("sample_rate", sample_rate)
        self.channels = check_channels(channels)
        self.skipped = []
        self.songs = [SynthSong(f"synth-{seed}-{i:05d}", (seed, i), seconds=seconds, sample_rate=self.sample_rate,
                                channels=self.channels) for i in range(n_songs)]
