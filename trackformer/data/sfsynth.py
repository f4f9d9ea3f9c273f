"""SoundFont rendering of note lists with TinySoundFont (the ``tinysoundfont`` wheel): no system package needed.

A part is a list of :class:`Note` (seconds, MIDI pitch, velocity) played by one General-MIDI program (or the
GM drum kit); :func:`render_part` turns it into a stereo float32 array (2, T) at any sample rate, placed in the
stereo field with an equal-power pan and detuned by ``tuning`` semitones. Events are rendered sample-exactly:
the synthesiser is advanced to each event's sample, the event applied, and so on, then ``tail`` seconds of
release after the last note-off.
"""

import dataclasses
import functools
import math
import os

import numpy as np

INSTALL_TINYSOUNDFONT = ("tinysoundfont is not installed: `pip install --no-deps tinysoundfont` (its only "
                         "dependency, pyaudio, is for live playback and is not needed to render)")


@dataclasses.dataclass(frozen=True)
class Note:
    """One note: onset and release in seconds, MIDI pitch 0..127, velocity 1..127."""

    start: float
    end: float
    pitch: int
    velocity: int


def require_tinysoundfont():
    """The tinysoundfont module; RuntimeError saying how to install it."""
    try:
        import tinysoundfont
    except ImportError:
        raise RuntimeError(INSTALL_TINYSOUNDFONT) from None
    return tinysoundfont


@functools.lru_cache(maxsize=2)
def _synth(soundfont: str, sample_rate: int):
    """(Synth, soundfont id), loaded once per process: parsing a large SF2 (or decoding an SF3) takes seconds."""
    synth = require_tinysoundfont().Synth(samplerate=sample_rate)
    return synth, synth.sfload(soundfont)


def _silence(synth, sample_rate: int) -> None:
    """Ends every voice and renders (discards) their quick release until the synthesiser is silent (<= 2 s)."""
    synth.sounds_off()
    for _ in range(2 * sample_rate // 1024 + 1):
        if not np.frombuffer(synth.generate(1024), dtype=np.float32).any():
            return
    raise RuntimeError("tinysoundfont did not fall silent within 2 s of sounds_off")


def render_part(notes: list[Note], *, soundfont: str, program: int, drums: bool = False, sample_rate: int = 44100,
                pan: float = 0.0, tuning: float = 0.0, tail: float = 1.0, length: int | None = None) -> np.ndarray:
    """Renders ``notes`` with GM ``program`` (ignored for ``drums``: the GM kit on channel 10) → (2, T) float32.

    ``pan`` in [-1, 1] (equal power), ``tuning`` in semitones; T = ``length`` samples when given (cut or
    zero-padded), else up to the last release plus ``tail`` seconds. RuntimeError when tinysoundfont is
    missing; FileNotFoundError naming a missing soundfont.
    """
    if not os.path.isfile(soundfont):
        raise FileNotFoundError(f"soundfont not found: {soundfont}")
    if not -1.0 <= pan <= 1.0:
        raise ValueError(f"pan must be in [-1, 1], got {pan}")
    synth, sfid = _synth(os.path.abspath(soundfont), sample_rate)
    _silence(synth, sample_rate)  # a cached synth: nothing of the previous part may ring on
    chan = 9 if drums else 0
    synth.program_select(chan, sfid, 128 if drums else 0, 0 if drums else program, is_drums=drums)
    synth.set_tuning(chan, float(tuning))
    events = sorted([(round(n.start * sample_rate), 1, n.pitch, n.velocity) for n in notes]
                    + [(round(n.end * sample_rate), 0, n.pitch, 0) for n in notes])  # offs before ons
    end = (events[-1][0] if events else 0) + round(tail * sample_rate)
    total = end if length is None else length
    out = np.zeros((total, 2), np.float32)
    pos = 0
    for when, on, pitch, velocity in events + [(total, -1, 0, 0)]:
        when = min(when, total)
        if when > pos:
            out[pos:when] = np.frombuffer(synth.generate(when - pos), dtype=np.float32).reshape(-1, 2)
            pos = when
        if on == 1:
            synth.noteon(chan, int(pitch), int(velocity))
        elif on == 0:
            synth.noteoff(chan, int(pitch))
    angle = (pan + 1.0) * math.pi / 4  # equal power: centre = cos(pi/4) on both sides
    gains = np.array([math.cos(angle), math.sin(angle)], np.float32) * math.sqrt(2.0)
    return np.ascontiguousarray(out.T * gains[:, None])
