"""Offline music without downloads: the music21 corpus's four-part Bach chorales rendered through a soundfont.

Each chorale becomes one song in the MoisesDB layout with stems soprano / alto / tenor / bass. Per piece (from
``seed`` and the chorale's name): a tempo of 56–96 quarter notes per minute, fermatas held 0.5–1.5 quarter
notes longer (all voices together), a transposition of up to ±5
semitones that keeps the voices in range, one General-MIDI instrument per part from four timbrally distinct
families (no two parts share a GM family, e.g. flute / horn / cello / tuba) and a stereo position per part.
Each part is rendered by TinySoundFont (:mod:`trackformer.data.sfsynth`, the ``tinysoundfont`` wheel: no system
package) or, with ``backend="fluidsynth"``, written to MIDI (pretty_midi) and rendered by ``fluidsynth -ni -q -R 0
-C 0 -g 0.5 -r SR -F out.wav SF2 part.mid``; stems are zero-padded to equal length and the song is scaled so its
mixture peaks at 0.8 (−1.9 dBFS): the sum of the stems never clips.
"""

import concurrent.futures as cf
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
import zlib
from collections import deque

import numpy as np

from trackformer.data.audio import check_rate, read_audio
from trackformer.data.moisesdb import commit_song, remove_stale_temp, write_song
from trackformer.data.sfsynth import Note, render_part, require_tinysoundfont

PARTS = ("soprano", "alto", "tenor", "bass")
BACKENDS = ("tinysoundfont", "fluidsynth")
PEAK = 0.8
# General-MIDI programs per part; a piece takes one per part with no two in the same GM family (program // 8)
INSTRUMENTS = {
    "soprano": {73: "flute", 68: "oboe", 40: "violin", 56: "trumpet", 71: "clarinet", 64: "soprano sax",
                0: "acoustic grand piano", 79: "ocarina"},
    "alto": {41: "viola", 71: "clarinet", 60: "french horn", 69: "english horn", 65: "alto sax", 11: "vibraphone",
             19: "church organ", 74: "recorder"},
    "tenor": {42: "cello", 70: "bassoon", 57: "trombone", 66: "tenor sax", 24: "nylon guitar",
              4: "electric piano", 52: "choir aahs"},
    "bass": {43: "contrabass", 58: "tuba", 32: "acoustic bass", 33: "finger bass", 35: "fretless bass",
             70: "bassoon", 16: "drawbar organ"},
}
LOWEST, HIGHEST = 28, 86  # MIDI range every transposed piece stays in (E1 .. D6)
FLUIDR3 = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/soundfonts/FluidR3_GM.sf2")
TIMGM_SYSTEM = ("/usr/share/sounds/sf2/TimGM6mb.sf2", "/usr/share/soundfonts/TimGM6mb.sf2")
MUSESCORE = ("/usr/share/sounds/sf3/MuseScore_General.sf3", "/usr/share/sounds/sf2/MuseScore_General.sf2")
FLUIDR3_MONO = ("/usr/share/sounds/sf3/FluidR3Mono_GM.sf3", "/usr/share/fluidr3mono-gm-soundfont/FluidR3Mono_GM.sf3")
CSOUND_GM = ("/usr/share/sounds/sf2/sf_GMbank.sf2", "/usr/share/samples/sf_GMbank.sf2")
OPL3 = ("/usr/share/sounds/sf2/OPL-3_FM_128M.sf2",)
INSTALL_FLUIDSYNTH = ("fluidsynth was not found on PATH: install it (Debian/Ubuntu `apt-get install fluidsynth`, "
                      "macOS `brew install fluid-synth`, conda `conda install -c conda-forge fluidsynth`)")


def find_fluidsynth(path: str | None = None) -> str:
    """The fluidsynth executable (``path`` if given); RuntimeError saying how to install it otherwise."""
    exe = shutil.which(path or "fluidsynth")
    if exe is None:
        raise RuntimeError(INSTALL_FLUIDSYNTH if path is None else f"fluidsynth executable not found: {path}")
    return exe


def _timgm6mb() -> tuple[str, ...]:
    try:
        import pretty_midi
    except ImportError:
        return TIMGM_SYSTEM
    return (os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2"), *TIMGM_SYSTEM)


# name: (how to install it, candidate paths). All are complete General-MIDI sets (128 programs and the GM kit)
# that TinySoundFont renders (checked 2026-12: every program songgen draws, and the kit, sounds in each).
SOUNDFONT_NAMES = {"timgm6mb": ("pip install pretty-midi (ships TimGM6mb.sf2) or apt-get install timgm6mb-soundfont",
                                _timgm6mb),
                   "fluidr3": ("apt-get install fluid-soundfont-gm", lambda: FLUIDR3),
                   "fluidr3mono": ("apt-get install fluidr3mono-gm-soundfont (19 MB; MuseScore 2's mono FluidR3)",
                                   lambda: FLUIDR3_MONO),
                   "csound": ("apt-get install csound-soundfont (4 MB; Csound's GM bank)", lambda: CSOUND_GM),
                   "opl3": ("apt-get install opl3-soundfont (100 MB; FM-synthesis timbres of an OPL3 chip)",
                            lambda: OPL3),
                   "musescore": ("apt-get install musescore-general-soundfont (or -small, -lossless)",
                                 lambda: MUSESCORE)}
# what training sets may render with; MuseScore General is held out: the project's test sets render with it only
TRAINING_SOUNDFONTS = ("timgm6mb", "fluidr3", "fluidr3mono", "csound", "opl3")
HELD_OUT_SOUNDFONTS = ("musescore",)


def find_soundfont(path: str | None = None) -> str:
    """A General-MIDI soundfont: ``path`` if given (a file, or one of :data:`SOUNDFONT_NAMES`: timgm6mb, fluidr3,
    fluidr3mono, csound, opl3, musescore); else FluidR3 (Debian ``fluid-soundfont-gm``) if installed, else
    TimGM6mb from the pretty-midi package or Debian ``timgm6mb-soundfont``. FileNotFoundError saying what to
    install when there is none. Train with :data:`TRAINING_SOUNDFONTS`; MuseScore General is held out."""
    if path is not None and path.lower() in SOUNDFONT_NAMES:
        install, candidates = SOUNDFONT_NAMES[path.lower()]
        found = [c for c in candidates() if os.path.isfile(c)]
        if not found:
            raise FileNotFoundError(f"soundfont {path!r} is not installed: {install}")
        return found[0]
    if path is not None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"soundfont not found: {path}")
        return path
    for c in (*FLUIDR3, *_timgm6mb()):
        if os.path.isfile(c):
            return c
    raise FileNotFoundError("no General-MIDI soundfont found: `pip install pretty-midi` (ships TimGM6mb.sf2), or "
                            "`apt-get install fluid-soundfont-gm` (FluidR3), or pass an explicit .sf2 path")


def _need_render_deps():
    try:
        import music21  # noqa: F401
        import pretty_midi  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"rendering chorales needs music21 and pretty-midi: `pip install 'trackformer[render]'` "
                           f"({e})") from e


def list_chorales() -> list[str]:
    """Paths of the Bach pieces in the music21 corpus (one file per piece, in BWV order). Not all are four-part
    chorales; the renderer skips the others."""
    _need_render_deps()
    from music21 import corpus

    by_name = {}
    for p in sorted(map(str, corpus.getComposer("bach")), key=lambda p: not p.endswith(".mxl")):  # prefer .mxl
        name, ext = os.path.splitext(os.path.basename(p))
        if name.startswith("bwv") and ext in (".mxl", ".xml", ".krn"):
            by_name.setdefault(name, p)
    return [by_name[n] for n in sorted(by_name, key=_bwv_key)]


def _bwv_key(name: str):
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.findall(r"\d+|\D+", name)]


def song_id(name: str) -> str:
    """The song folder name (a uuid5) of chorale ``name``. One rendering per chorale and folder: two renderings
    of a piece could land on both sides of a train/valid split."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"trackformer/chorale/{name}"))


def _check_existing(final: str, seed: int, sample_rate: int) -> None:
    """ValueError if the song in ``final`` was rendered with another seed or rate (mixing them in one folder
    would give songs at two rates or two arrangements of a piece)."""
    try:
        with open(os.path.join(final, "data.json"), encoding="utf-8") as f:
            render = json.load(f).get("render", {})
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"{final}: unreadable data.json in the output folder ({e}); remove that song folder") from e
    if (render.get("seed"), render.get("sample_rate")) != (seed, sample_rate):
        raise ValueError(f"{os.path.dirname(final)} holds chorales rendered with seed={render.get('seed')} at "
                         f"{render.get('sample_rate')} Hz; asked for seed={seed} at {sample_rate} Hz: use another "
                         "output folder")


def _satb_parts(score):
    """The four voice parts of a score (by name when it has S/A/T/B-named parts among others), else None."""
    parts = list(score.parts)
    named = {}
    for p in parts:
        label = (p.partName or p.id or "").strip().lower()
        if label in PARTS:
            named.setdefault(label, p)
    if len(named) == 4:
        return [named[v] for v in PARTS]
    return parts if len(parts) == 4 else None


def _notes(part):
    """(start, length in quarter notes, MIDI pitch) of every sounding note, ties merged."""
    out = []
    for el in part.stripTies().flatten().notes:
        ql = float(el.quarterLength)
        if ql <= 0:
            continue  # grace notes
        for p in el.pitches:
            out.append((float(el.offset), ql, int(p.midi)))
    return out


def _fermata_ends(parts) -> list[float]:
    """Offsets (quarter notes) where a note under a fermata ends, in any part; sorted."""
    from music21 import expressions

    ends = set()
    for part in parts:
        for el in part.flatten().notes:
            if any(isinstance(e, expressions.Fermata) for e in el.expressions):
                ends.add(float(el.offset + el.quarterLength))
    return sorted(ends)


def hold_fermatas(q: float, ends: list[float], hold: float) -> float:
    """Score time ``q`` (quarter notes) → performance time with every fermata held ``hold`` quarters longer: a
    note ending on a fermata is lengthened, every note from there on starts later."""
    return q + hold * sum(e <= q + 1e-9 for e in ends)


def _choose(rng, voices):
    """Tempo, transposition, programs and pans of one piece (see module doc)."""
    bpm = float(rng.uniform(56, 96))
    lo, hi = min(n[2] for v in voices for n in v), max(n[2] for v in voices for n in v)
    shifts = [s for s in range(-5, 6) if lo + s >= LOWEST and hi + s <= HIGHEST] or [0]
    transpose = int(rng.choice(shifts))
    programs, families = {}, set()
    for v in rng.permutation(PARTS):  # every part has >= 5 families to pick from, so 3 taken never leave none
        p = int(rng.choice([p for p in INSTRUMENTS[v] if p // 8 not in families]))
        programs[str(v)] = p
        families.add(p // 8)
    programs = [programs[v] for v in PARTS]
    pans = rng.permutation([-0.5, -0.17, 0.17, 0.5])
    return bpm, transpose, programs, pans


def _performed(notes, *, bpm, transpose, rng, warp) -> list[Note]:
    """Score notes (start, quarter length, pitch) → performed :class:`Note` s in seconds: fermatas held (``warp``),
    transposed, a slight gap between repeated notes, one velocity level per part with small variation."""
    sec = 60.0 / bpm
    base = int(rng.integers(80, 101))
    out = []
    for start, ql, pitch in notes:
        t0, t1 = warp(start) * sec, warp(start + ql) * sec
        vel = int(np.clip(base + rng.integers(-6, 7), 1, 127))
        out.append(Note(t0, t0 + 0.96 * (t1 - t0), pitch + transpose, vel))
    return out


def _fluidsynth_part(notes: list[Note], *, program, pan, soundfont, fluidsynth, sample_rate, tail_s, work, voice,
                     name) -> np.ndarray:
    """One part through FluidSynth (pretty_midi writes the MIDI file): (2, T) at ``sample_rate``."""
    import pretty_midi

    mid, wav = os.path.join(work, f"{voice}.mid"), os.path.join(work, f"{voice}.wav")
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program)
    inst.control_changes.append(pretty_midi.ControlChange(10, int(round(64 + 63 * pan)), 0.0))
    inst.notes.extend(pretty_midi.Note(velocity=n.velocity, pitch=n.pitch, start=n.start, end=n.end) for n in notes)
    # an inaudible event after the last note keeps fluidsynth rendering the release tail
    inst.control_changes.append(pretty_midi.ControlChange(64, 0, max(n.end for n in notes) + tail_s))
    pm.instruments.append(inst)
    pm.write(mid)
    cmd = [fluidsynth, "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(sample_rate), "-F", wav,
           soundfont, mid]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not os.path.isfile(wav):
        raise RuntimeError(f"fluidsynth failed on {name}/{voice} (exit {proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    return read_audio(wav, sample_rate=sample_rate, channels=2)  # resampled if fluidsynth differs


def render_one(path: str, out_dir: str, sample_rate: int, seed: int, soundfont: str, fluidsynth: str | None) -> dict:
    """Renders one chorale into a hidden temp song folder in ``out_dir`` (not yet visible to readers).

    ``fluidsynth``: the executable to render with, or None for TinySoundFont. Returns {"name", "status":
    "rendered" | "exists" | "skipped", "tmp" (folder to commit), "final", "seconds", "reason"}.
    """
    from music21 import converter

    name = os.path.splitext(os.path.basename(path))[0]
    sid = song_id(name)
    final = os.path.join(out_dir, sid)
    result = {"name": name, "final": final, "tmp": None, "seconds": 0.0, "reason": ""}
    if os.path.isfile(os.path.join(final, "data.json")):
        return {**result, "status": "exists"}
    parts = _satb_parts(converter.parse(path))
    if parts is None:
        return {**result, "status": "skipped", "reason": "not a four-part (S/A/T/B) piece"}
    voices = [_notes(p) for p in parts]
    if any(not v for v in voices):
        return {**result, "status": "skipped", "reason": "a part has no notes"}
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    bpm, transpose, programs, pans = _choose(rng, voices)
    ends, hold = _fermata_ends(parts), float(rng.uniform(0.5, 1.5))
    stems = {}
    with tempfile.TemporaryDirectory(prefix="trackformer-render-") as work:
        for voice, notes, program, pan in zip(PARTS, voices, programs, pans):
            played = _performed(notes, bpm=bpm, transpose=transpose, rng=rng,
                                warp=lambda q: hold_fermatas(q, ends, hold))
            if fluidsynth is None:
                stems[voice] = render_part(played, soundfont=soundfont, program=program, pan=float(pan),
                                           sample_rate=sample_rate, tail=1.5)
            else:
                stems[voice] = _fluidsynth_part(played, program=program, pan=float(pan), soundfont=soundfont,
                                                fluidsynth=fluidsynth, sample_rate=sample_rate, tail_s=1.5,
                                                work=work, voice=voice, name=name)
    length = max(a.shape[1] for a in stems.values())
    stems = {v: np.pad(a, ((0, 0), (0, length - a.shape[1]))) for v, a in stems.items()}
    peak = float(np.abs(sum(stems.values())).max())
    if peak == 0:
        return {**result, "status": "skipped", "reason": "rendered silence (soundfont without these programs?)"}
    stems = {v: a * (PEAK / peak) for v, a in stems.items()}
    render = {"source": path, "bpm": bpm, "transpose": transpose, "fermatas": len(ends), "fermata_hold": hold,
              "seed": seed, "sample_rate": sample_rate,
              "soundfont": os.path.basename(soundfont), "gain": PEAK / peak,
              "backend": "tinysoundfont" if fluidsynth is None else "fluidsynth",
              "programs": dict(zip(PARTS, programs)), "pans": dict(zip(PARTS, map(float, pans)))}
    tmp = write_song(out_dir, sid, stems, sample_rate, artist="J. S. Bach", song=name, genre="chorale",
                     extra={"render": render}, commit=False,
                     track_types={v: INSTRUMENTS[v][p] for v, p in zip(PARTS, programs)})
    return {**result, "status": "rendered", "tmp": tmp, "seconds": length / sample_rate}


def render_chorales(out_dir: str, *, n: int | None = None, sample_rate: int = 44100, seed: int = 0,
                    workers: int | None = None, soundfont: str | None = None, fluidsynth: str | None = None,
                    backend: str = "tinysoundfont", progress: bool = True) -> dict:
    """Renders the first ``n`` four-part chorales (all when None, BWV order) into ``out_dir`` (MoisesDB layout,
    so ``MoisesDB(out_dir)`` reads it) with ``workers`` processes (default: CPU count).

    ``backend``: "tinysoundfont" (default; a pip package, no system install) or "fluidsynth" (the executable on
    PATH or ``fluidsynth``). Idempotent: songs already there are kept, not re-rendered (ValueError if they were
    rendered with another seed or sample rate: one rendering per chorale and folder). Songs appear atomically (a
    crash leaves at most hidden ``.tmp-*`` folders, removed by the next run; do not run two renders into one folder
    at once). The choice of the ``n`` chorales does not depend on ``workers``.
    Returns {"rendered", "existing", "skipped": [(name, reason)], "audio_seconds" (per stem, rendered now),
    "wall_seconds"}.
    """
    if n is not None and n < 0:
        raise ValueError(f"n must be >= 0 or None, got {n}")
    check_rate("sample_rate", sample_rate)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    fluidsynth = find_fluidsynth(fluidsynth) if backend == "fluidsynth" else None
    if fluidsynth is None:
        require_tinysoundfont()  # says how to install it, before any work
    soundfont = os.path.abspath(find_soundfont(soundfont))
    paths = list_chorales()
    os.makedirs(out_dir, exist_ok=True)
    remove_stale_temp(out_dir)
    from tqdm import tqdm

    t0 = time.perf_counter()
    summary = {"rendered": 0, "existing": 0, "skipped": [], "audio_seconds": 0.0}
    target = len(paths) if n is None else n
    bar = tqdm(total=target, unit="song", desc="render chorales", disable=not progress)
    args = (out_dir, sample_rate, seed, soundfont, fluidsynth)
    pool = None
    pending, todo = deque(), iter(paths)

    def schedule(path):
        """A finished result for a song already there; else a future (pool) or None (render inline later)."""
        nonlocal pool
        name = os.path.splitext(os.path.basename(path))[0]
        final = os.path.join(out_dir, song_id(name))
        if os.path.isfile(os.path.join(final, "data.json")):
            _check_existing(final, seed, sample_rate)
            return {"name": name, "status": "exists"}
        if workers == 1:
            return None
        if pool is None:  # fork: workers start in milliseconds and only run music21, pretty_midi and fluidsynth
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            pool = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))
        return pool.submit(render_one, path, *args)

    try:
        # results are taken in corpus order, so which n songs get committed never depends on timing
        while (done := summary["rendered"] + summary["existing"]) < target:
            while len(pending) < min(2 * workers, target - done):  # no more in flight than still needed
                p = next(todo, None)
                if p is None:
                    break
                pending.append((p, schedule(p)))
            if not pending:
                break
            p, job = pending.popleft()
            try:
                r = job if isinstance(job, dict) else job.result() if job is not None else render_one(p, *args)
            except Exception as e:  # one bad piece must not stop the others; it is reported
                r = {"name": os.path.basename(p), "status": "skipped", "reason": f"{type(e).__name__}: {e}"}
            if r["status"] == "skipped":
                summary["skipped"].append((r["name"], r["reason"]))
                if n is None:  # the bar counts pieces when rendering all, songs when rendering n
                    bar.update()
                continue
            if r["status"] == "rendered":
                commit_song(r["tmp"], r["final"])
                summary["audio_seconds"] += r["seconds"]
            summary["rendered" if r["status"] == "rendered" else "existing"] += 1
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            for _, job in pending:
                if isinstance(job, cf.Future):
                    job.cancel()
            pool.shutdown(wait=True)
            remove_stale_temp(out_dir)  # songs rendered beyond n (in flight when the target was reached)
    summary["wall_seconds"] = time.perf_counter() - t0
    return summary
