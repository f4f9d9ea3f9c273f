"""Render-time effects a band's tracks have: amp distortion, compression, EQ, reverb and stereo width.

Each effect is a pure function of a waveform ``x`` (C, T) float32 (C = 1 or 2 channels, T samples) at
``sample_rate`` Hz, returning a new (C, T) float32 array; silence in gives silence out (never NaN or Inf).
Levels are in dBFS (full scale = 1.0). :func:`effect_chain` draws a plausible chain for one stem kind
(:data:`KINDS`, see :func:`stem_kind`) from a numpy Generator: the same draws give bit-identical audio. A chain
works on its input scaled to peak 1.0 (so drives and thresholds are relative to the stem's own peak, whatever
level the synthesiser rendered it at) and returns it at the input's peak: an effect chain changes the sound of a
stem, never makes it louder than it came in, and never clips (the output is scaled, not cut).
:func:`bus_compression` draws the mix bus's glue compressor and limiter: one gain curve for a whole song, so
multiplying every stem by it keeps them the exact sources of the compressed mixture.

Cost: ``python -m trackformer.data.effects`` prints the seconds each effect takes per minute of stereo
44.1 kHz audio (under a second each on one core; the reverb, an FFT convolution, and the bus, two
compressor passes, are the most expensive).
"""

import dataclasses
import math

import numpy as np
from scipy.signal import fftconvolve, sosfilt

KINDS = ("drums", "bass", "guitar", "acoustic", "keys", "lead", "pad")
_TINY = 1e-12


def _check(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """``x`` as a float32 (C, T) array (effects compute in float32: ample for audio, half the memory traffic);
    ValueError naming the problem for a bad shape, rate or non-finite audio."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] not in (1, 2):
        raise ValueError(f"audio must be (C, T) with C = 1 or 2 channels, got shape {x.shape}")
    if not (isinstance(sample_rate, (int, np.integer)) and sample_rate > 0):
        raise ValueError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError("audio contains NaN or Inf")
    return x


def _peak(x: np.ndarray) -> float:
    return max(float(x.max()), -float(x.min())) if x.size else 0.0


def _one_pole_lowpass(x: np.ndarray, cutoff_hz: float, sample_rate: int) -> np.ndarray:
    """First-order low-pass (6 dB/octave) along the last axis."""
    a = math.exp(-2.0 * math.pi * cutoff_hz / sample_rate)
    return sosfilt(np.array([[1.0 - a, 0.0, 0.0, 1.0, -a, 0.0]], dtype=x.dtype), x, axis=-1)


def _dc_block(x: np.ndarray, sample_rate: int, cutoff_hz: float = 20.0) -> np.ndarray:
    """First-order high-pass (an amp's coupling capacitor) along the last axis: removes the DC an asymmetric
    curve adds."""
    r = math.exp(-2.0 * math.pi * cutoff_hz / sample_rate)
    return sosfilt(np.array([[1.0, -1.0, 0.0, 1.0, -r, 0.0]], dtype=x.dtype), x, axis=-1)


def distortion(x: np.ndarray, sample_rate: int, *, drive_db: float, tone_hz: float, bias: float = 0.0,
               mix: float = 1.0) -> np.ndarray:
    """Amp-style soft clipping: (C, T) → (C, T) float32 at the input's peak.

    The input is scaled so its peak sits ``drive_db`` dB (≥ 0) above the knee of a ``tanh`` curve (0 dB: barely
    saturating, 30 dB: heavy fuzz), shaped by ``tanh(g·x + bias) − tanh(bias)`` (``bias`` in [0, 0.5) makes it
    asymmetric, adding even harmonics as a valve stage does, and the DC that a 20 Hz high-pass then removes),
    low-passed at ``tone_hz`` (the amp's tone control: it tames the fizz the clipping adds) and mixed ``mix``
    (0..1) wet with the dry signal, then returned at the input's peak.
    """
    x = _check(x, sample_rate)
    if drive_db < 0 or not 0 <= bias < 0.5 or not 0 <= mix <= 1:
        raise ValueError(f"distortion needs drive_db >= 0, bias in [0, 0.5), mix in [0, 1]; got {drive_db}, "
                         f"{bias}, {mix}")
    _check_freq(tone_hz, sample_rate, "tone_hz")
    peak = _peak(x)
    if peak == 0:
        return x.copy()
    g = 10 ** (drive_db / 20) / peak
    shaped = np.tanh(np.float32(g) * x + np.float32(bias)) - np.float32(math.tanh(bias))
    wet = _one_pole_lowpass(_dc_block(shaped, sample_rate) if bias else shaped, tone_hz, sample_rate)
    y = np.float32((1 - mix) / peak) * x + np.float32(mix / max(_peak(wet), _TINY)) * wet
    return (y * np.float32(peak / max(_peak(y), _TINY))).astype(np.float32, copy=False)


def compressor(x: np.ndarray, sample_rate: int, *, threshold_db: float, ratio: float, attack_ms: float,
               release_ms: float, makeup_db: float = 0.0, knee_db: float = 6.0) -> np.ndarray:
    """Feed-forward compressor with a stereo-linked peak detector: (C, T) → (C, T) float32, ``x`` times
    :func:`compressor_gain`."""
    x = _check(x, sample_rate)
    return x * compressor_gain(x, sample_rate, threshold_db=threshold_db, ratio=ratio, attack_ms=attack_ms,
                               release_ms=release_ms, makeup_db=makeup_db, knee_db=knee_db)


def compressor_gain(x: np.ndarray, sample_rate: int, *, threshold_db: float, ratio: float, attack_ms: float,
                    release_ms: float, makeup_db: float = 0.0, knee_db: float = 6.0) -> np.ndarray:
    """The gain (T,) float32 a feed-forward compressor applies to ``x`` (C, T), one for all channels.

    Above ``threshold_db`` (dBFS) the level rises only 1/``ratio`` dB per dB (a soft knee ``knee_db`` wide); the
    gain reduction follows the level with one-pole ``attack_ms`` / ``release_ms`` time constants, computed on
    blocks of half the attack time (32 to 256 samples: 0.7 to 5.8 ms at 44.1 kHz) and interpolated per sample;
    ``makeup_db`` is added after. A signal that stays ``knee_db``/2 below the threshold passes unchanged (gain
    exactly 1). The output peak can exceed the input's only by ``makeup_db``.
    """
    x = _check(x, sample_rate)
    if ratio < 1 or attack_ms <= 0 or release_ms <= 0 or knee_db < 0:
        raise ValueError(f"compressor needs ratio >= 1, attack_ms > 0, release_ms > 0, knee_db >= 0; got {ratio}, "
                         f"{attack_ms}, {release_ms}, {knee_db}")
    hop = int(np.clip(attack_ms * 1e-3 * sample_rate / 2, 32, 256))  # blocks of half the attack time
    t = x.shape[1]
    if t == 0:
        return np.ones(0, np.float32)
    blocks = -(-t // hop)
    level = np.pad(np.abs(x).max(axis=0), (0, blocks * hop - t)).reshape(blocks, hop).max(axis=1)
    level_db = 20 * np.log10(np.maximum(level, 1e-10))
    over = level_db - threshold_db
    slope = 1.0 / ratio - 1.0  # dB of gain per dB over the threshold (≤ 0)
    if knee_db > 0:
        reduction = np.where(over <= -knee_db / 2, 0.0,
                             np.where(over >= knee_db / 2, slope * over, slope * (over + knee_db / 2) ** 2
                                      / (2 * knee_db)))
    else:
        reduction = np.minimum(0.0, slope * over)
    attack = math.exp(-hop / (attack_ms * 1e-3 * sample_rate))
    release = math.exp(-hop / (release_ms * 1e-3 * sample_rate))
    smooth = np.empty(blocks)
    state = 0.0
    for i, target in enumerate(reduction.tolist()):  # the attack/release switch is non-linear: one pass over blocks
        a = attack if target < state else release
        state = a * state + (1 - a) * target
        smooth[i] = state
    centres = np.arange(blocks) * hop + (hop - 1) / 2
    return (10 ** ((np.interp(np.arange(t), centres, smooth) + makeup_db) / 20)).astype(np.float32)


def _check_freq(freq: float, sample_rate: int, name: str) -> None:
    if not 0 < freq < sample_rate / 2:
        raise ValueError(f"{name} must be in (0, {sample_rate / 2:g}) Hz at {sample_rate} Hz, got {freq}")


def biquad(kind: str, freq: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """One second-order section [b0, b1, b2, 1, a1, a2] (RBJ audio-EQ cookbook) of a ``"lowshelf"``, ``"peak"``
    or ``"highshelf"`` filter: ``gain_db`` at ``freq`` Hz (peak) or beyond it (shelves, half the gain at
    ``freq``), bandwidth ``q`` (peak) or shelf slope ``q`` (≤ 1: no overshoot)."""
    _check_freq(freq, sample_rate, "EQ frequency")
    if q <= 0:
        raise ValueError(f"EQ q must be > 0, got {q}")
    a = 10 ** (gain_db / 40)
    w = 2 * math.pi * freq / sample_rate
    cw, sw = math.cos(w), math.sin(w)
    if kind == "peak":
        alpha = sw / (2 * q)
        b = [1 + alpha * a, -2 * cw, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cw, 1 - alpha / a]
    elif kind in ("lowshelf", "highshelf"):
        alpha = sw / 2 * math.sqrt((a + 1 / a) * (1 / q - 1) + 2)
        s = 1 if kind == "lowshelf" else -1  # the high shelf is the low shelf with cos(w) negated
        b = [a * ((a + 1) - s * (a - 1) * cw + 2 * math.sqrt(a) * alpha),
             s * 2 * a * ((a - 1) - s * (a + 1) * cw),
             a * ((a + 1) - s * (a - 1) * cw - 2 * math.sqrt(a) * alpha)]
        den = [(a + 1) + s * (a - 1) * cw + 2 * math.sqrt(a) * alpha,
               -s * 2 * ((a - 1) + s * (a + 1) * cw),
               (a + 1) + s * (a - 1) * cw - 2 * math.sqrt(a) * alpha]
    else:
        raise ValueError(f"EQ band kind must be lowshelf, peak or highshelf, got {kind!r}")
    return np.array([*(v / den[0] for v in b), 1.0, den[1] / den[0], den[2] / den[0]])


def eq(x: np.ndarray, sample_rate: int, *, bands: list[tuple[str, float, float, float]]) -> np.ndarray:
    """Parametric EQ: (C, T) → (C, T) float32 through a cascade of :func:`biquad` bands, each
    ``(kind, freq Hz, gain dB, q)``. The peak can grow by up to the largest boost."""
    x = _check(x, sample_rate)
    if not bands or x.shape[1] == 0:
        return x.copy()
    sos = np.stack([biquad(kind, f, g, q, sample_rate) for kind, f, g, q in bands])
    return sosfilt(sos, x, axis=-1).astype(np.float32, copy=False)


def reverb_ir(sample_rate: int, *, rt60: float, damping_hz: float, predelay_ms: float, channels: int,
              seed: int) -> np.ndarray:
    """An algorithmic room response (channels, N) float64 of unit energy per channel: exponentially decaying
    Gaussian noise (−60 dB after ``rt60`` s; decorrelated between channels), low-passed at ``damping_hz`` (air
    and wall absorption), after ``predelay_ms`` of silence; N = predelay + rt60 seconds."""
    if rt60 <= 0 or predelay_ms < 0:
        raise ValueError(f"reverb needs rt60 > 0 s and predelay_ms >= 0, got {rt60}, {predelay_ms}")
    _check_freq(damping_hz, sample_rate, "damping_hz")
    n = max(1, round(rt60 * sample_rate))
    t = np.arange(n) / sample_rate
    noise = np.random.default_rng(seed).standard_normal((channels, n)) * 10 ** (-3 * t / rt60)
    ir = _one_pole_lowpass(noise, damping_hz, sample_rate)
    ir /= np.sqrt(np.sum(ir ** 2, axis=1, keepdims=True))
    return np.pad(ir, ((0, 0), (round(predelay_ms * 1e-3 * sample_rate), 0)))


def reverb(x: np.ndarray, sample_rate: int, *, rt60: float, wet: float, damping_hz: float = 6000.0,
           predelay_ms: float = 10.0, seed: int = 0) -> np.ndarray:
    """Convolution with :func:`reverb_ir` (``seed`` draws its noise): (C, T) → (C, T) float32, ``(1 − wet)·dry
    + wet·reverberated`` with ``wet`` in [0, 1]; the tail past T is cut (the song ends there). Each channel
    has its own IR, so a reverberated mono-centred stem gains some width."""
    x = _check(x, sample_rate)
    if not 0 <= wet <= 1:
        raise ValueError(f"reverb wet must be in [0, 1], got {wet}")
    ir = reverb_ir(sample_rate, rt60=rt60, damping_hz=damping_hz, predelay_ms=predelay_ms, channels=x.shape[0],
                   seed=seed)
    if x.shape[1] == 0 or wet == 0:
        return x.copy()
    # float32 FFTs: twice as fast as float64, and the tail is 60 dB down anyway
    wet_sig = fftconvolve(x, ir.astype(np.float32), axes=-1)[:, : x.shape[1]]
    return np.float32(1 - wet) * x + np.float32(wet) * wet_sig


def stereo_width(x: np.ndarray, sample_rate: int, *, width: float) -> np.ndarray:
    """Mid/side width: (2, T) → (2, T) float32 with the side signal (L − R)/2 scaled by ``width`` ≥ 0 (0: mono,
    1: unchanged, > 1: wider). A mono (1, T) input is returned unchanged."""
    x = _check(x, sample_rate)
    if width < 0:
        raise ValueError(f"stereo width must be >= 0, got {width}")
    if x.shape[0] == 1:
        return x.copy()
    mid, side = (x[0] + x[1]) * np.float32(0.5), (x[0] - x[1]) * np.float32(width / 2)
    return np.stack([mid + side, mid - side])


EFFECTS = {"distortion": distortion, "compressor": compressor, "eq": eq, "reverb": reverb,
           "stereo_width": stereo_width}


def stem_kind(role: str, program: int | None) -> str:
    """The :data:`KINDS` entry of a stem from its song role (``trackformer.data.songgen.ROLES``) and 0-based
    GM program (None: the drum kit): drums and bass by role, a pad role as a pad, else by GM family (pianos,
    chromatic percussion and organs: keys; programs 24–25: acoustic guitar; 26–31: electric guitar; 32–39:
    bass; ensembles and synth pads: pad; the rest: lead)."""
    if role == "drums" or program is None:
        return "drums"
    if not 0 <= program <= 127:
        raise ValueError(f"GM program must be in [0, 127], got {program}")
    if role == "bass" or 32 <= program <= 39:
        return "bass"
    if role == "pad" or 48 <= program <= 55 or 88 <= program <= 95:
        return "pad"
    if program <= 23:
        return "keys"
    if program <= 25:
        return "acoustic"
    if program <= 31:
        return "guitar"
    return "lead"


@dataclasses.dataclass(frozen=True)
class EffectChain:
    """A drawn chain: ``steps`` are (effect name in :data:`EFFECTS`, keyword parameters), applied in order.

    ``chain(x, sample_rate)``: (C, T) → (C, T) float32 at the input's peak (see the module doc). EQ and tone
    frequencies above 0.45·``sample_rate`` are lowered to it, so one chain applies at any rate.
    """

    kind: str
    steps: tuple

    def __call__(self, x: np.ndarray, sample_rate: int) -> np.ndarray:
        x = _check(x, sample_rate)
        peak = _peak(x)
        if peak == 0:
            return x.copy()
        y = x * np.float32(1 / peak)
        top = 0.45 * sample_rate
        for name, params in self.steps:
            params = dict(params)
            if name == "eq":
                params["bands"] = [(k, min(f, top), g, q) for k, f, g, q in params["bands"]]
            for key in ("tone_hz", "damping_hz"):
                if key in params:
                    params[key] = min(params[key], top)
            y = EFFECTS[name](y, sample_rate, **params)
        out_peak = _peak(y)
        if not out_peak > 0:  # an effect cannot silence a sounding stem, but never divide by zero
            return np.zeros_like(x, dtype=np.float32)
        return y * np.float32(peak / out_peak)

    def as_dict(self) -> dict:
        """The chain as JSON-ready data: {"kind", "steps": [{"effect", **params}]}."""
        def plain(v):
            if isinstance(v, (list, tuple)):
                return [plain(e) for e in v]
            return round(v, 4) if isinstance(v, float) else v
        return {"kind": self.kind, "steps": [{"effect": n, **{k: plain(v) for k, v in p.items()}}
                                             for n, p in self.steps]}


def _u(rng, lo, hi) -> float:
    return float(rng.uniform(lo, hi))


def effect_chain(stem_kind: str, rng: np.random.Generator) -> EffectChain:
    """A plausible chain for one stem of kind ``stem_kind`` (:data:`KINDS`), drawn from ``rng``.

    Order: amp distortion (guitars mostly, bass and keys sometimes) → EQ (a low shelf, a mid peak, a high shelf)
    → compressor → reverb → stereo width. Ranges follow common mixing practice: drums compressed hard with
    a short room, bass compressed and kept narrow, guitars driven through an amp with the lows cut, pads wide
    and long. The number of draws is fixed per kind, so one stem's chain never depends on another's.
    """
    if stem_kind not in KINDS:
        raise ValueError(f"stem kind must be one of {KINDS}, got {stem_kind!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    # kind: (P(distortion), drive dB, low shelf dB, mid peak Hz, high shelf dB, P(compressor), ratio,
    #        P(reverb), rt60 s, wet, width)
    table = {
        "drums": (0.05, (3, 9), (0, 4), (300, 800), (0, 5), 0.9, (3, 8), 0.7, (0.3, 1.2), (0.05, 0.25),
                  (0.8, 1.3)),
        "bass": (0.25, (4, 18), (0, 4), (200, 500), (-6, 3), 0.9, (3, 8), 0.15, (0.3, 0.8), (0.03, 0.1),
                 (0.0, 0.5)),
        "guitar": (0.75, (10, 32), (-8, -1), (800, 3000), (-6, 1), 0.5, (2, 5), 0.7, (0.5, 2.0), (0.1, 0.3),
                   (0.6, 1.5)),
        "acoustic": (0.0, (0, 0), (-6, 0), (1500, 4000), (0, 4), 0.6, (2, 4), 0.8, (0.6, 2.0), (0.1, 0.3),
                     (0.8, 1.4)),
        "keys": (0.1, (3, 12), (-4, 2), (400, 2500), (-3, 3), 0.5, (2, 4), 0.8, (0.6, 2.2), (0.1, 0.3),
                 (0.8, 1.5)),
        "lead": (0.15, (4, 18), (-6, 0), (1000, 4000), (-3, 4), 0.7, (2, 6), 0.9, (0.8, 2.5), (0.1, 0.35),
                 (0.5, 1.2)),
        "pad": (0.0, (0, 0), (-8, -2), (300, 2000), (-4, 2), 0.3, (1.5, 3), 1.0, (1.5, 3.5), (0.2, 0.45),
                (1.0, 1.8)),
    }[stem_kind]
    p_dist, drive, low, mid, high, p_comp, ratio, p_rev, rt60, wet, width = table
    # every draw is made whether or not its effect is used: a fixed number of draws per kind
    use_dist, use_comp, use_rev = (float(rng.random()) < p for p in (p_dist, p_comp, p_rev))
    dist = dict(drive_db=_u(rng, *drive), tone_hz=_u(rng, 2000, 6000), bias=_u(rng, 0.0, 0.3),
                mix=_u(rng, 0.7, 1.0))
    bands = [("lowshelf", _u(rng, 60, 200), _u(rng, *low), 0.7),
             ("peak", _u(rng, *mid), _u(rng, -5, 5), _u(rng, 0.7, 2.0)),
             ("highshelf", _u(rng, 4000, 10000), _u(rng, *high), 0.7)]
    comp = dict(threshold_db=_u(rng, -24, -8), ratio=_u(rng, *ratio), attack_ms=_u(rng, 1, 30),
                release_ms=_u(rng, 50, 300), makeup_db=0.0)
    rev = dict(rt60=_u(rng, *rt60), wet=_u(rng, *wet), damping_hz=_u(rng, 3000, 9000),
               predelay_ms=_u(rng, 0, 40), seed=int(rng.integers(2 ** 31)))
    w = _u(rng, *width)
    steps = [("distortion", dist)] if use_dist else []
    steps.append(("eq", {"bands": bands}))
    if use_comp:
        steps.append(("compressor", comp))
    if use_rev:
        steps.append(("reverb", rev))
    steps.append(("stereo_width", {"width": w}))
    return EffectChain(stem_kind, tuple(steps))


@dataclasses.dataclass(frozen=True)
class BusCompression:
    """Mix-bus processing of a whole song: a glue compressor, then a limiter (``steps``: :func:`compressor_gain`
    keyword parameters, thresholds in dB below the mixture's peak). :meth:`gain` is one gain curve for the song:
    multiplying every stem by it compresses the mixture while the stems still sum to it exactly."""

    steps: tuple

    def gain(self, mixture: np.ndarray, sample_rate: int) -> np.ndarray:
        """(T,) float32 gain for ``mixture`` (C, T); all ones for silence."""
        y = _check(mixture, sample_rate)
        peak = _peak(y)
        total = np.ones(y.shape[1], np.float32)
        if peak == 0:
            return total
        y = y * np.float32(1 / peak)
        for params in self.steps:
            g = compressor_gain(y, sample_rate, **params)
            y, total = y * g, total * g
        return total

    def as_dict(self) -> dict:
        """JSON-ready: {"steps": [{compressor parameters}]}."""
        return {"steps": [{k: round(v, 4) for k, v in p.items()} for p in self.steps]}


def bus_compression(rng: np.random.Generator) -> BusCompression:
    """A drawn :class:`BusCompression`: glue (threshold 8–18 dB below the peak, ratio 1.5–4, 5–30 ms attack)
    then a limiter (ratio 20, 0.3 ms attack, threshold 3–12 dB below the peak), as mixing and mastering leave a
    band's record: a lower crest factor than the plain sum of the stems."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    glue = dict(threshold_db=_u(rng, -18, -8), ratio=_u(rng, 1.5, 4), attack_ms=_u(rng, 5, 30),
                release_ms=_u(rng, 100, 400), knee_db=6.0)
    limiter = dict(threshold_db=_u(rng, -12, -3), ratio=20.0, attack_ms=0.3, release_ms=_u(rng, 20, 100),
                   knee_db=2.0)
    return BusCompression((glue, limiter))


def seconds_per_minute(sample_rate: int = 44100, repeats: int = 3) -> dict:
    """Median wall seconds each effect (and a full guitar and pad chain) takes on one minute of stereo noise at
    ``sample_rate``: {name: seconds}."""
    import time

    x = (np.random.default_rng(0).standard_normal((2, 60 * sample_rate)) * 0.1).astype(np.float32)
    calls = {
        "distortion": lambda: distortion(x, sample_rate, drive_db=20, tone_hz=4000, bias=0.1),
        "compressor": lambda: compressor(x, sample_rate, threshold_db=-20, ratio=4, attack_ms=5, release_ms=100),
        "bus_compression": lambda: bus_compression(np.random.default_rng(0)).gain(x, sample_rate),
        "eq": lambda: eq(x, sample_rate, bands=[("lowshelf", 100, 3, 0.7), ("peak", 1000, -4, 1.0),
                                                 ("highshelf", 6000, 2, 0.7)]),
        "reverb": lambda: reverb(x, sample_rate, rt60=2.0, wet=0.3),
        "stereo_width": lambda: stereo_width(x, sample_rate, width=1.4),
    }
    for kind in ("guitar", "pad"):
        chain = effect_chain(kind, np.random.default_rng(1))
        calls[f"chain[{kind}: {'+'.join(n for n, _ in chain.steps)}]"] = lambda c=chain: c(x, sample_rate)
    out = {}
    for name, call in calls.items():
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        out[name] = sorted(times)[len(times) // 2]
    return out


if __name__ == "__main__":
    for name, s in seconds_per_minute().items():
        print(f"{name}: {s:.3f} s per minute of stereo 44.1 kHz audio")
