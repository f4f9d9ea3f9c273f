"""Render-time effects: shapes, silence, bounds, seeded chains, and each effect doing what it says."""

import numpy as np
import pytest
from scipy.signal import sosfreqz

from trackformer.data.effects import (
    KINDS,
    biquad,
    bus_compression,
    compressor,
    compressor_gain,
    distortion,
    effect_chain,
    eq,
    reverb,
    reverb_ir,
    seconds_per_minute,
    stem_kind,
    stereo_width,
)

SR = 16000


def sine(freq, seconds=1.0, amp=0.5, channels=2, sr=SR):
    t = np.arange(round(seconds * sr)) / sr
    return np.repeat((amp * np.sin(2 * np.pi * freq * t))[None], channels, 0).astype(np.float32)


def noise(seconds=1.0, seed=0, channels=2):
    return (np.random.default_rng(seed).standard_normal((channels, round(seconds * SR))) * 0.2).astype(np.float32)


EFFECTS = {
    "distortion": lambda x: distortion(x, SR, drive_db=20, tone_hz=4000, bias=0.2),
    "compressor": lambda x: compressor(x, SR, threshold_db=-20, ratio=4, attack_ms=5, release_ms=100),
    "eq": lambda x: eq(x, SR, bands=[("lowshelf", 100, 4, 0.7), ("peak", 1000, -6, 1.0), ("highshelf", 5000, 3, 0.7)]),
    "reverb": lambda x: reverb(x, SR, rt60=0.8, wet=0.3, seed=1),
    "stereo_width": lambda x: stereo_width(x, SR, width=1.5),
}


def level_db(x):
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def band_db(x, freq, sr=SR):
    """Magnitude (dB) of the spectrum of channel 0 at ``freq`` (Hann window, the bin nearest ``freq``)."""
    spec = np.abs(np.fft.rfft(x[0] * np.hanning(x.shape[1])))
    return 20 * np.log10(spec[round(freq * x.shape[1] / sr)] + 1e-12)


@pytest.mark.parametrize("name", list(EFFECTS))
def test_each_effect_keeps_shape_and_dtype_and_passes_silence(name):
    for channels in (1, 2):
        x = noise(channels=channels)
        y = EFFECTS[name](x)
        assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
        assert not np.shares_memory(x, y)
        silent = EFFECTS[name](np.zeros((channels, SR), np.float32))
        assert silent.shape == (channels, SR) and not silent.any()
    assert EFFECTS[name](np.zeros((2, 0), np.float32)).shape == (2, 0)


@pytest.mark.parametrize("name", list(EFFECTS))
def test_bad_input_is_named(name):
    with pytest.raises(ValueError, match="C, T"):
        EFFECTS[name](np.zeros((3, 100), np.float32))
    with pytest.raises(ValueError, match="C, T"):
        EFFECTS[name](np.zeros(100, np.float32))
    bad = noise()
    bad[0, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        EFFECTS[name](bad)


def test_bad_parameters_are_named():
    x = noise()
    with pytest.raises(ValueError, match="drive_db"):
        distortion(x, SR, drive_db=-1, tone_hz=3000)
    with pytest.raises(ValueError, match="tone_hz"):
        distortion(x, SR, drive_db=10, tone_hz=9000)  # above Nyquist at 16 kHz
    with pytest.raises(ValueError, match="ratio"):
        compressor(x, SR, threshold_db=-10, ratio=0.5, attack_ms=5, release_ms=50)
    with pytest.raises(ValueError, match="kind"):
        eq(x, SR, bands=[("notch", 1000, 3, 1)])
    with pytest.raises(ValueError, match="q must"):
        eq(x, SR, bands=[("peak", 1000, 3, 0)])
    with pytest.raises(ValueError, match="wet"):
        reverb(x, SR, rt60=1, wet=1.5)
    with pytest.raises(ValueError, match="rt60"):
        reverb(x, SR, rt60=0, wet=0.5)
    with pytest.raises(ValueError, match="width"):
        stereo_width(x, SR, width=-1)
    with pytest.raises(ValueError, match="sample_rate"):
        eq(x, 0, bands=[])


def test_distortion_adds_harmonics_of_a_sine_and_keeps_the_peak():
    x = sine(250, amp=0.3)
    assert band_db(x, 750) - band_db(x, 250) < -80  # a pure sine: no third harmonic
    y = distortion(x, SR, drive_db=24, tone_hz=6000)
    assert band_db(y, 750) - band_db(y, 250) > -20  # odd harmonics from the symmetric curve
    assert band_db(y, 500) - band_db(y, 250) < -60  # ... and no even ones
    asym = distortion(x, SR, drive_db=24, tone_hz=6000, bias=0.3)
    assert band_db(asym, 500) - band_db(asym, 250) > -40  # the bias adds even harmonics
    assert abs(asym[:, SR // 4: SR // 4 + 64 * 180].mean()) < 1e-3 * np.abs(asym).max()  # whole periods: no DC
    assert abs(np.tanh(8 * x + 0.3).mean() - np.tanh(0.3)) > 0.02  # which the curve alone would leave
    assert np.abs(y).max() == pytest.approx(0.3, rel=1e-5)  # returned at the input's peak
    darker = distortion(x, SR, drive_db=24, tone_hz=800)
    assert band_db(darker, 2750) < band_db(y, 2750) - 6  # the tone control removes fizz
    gentle = distortion(x, SR, drive_db=0, tone_hz=6000)
    assert band_db(gentle, 750) - band_db(gentle, 250) < band_db(y, 750) - band_db(y, 250) - 10


def test_compressor_lowers_the_crest_factor_and_follows_its_curve():
    t = np.arange(2 * SR) / SR
    swell = (0.05 + 0.95 * (0.5 - 0.5 * np.cos(2 * np.pi * t))).astype(np.float32)  # 0.05 -> 1 -> 0.05 per second
    x = sine(440, seconds=2.0, amp=1.0) * swell
    y = compressor(x, SR, threshold_db=-30, ratio=8, attack_ms=2, release_ms=50)

    def crest(a):
        return np.abs(a).max() / np.sqrt(np.mean(a ** 2))

    assert crest(y) < 0.75 * crest(x)  # a sine's own crest factor, sqrt(2), is the floor
    # loud and quiet sections 26 dB apart; the quiet one is below the threshold, the loud one 20 dB over it
    steps = sine(440, seconds=2.0, amp=1.0) * np.where((np.arange(2 * SR) // (SR // 2)) % 2 == 0, 1.0, 0.05)
    z = compressor(steps.astype(np.float32), SR, threshold_db=-20, ratio=4, attack_ms=2, release_ms=20, knee_db=0)
    loud, quiet = z[:, SR // 4: SR // 2], z[:, SR // 2 + SR // 4: SR]
    assert level_db(loud) - level_db(quiet) == pytest.approx(26.0 - 15.0, abs=0.5)
    # steady state of a 0 dBFS sine (peak 1) with a hard knee: 20 dB over becomes 5 dB over, so -15 dB of gain
    steady = compressor(sine(440, amp=1.0), SR, threshold_db=-20, ratio=4, attack_ms=2, release_ms=50, knee_db=0)
    assert 20 * np.log10(np.abs(steady[:, SR // 2:]).max()) == pytest.approx(-15.0, abs=0.5)
    made_up = compressor(sine(440, amp=1.0), SR, threshold_db=-20, ratio=4, attack_ms=2, release_ms=50, knee_db=0,
                         makeup_db=6)
    assert level_db(made_up[:, SR // 2:]) - level_db(steady[:, SR // 2:]) == pytest.approx(6.0, abs=0.01)
    quiet = sine(440, amp=0.05)  # -26 dBFS: below the threshold less half the knee: untouched
    np.testing.assert_array_equal(compressor(quiet, SR, threshold_db=-20, ratio=4, attack_ms=2, release_ms=50), quiet)


@pytest.mark.parametrize("kind,freq,gain", [("peak", 1000.0, 6.0), ("peak", 300.0, -9.0), ("peak", 3000.0, 3.0)])
def test_peak_eq_gain_at_the_centre_frequency(kind, freq, gain):
    x = sine(freq, seconds=1.0, amp=0.1)
    y = eq(x, SR, bands=[(kind, freq, gain, 1.2)])
    measured = level_db(y[:, SR // 4:]) - level_db(x[:, SR // 4:])  # past the filter's start-up
    assert measured == pytest.approx(gain, abs=0.5)
    far = sine(freq * 4 if freq < 2000 else freq / 4, amp=0.1)  # two octaves away: little change
    assert abs(level_db(eq(far, SR, bands=[(kind, freq, gain, 1.2)])[:, SR // 4:]) - level_db(far[:, SR // 4:])) < 1.0


def test_shelves_reach_their_gain_beyond_the_corner_and_half_at_it():
    for kind, corner, inside, outside in (("lowshelf", 200.0, 20.0, 4000.0), ("highshelf", 2000.0, 7500.0, 50.0)):
        for gain in (-6.0, 4.0):
            sos = biquad(kind, corner, gain, 0.7, SR)[None]
            freqs, h = sosfreqz(sos, worN=[inside, corner, outside], fs=SR)
            db = 20 * np.log10(np.abs(h))
            assert db[0] == pytest.approx(gain, abs=0.5) and db[1] == pytest.approx(gain / 2, abs=0.5)
            assert abs(db[2]) < 0.5
    x = noise()
    np.testing.assert_allclose(eq(x, SR, bands=[("peak", 1000, 0.0, 1.0)]), x, atol=1e-6)  # 0 dB: identity


def test_reverb_adds_a_decaying_decorrelated_tail():
    x = np.zeros((2, 2 * SR), np.float32)
    x[:, :SR // 10] = noise(0.1)[:1]  # a 0.1 s burst, identical in both channels (centred)
    y = reverb(x, SR, rt60=1.0, wet=0.5, predelay_ms=0, seed=3)
    tail = y[:, SR // 5:]
    assert level_db(tail[:, : SR // 5]) > level_db(x[:, : SR // 10]) - 30  # the room rings on after the burst
    assert level_db(tail[:, SR // 2: SR // 2 + SR // 5]) < level_db(tail[:, : SR // 5]) - 15  # and decays
    assert np.corrcoef(tail[0], tail[1])[0, 1] < 0.5  # each side its own room response: width
    np.testing.assert_array_equal(reverb(x, SR, rt60=1.0, wet=0.0), x)
    ir = reverb_ir(SR, rt60=1.0, damping_hz=5000, predelay_ms=20, channels=1, seed=0)
    assert ir.shape == (1, round(0.02 * SR) + SR) and not ir[:, : round(0.02 * SR)].any()
    assert np.sum(ir ** 2) == pytest.approx(1.0)
    early, late = ir[0, 320:320 + 1600], ir[0, 320 + 8000: 320 + 9600]  # 0-0.1 s and 0.5-0.6 s after the pre-delay
    assert 10 * np.log10(np.mean(early ** 2) / np.mean(late ** 2)) == pytest.approx(30.0, abs=4.0)  # 60 dB per rt60
    np.testing.assert_array_equal(reverb(x, SR, rt60=1.0, wet=0.5, predelay_ms=0, seed=3), y)  # seeded
    assert not np.array_equal(reverb(x, SR, rt60=1.0, wet=0.5, predelay_ms=0, seed=4), y)


def test_stereo_width_zero_is_mono_one_is_unchanged():
    x = noise()
    mono = stereo_width(x, SR, width=0.0)
    np.testing.assert_array_equal(mono[0], mono[1])
    np.testing.assert_allclose(mono[0], x.mean(0), atol=1e-7)
    np.testing.assert_allclose(stereo_width(x, SR, width=1.0), x, atol=1e-7)
    wide = stereo_width(x, SR, width=2.0)
    side = lambda a: a[0] - a[1]  # noqa: E731
    np.testing.assert_allclose(side(wide), 2 * side(x), atol=1e-6)
    np.testing.assert_allclose(wide.sum(0), x.sum(0), atol=1e-6)  # the mid is kept
    one = noise(channels=1)
    np.testing.assert_array_equal(stereo_width(one, SR, width=0.0), one)


def test_bus_compression_is_one_gain_curve_that_lowers_the_crest_factor():
    t = np.arange(2 * SR)
    hits = np.exp(-(t % (SR // 4)) / (0.005 * SR))  # a mix: a short drum hit every 0.25 s over sustained chords
    mix = (noise(2.0, seed=2) * 4 * hits + sine(220, 2.0, amp=0.2) + sine(330, 2.0, amp=0.15)).astype(np.float32)
    bus = bus_compression(np.random.default_rng(0))
    assert bus == bus_compression(np.random.default_rng(0)) and bus != bus_compression(np.random.default_rng(1))
    gain = bus.gain(mix, SR)
    assert gain.shape == (2 * SR,) and gain.dtype == np.float32 and 0 < gain.min() and gain.max() <= 1.0

    def crest(a):
        return np.abs(a).max() / np.sqrt(np.mean(np.square(a, dtype=np.float64)))

    assert crest(mix * gain) < 0.8 * crest(mix)
    # the same curve for any scale of the same mixture (thresholds are relative to its peak)
    np.testing.assert_allclose(bus.gain(mix * 0.01, SR), gain, atol=1e-5)
    assert (bus.gain(np.zeros((2, SR), np.float32), SR) == 1).all()
    assert bus.as_dict()["steps"][-1]["ratio"] == 20.0
    quiet = sine(440, amp=0.05)
    assert (compressor_gain(quiet, SR, threshold_db=-20, ratio=4, attack_ms=2, release_ms=50) == 1).all()
    with pytest.raises(TypeError, match="Generator"):
        bus_compression(3)


def test_stem_kinds_from_roles_and_programs():
    assert stem_kind("drums", None) == "drums"
    assert stem_kind("bass", 33) == "bass" and stem_kind("counter", 35) == "bass"
    assert stem_kind("chords", 29) == "guitar" and stem_kind("chords", 30) == "guitar"
    assert stem_kind("chords", 25) == "acoustic"
    assert stem_kind("chords", 0) == "keys" and stem_kind("chords", 16) == "keys"
    assert stem_kind("pad", 19) == "pad" and stem_kind("chords", 89) == "pad" and stem_kind("counter", 48) == "pad"
    assert stem_kind("lead", 73) == "lead" and stem_kind("lead", 81) == "lead"
    with pytest.raises(ValueError, match="program"):
        stem_kind("lead", 128)


def test_chains_are_seeded_bounded_and_plausible():
    x = noise(2.0, seed=5) * 3  # loud: peaks past full scale
    for kind in KINDS:
        for seed in range(4):
            a = effect_chain(kind, np.random.default_rng(seed))
            b = effect_chain(kind, np.random.default_rng(seed))
            assert a == b and a.as_dict() == b.as_dict()
            ya, yb = a(x, SR), b(x, SR)
            np.testing.assert_array_equal(ya, yb)  # same seed, bit-identical audio
            assert ya.shape == x.shape and ya.dtype == np.float32 and np.isfinite(ya).all()
            assert np.abs(ya).max() == pytest.approx(np.abs(x).max(), rel=1e-5)  # at the input's peak, never above
            assert not a(np.zeros((2, SR), np.float32), SR).any()
            assert a(noise(channels=1), 44100).shape == (1, SR)  # one chain at any rate and channel count
        assert not np.array_equal(effect_chain(kind, np.random.default_rng(0))(x, SR),
                                  effect_chain(kind, np.random.default_rng(1))(x, SR))
    steps = {k: [[n for n, _ in effect_chain(k, np.random.default_rng(s)).steps] for s in range(60)] for k in KINDS}
    assert sum("distortion" in s for s in steps["guitar"]) > 30  # guitars mostly through a driven amp
    assert not any("distortion" in s for s in steps["pad"] + steps["acoustic"])
    assert all("reverb" in s for s in steps["pad"]) and sum("compressor" in s for s in steps["drums"]) > 45
    assert all(s[-1] == "stereo_width" and "eq" in s for k in KINDS for s in steps[k])
    with pytest.raises(ValueError, match="stem kind"):
        effect_chain("kazoo", np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        effect_chain("bass", 0)


def test_cost_is_measured_per_effect():
    cost = seconds_per_minute(sample_rate=SR, repeats=1)
    assert set(EFFECTS) | {"bus_compression"} <= set(cost) and any(k.startswith("chain[guitar") for k in cost)
    assert all(0 < s < 60 for s in cost.values())
