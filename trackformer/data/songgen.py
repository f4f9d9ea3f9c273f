"""Procedurally generated multi-instrument songs, rendered through a General-MIDI SoundFont.

A song (from a seed) has a tempo of 70-160 bpm, a key, a major or minor mode, a chord progression of four bars
repeated over the song, and 2-6 stems chosen from: drums (GM kit, channel 10), bass, chords (comping in one of
several rhythms), lead (a phrase-structured melody on chord tones and scale steps), pad (sustained voicings),
arpeggio, counter-melody. Each stem draws a GM program from its role's list, a velocity level and a stereo
position; note onsets are humanised by a few milliseconds and each stem is detuned by up to ±0.15 semitone
(pitch variation at render time). Stems are rendered one at a time (:func:`trackformer.data.sfsynth.render_part`),
set to a per-stem level drawn in a 12 dB range, and the song scaled so its mixture peaks at 0.8. With
``effects=True`` each stem first goes through an effect chain a band's track would have (amp distortion,
EQ, compression, reverb, stereo width: :mod:`trackformer.data.effects`), drawn per stem kind from the song
seed and the role, and the mix through bus compression (glue and a limiter) whose one gain curve multiplies
every stem: the stems stay the true sources of the mixture. Without it (the default) every seed renders exactly
as before effects existed.

:func:`render_songs` writes songs in the MoisesDB layout (``trackformer data render-songs``). The same seed
and soundfont always give the same song. Train and test sets differ by seed namespace *and* soundfont: the
project's held-out test set (``--split test``) uses seeds no training set uses, and a soundfont (MuseScore
General, Debian ``musescore-general-soundfont``) that no training preset renders with; training sets render
with :data:`trackformer.data.render.TRAINING_SOUNDFONTS`.
"""

import dataclasses
import json
import os
import time
import zlib

import numpy as np

from trackformer.data.effects import bus_compression, effect_chain, stem_kind
from trackformer.data.moisesdb import commit_song, remove_stale_temp, write_song
from trackformer.data.sfsynth import Note, render_part

PEAK = 0.8
EFFECTS_STREAM = 0xEFFEC7  # the effect draws' own seed stream: the musical plan is the same with or without
SPLITS = {"train": 0, "test": 1}  # seed namespaces: a test song never shares a seed with a training song
ROLES = ("drums", "bass", "chords", "lead", "pad", "arpeggio", "counter")
# role -> GM programs (0-based) it may be played by
PROGRAMS = {
    "bass": (32, 33, 34, 35, 36, 37, 38, 39, 43, 58),
    "chords": (0, 1, 2, 4, 5, 16, 17, 18, 24, 25, 26, 27, 28, 29, 30, 6),
    "lead": (73, 72, 71, 68, 64, 65, 66, 56, 40, 80, 81, 11, 13, 22, 74, 82, 84, 87, 61, 69),
    "pad": (48, 49, 50, 51, 52, 53, 88, 89, 90, 91, 94, 19, 20),
    "arpeggio": (46, 12, 8, 10, 9, 45, 25, 104, 105, 108, 98),
    "counter": (42, 41, 70, 57, 60, 67, 71, 21),
}
ROLE_PROBABILITY = {"drums": 0.85, "bass": 0.85, "chords": 0.85, "lead": 0.85, "pad": 0.35, "arpeggio": 0.3,
                    "counter": 0.25}
OCTAVE_BASE = {"bass": 36, "chords": 55, "lead": 67, "pad": 52, "arpeggio": 60, "counter": 60}
MAJOR, MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)
PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (1, 4, 0, 0), (0, 3, 4, 3), (5, 3, 0, 4), (0, 3, 0, 4),
                (0, 6, 5, 4), (0, 2, 3, 4), (3, 4, 2, 5), (0, 0, 3, 4))
KICK, SNARE, CLOSED_HAT, OPEN_HAT, CRASH, RIDE, TOM_LOW, TOM_HIGH, CLAP, RIM = 36, 38, 42, 46, 49, 51, 45, 48, 39, 37


@dataclasses.dataclass
class Part:
    """One stem of a song: its role, GM program (None for drums), notes, pan, tuning and relative level (dB)."""

    role: str
    program: int | None
    notes: list[Note]
    pan: float
    tuning: float
    level_db: float


def _chord(degree: int, scale: tuple, seventh: bool) -> list[int]:
    """Pitch classes (relative to the key) of the diatonic triad or seventh chord on ``degree`` (0-based)."""
    steps = (0, 2, 4, 6) if seventh else (0, 2, 4)
    return [scale[(degree + s) % 7] + 12 * ((degree + s) // 7) for s in steps]


def _human(rng, t: float) -> float:
    return max(0.0, t + float(rng.normal(0.0, 0.006)))


def _drums(rng, bars: int, beat: float) -> list[Note]:
    style = int(rng.integers(4))
    hat_div = int(rng.choice((2, 4)))  # hi-hats per beat
    base = int(rng.integers(70, 110))
    notes = []

    def hit(t, pitch, accent=0):
        vel = int(np.clip(base + accent + rng.integers(-10, 11), 20, 127))
        t = _human(rng, t)
        notes.append(Note(t, t + 0.1, pitch, vel))

    for bar in range(bars):
        t0 = bar * 4 * beat
        if bar % 8 == 0:
            hit(t0, CRASH, 10)
        for b in range(4):
            tb = t0 + b * beat
            if style == 0:  # rock: kick 1 and 3, snare 2 and 4
                if b in (0, 2):
                    hit(tb, KICK, 10)
                if b in (1, 3):
                    hit(tb, SNARE, 5)
            elif style == 1:  # four on the floor with claps
                hit(tb, KICK, 10)
                if b in (1, 3):
                    hit(tb, CLAP)
                hit(tb + beat / 2, OPEN_HAT, -15)
            elif style == 2:  # syncopated funk kick
                if b == 0 or (b == 2 and rng.random() < 0.7):
                    hit(tb, KICK, 10)
                if b == 1 or rng.random() < 0.3:
                    hit(tb + beat / 2, KICK, 0)
                if b in (1, 3):
                    hit(tb, SNARE, 5)
            else:  # half-time with ride
                if b == 0:
                    hit(tb, KICK, 10)
                if b == 2:
                    hit(tb, SNARE, 8)
                hit(tb, RIDE, -10)
            if style != 3:
                for h in range(hat_div):
                    hit(tb + h * beat / hat_div, CLOSED_HAT, -20 if h else -10)
        if bar % 4 == 3 and rng.random() < 0.5:  # a fill into the next phrase
            for i, pitch in enumerate((TOM_HIGH, TOM_HIGH, TOM_LOW, TOM_LOW)):
                hit(t0 + 3 * beat + i * beat / 4, pitch, 0)
    return notes


def _bass(rng, bars, beat, key, chords, scale) -> list[Note]:
    pattern = int(rng.integers(4))
    base = int(rng.integers(75, 110))
    notes = []
    for bar in range(bars):
        root = OCTAVE_BASE["bass"] + key + chords[bar % len(chords)][0]
        t0 = bar * 4 * beat
        if pattern == 0:  # roots on every beat
            onsets = [(b * beat, root, beat * 0.9) for b in range(4)]
        elif pattern == 1:  # eighths with an octave jump
            onsets = [(e * beat / 2, root + (12 if e % 4 == 3 else 0), beat * 0.45) for e in range(8)]
        elif pattern == 2:  # root-fifth half notes
            onsets = [(0.0, root, beat * 1.9), (2 * beat, root + 7, beat * 1.9)]
        else:  # walking: scale steps towards the next root
            nxt = OCTAVE_BASE["bass"] + key + chords[(bar + 1) % len(chords)][0]
            walk = [root, root + scale[2] - scale[0], root + 7, nxt - 1 if nxt > root else nxt + 1]
            onsets = [(b * beat, p, beat * 0.9) for b, p in enumerate(walk)]
        for t, pitch, dur in onsets:
            start = _human(rng, t0 + t)
            notes.append(Note(start, start + dur, int(pitch), int(np.clip(base + rng.integers(-8, 9), 20, 127))))
    return notes


def _comp(rng, bars, beat, key, chords, role) -> list[Note]:
    """Chords or pad: voicings of each bar's chord in a rhythm chosen once per stem."""
    base = int(rng.integers(60, 100))
    rhythm = 0 if role == "pad" else int(rng.integers(1, 5))
    low = OCTAVE_BASE[role] + key
    notes = []
    for bar in range(bars):
        chord = chords[bar % len(chords)]
        voicing = sorted(low + ((pc - (low - key)) % 12) for pc in chord)  # closest voicing above `low`
        t0 = bar * 4 * beat
        slots = {0: [(0.0, 4 * beat)],  # whole bar
                 1: [(0.0, 2 * beat), (2 * beat, 2 * beat)],  # halves
                 2: [(b * beat, beat * 0.8) for b in range(4)],  # quarter stabs
                 3: [(b * beat + beat / 2, beat * 0.4) for b in range(4)],  # off-beat skank
                 4: [(0.0, 1.5 * beat), (1.5 * beat, 1.5 * beat), (3 * beat, beat)]}[rhythm]  # 3-3-2
        for t, dur in slots:
            for pitch in voicing:
                start = _human(rng, t0 + t)
                notes.append(Note(start, start + dur * 0.95, int(pitch),
                                  int(np.clip(base + rng.integers(-6, 7), 20, 127))))
    return notes


def _arpeggio(rng, bars, beat, key, chords) -> list[Note]:
    base = int(rng.integers(60, 100))
    div = int(rng.choice((2, 4)))
    low = OCTAVE_BASE["arpeggio"] + key
    notes = []
    for bar in range(bars):
        chord = chords[bar % len(chords)]
        tones = sorted(low + ((pc - (low - key)) % 12) for pc in chord)
        tones = tones + [t + 12 for t in tones]
        for i in range(4 * div):
            start = _human(rng, bar * 4 * beat + i * beat / div)
            notes.append(Note(start, start + beat / div * 0.9, int(tones[i % len(tones)]),
                              int(np.clip(base + rng.integers(-8, 9), 20, 127))))
    return notes


def _melody(rng, bars, beat, key, chords, scale, role) -> list[Note]:
    """A two-bar motif (chord tones on strong beats, scale steps between, rests) varied over the song."""
    base = int(rng.integers(70, 110))
    top = OCTAVE_BASE[role] + key
    grid = [0.5, 1.0, 1.0, 0.5, 1.5, 2.0] if role == "lead" else [1.0, 2.0, 1.0, 2.0]
    motif = []  # (beat offset within two bars, length in beats, scale step or None for a rest)
    pos, step = 0.0, int(rng.integers(0, 5))
    while pos < 8:
        length = min(float(rng.choice(grid)), 8 - pos)
        rest = rng.random() < 0.15
        step = int(np.clip(step + rng.integers(-2, 3), -3, 9))
        motif.append((pos, length, None if rest else step))
        pos += length
    notes = []
    for phrase in range(0, bars, 2):
        shift = int(rng.integers(-2, 3)) if phrase % 4 == 2 else 0  # the answer phrase moves the motif
        for offset, length, s in motif:
            if s is None:
                continue
            bar = phrase + int(offset // 4)
            if bar >= bars:
                break
            chord = chords[bar % len(chords)]
            deg = s + shift
            pitch = top + scale[deg % 7] + 12 * (deg // 7)
            if offset % 2 == 0:  # strong beat: snap to the nearest chord tone
                pitch = min((top - 12 + pc + 12 * o for pc in chord for o in range(4)), key=lambda p: abs(p - pitch))
            start = _human(rng, (phrase * 4 + offset) * beat)
            notes.append(Note(start, start + length * beat * 0.92, int(pitch),
                              int(np.clip(base + rng.integers(-10, 11), 20, 127))))
    return notes


def plan_song(seed: int, *, seconds: float = 30.0, max_stems: int = 6) -> dict:
    """The musical plan of one song (no audio): {"bpm", "key", "mode", "progression", "parts": [Part]} with
    2..``max_stems`` parts."""
    if not 2 <= max_stems <= len(ROLES):
        raise ValueError(f"max_stems must be in [2, {len(ROLES)}], got {max_stems}")
    rng = np.random.default_rng([seed, 0x50A6])
    bpm = float(rng.uniform(70, 160))
    beat = 60.0 / bpm
    bars = max(2, int(np.ceil(seconds / (4 * beat))))
    key, minor = int(rng.integers(12)), bool(rng.random() < 0.4)
    scale = MINOR if minor else MAJOR
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    sevenths = bool(rng.random() < 0.3)
    chords = [_chord(d, scale, sevenths) for d in progression]
    roles = [r for r in ROLES if rng.random() < ROLE_PROBABILITY[r]]
    while len(roles) < 2:
        extra = str(rng.choice([r for r in ROLES if r not in roles]))
        roles = [r for r in ROLES if r in roles or r == extra]
    if len(roles) > max_stems:
        kept = set(rng.choice(roles, size=max_stems, replace=False).tolist())
        roles = [r for r in ROLES if r in kept]
    parts = []
    for role in roles:
        if role == "drums":
            notes, program = _drums(rng, bars, beat), None
        elif role == "bass":
            notes, program = _bass(rng, bars, beat, key, chords, scale), int(rng.choice(PROGRAMS[role]))
        elif role in ("chords", "pad"):
            notes, program = _comp(rng, bars, beat, key, chords, role), int(rng.choice(PROGRAMS[role]))
        elif role == "arpeggio":
            notes, program = _arpeggio(rng, bars, beat, key, chords), int(rng.choice(PROGRAMS[role]))
        else:
            notes, program = _melody(rng, bars, beat, key, chords, scale, role), int(rng.choice(PROGRAMS[role]))
        notes = [n for n in notes if n.start < seconds]
        pan = 0.0 if role in ("drums", "bass") else float(rng.uniform(-0.7, 0.7))
        parts.append(Part(role, program, notes, pan, float(rng.uniform(-0.15, 0.15)), float(rng.uniform(-12, 0))))
    return dict(bpm=bpm, key=key, mode="minor" if minor else "major", progression=list(progression), parts=parts)


def render_song(seed: int, *, soundfont: str, sample_rate: int, seconds: float = 30.0, max_stems: int = 6,
                effects: bool = False) -> tuple[dict, dict]:
    """(stems {role: (2, T) float32}, plan metadata) of song ``seed``; stems at their drawn levels, mixture peak 0.8.

    A stem that renders silent (a program the soundfont lacks) is left out; ValueError if fewer than 2 remain.
    ``effects``: run each stem through its drawn effect chain before levelling, then apply the drawn bus
    compression's gain to every stem (the chains are in the metadata's ``parts[role]["effects"]``, the bus in
    ``"bus"``).
    """
    plan = plan_song(seed, seconds=seconds, max_stems=max_stems)
    length = round(seconds * sample_rate)
    stems, kept, chains = {}, [], {}
    for part in plan["parts"]:
        audio = render_part(part.notes, soundfont=soundfont, program=part.program or 0, drums=part.program is None,
                            sample_rate=sample_rate, pan=part.pan, tuning=part.tuning, length=length)
        rms = float(np.sqrt(np.mean(np.square(audio))))
        if rms < 1e-5:
            continue
        if effects:
            rng = np.random.default_rng([seed, EFFECTS_STREAM, zlib.crc32(part.role.encode())])
            chain = effect_chain(stem_kind(part.role, part.program), rng)
            audio = chain(audio, sample_rate)
            chains[part.role] = chain.as_dict()
            rms = float(np.sqrt(np.mean(np.square(audio))))
        stems[part.role] = audio * np.float32(10 ** (part.level_db / 20) / rms * 0.1)
        kept.append(part)
    if len(stems) < 2:
        raise ValueError(f"song {seed}: only {len(stems)} audible stem(s) with {os.path.basename(soundfont)}")
    bus = None
    if effects:
        bus = bus_compression(np.random.default_rng([seed, EFFECTS_STREAM, zlib.crc32(b"bus")]))
        gain = bus.gain(sum(stems.values()), sample_rate)
        stems = {role: a * gain for role, a in stems.items()}
    peak = float(np.abs(sum(stems.values())).max())
    stems = {role: a * np.float32(PEAK / peak) for role, a in stems.items()}
    meta = dict(seed=seed, bpm=plan["bpm"], key=plan["key"], mode=plan["mode"], progression=plan["progression"],
                soundfont=os.path.basename(soundfont), sample_rate=sample_rate,
                parts={p.role: dict(program=p.program, pan=p.pan, tuning=p.tuning, level_db=p.level_db,
                                    notes=len(p.notes)) for p in kept})
    if effects:  # only then: without effects the metadata is what it always was
        meta["effects"], meta["bus"] = True, bus.as_dict()
        for role, chain in chains.items():
            meta["parts"][role]["effects"] = chain
    return stems, meta


def song_seed(split: str, index: int, seed: int) -> int:
    """The song seed of song ``index`` of ``split`` under the set's ``seed``: disjoint across splits."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    return zlib.crc32(f"{split}/{seed}/{index}".encode()) * 2 + SPLITS[split]


def render_songs(out_dir: str, *, n: int, soundfont: str, split: str = "train", seed: int = 0,
                 sample_rate: int = 44100, seconds: float = 30.0, max_stems: int = 6, effects: bool = False,
                 progress: bool = True) -> dict:
    """Renders songs 0..n-1 of ``split`` into ``out_dir`` (MoisesDB layout; idempotent and atomic per song),
    named ``{split}-{seed}-{index:04d}``; ``effects``: per-stem effect chains (see :func:`render_song`).

    Returns {"rendered", "existing", "skipped": [(name, reason)], "wall_seconds"}.
    """
    from tqdm import tqdm

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not os.path.isfile(soundfont):
        raise FileNotFoundError(f"soundfont not found: {soundfont}")
    os.makedirs(out_dir, exist_ok=True)
    remove_stale_temp(out_dir)
    t0 = time.perf_counter()
    summary = {"rendered": 0, "existing": 0, "skipped": []}
    for i in tqdm(range(n), unit="song", desc=f"render {split} songs", disable=not progress):
        name = f"{split}-{seed}-{i:04d}"
        final = os.path.join(out_dir, name)
        if os.path.isfile(os.path.join(final, "data.json")):
            with open(os.path.join(final, "data.json")) as f:
                render = json.load(f).get("render", {})
            if (render.get("sample_rate") != sample_rate or render.get("soundfont") != os.path.basename(soundfont)
                    or render.get("effects", False) != effects):
                raise ValueError(f"{final} was rendered with {render.get('soundfont')} at {render.get('sample_rate')} "
                                 f"Hz, effects {'on' if render.get('effects', False) else 'off'}; use another folder")
            summary["existing"] += 1
            continue
        try:
            stems, meta = render_song(song_seed(split, i, seed), soundfont=soundfont, sample_rate=sample_rate,
                                      seconds=seconds, max_stems=max_stems, effects=effects)
        except ValueError as e:
            summary["skipped"].append((name, str(e)))
            continue
        tmp = write_song(out_dir, name, stems, sample_rate, artist="trackformer songgen", song=name,
                         genre="generated", extra={"render": {**meta, "split": split}}, commit=False,
                         track_types={role: f"{role} (GM {meta['parts'][role]['program']})" for role in stems})
        commit_song(tmp, final)
        summary["rendered"] += 1
    summary["wall_seconds"] = time.perf_counter() - t0
    return summary
