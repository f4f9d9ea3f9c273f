"""trackformer.separate: chunked inference, order-keeping stitching, mixture consistency, streamed output files
in every format, the mask picture.

Also holds the small models and the checkpoint writer that tests/test_cli.py and tests/test_evaluate.py reuse.
"""

import json
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from trackformer.metrics import effective_mask_count, mask_overlap, si_snr
from trackformer.models import PerformerSeparator, SeparatorConfig
from trackformer.models.stft import istft, stft, stft_frames
from trackformer.separate import (
    DEFAULT_OVERLAP_FRACTION,
    SeparationStream,
    TopBandShares,
    chunk_starts,
    crossfade,
    match_order,
    model_channels,
    owned_frames,
    resolve_window,
    separate_file,
    separate_waveform,
    stem_paths,
)

RATE = 8000


def tiny_performer(channels: int = 2, sample_rate: int = RATE) -> PerformerSeparator:
    """A random-weight Performer small enough for CPU tests (1 layer, d_model 32, STFT 256 / 64)."""
    cfg = SeparatorConfig(n_fft=256, hop=64, channels=channels, d_model=32, n_layers=1, n_heads=2, nb_features=16,
                          ffn=32, dropout=0.0, sample_rate=sample_rate)
    return PerformerSeparator(cfg).eval()


def write_checkpoint(path, model: nn.Module, *, stage: str = "mixit", segment_seconds: float = 1.0) -> str:
    """A checkpoint in the trainer's format (trackformer.checkpoint_io.save_checkpoint) holding ``model``."""
    from trackformer.checkpoint_io import save_checkpoint
    from trackformer.registry import model_config, model_name

    config = dict(sample_rate=model.sample_rate, channels=model_channels(model) or 2, segment_seconds=segment_seconds,
                  data="synthetic")
    return save_checkpoint(str(path), dict(stage=stage, step=1, config=config, model=dict(
        name=model_name(model), config=model_config(model), state=model.state_dict())))


def two_tones(seconds: float = 4.0, rate: int = RATE):
    """A 300 Hz tone fading out and a 2 kHz tone fading in (which is louder swaps half-way), (1, T) each."""
    t = torch.arange(round(seconds * rate), dtype=torch.float64) / rate
    ramp = t / seconds
    low = (0.5 * (1 - ramp) + 0.05) * torch.sin(2 * math.pi * 300 * t)
    high = (0.5 * ramp + 0.05) * torch.sin(2 * math.pi * 2000 * t)
    return low.float()[None], high.float()[None]


class PermutingBandSplit(nn.Module):
    """Stand-in separator: output 0 = content below 1 kHz, output 1 = the rest, outputs 2..M-1 silent, then the
    M outputs permuted by a different permutation on every call (so every chunk comes out in another order)."""

    def __init__(self, n_sources: int = 8, sample_rate: int = RATE):
        super().__init__()
        self.sample_rate, self.n_sources = sample_rate, n_sources
        self.weight = nn.Parameter(torch.zeros(()))  # gives the module a device
        self.perms = []

    def forward(self, x):
        spec = torch.fft.rfft(x.double(), dim=-1)
        freqs = torch.fft.rfftfreq(x.shape[-1], 1 / self.sample_rate)
        low = torch.fft.irfft(spec * (freqs < 1000), n=x.shape[-1], dim=-1)
        out = torch.zeros(x.shape[0], self.n_sources, *x.shape[1:], dtype=torch.float64)
        out[:, 0], out[:, 1] = low, x.double() - low
        perm = torch.roll(torch.arange(self.n_sources), len(self.perms) * 3 + 1)
        self.perms.append(perm)
        return out[:, perm].to(x.dtype)


class Constant(nn.Module):
    """Stand-in that is NOT mixture-consistent: every one of its M outputs is 0.3·x (they sum to 2.4·x)."""

    def __init__(self, n_sources: int = 8, sample_rate: int = RATE):
        super().__init__()
        self.sample_rate, self.n_sources = sample_rate, n_sources
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return 0.3 * x[:, None].expand(-1, self.n_sources, -1, -1)


def error_db(estimate, reference) -> float:
    return 10 * math.log10(float((estimate - reference).double().pow(2).sum() / reference.double().pow(2).sum()))


# --------------------------------------------------------------------------------------------- pieces
def test_chunk_starts_cover_the_signal_and_crossfades_sum_to_one():
    for length, chunk, overlap in ((1000, 300, 70), (300, 300, 70), (299, 300, 70), (301, 300, 70), (5, 3, 1)):
        starts = chunk_starts(length, chunk, overlap)
        total = torch.zeros(length)
        for i, s in enumerate(starts):
            e = min(s + chunk, length)
            assert e - s > overlap or len(starts) == 1
            total[s:e] += crossfade(e - s, overlap, fade_in=i > 0, fade_out=i < len(starts) - 1)
        assert min(s + chunk for s in starts[-1:]) >= length
        torch.testing.assert_close(total, torch.ones(length), atol=1e-6, rtol=0)


def test_owned_frames_give_each_stretch_of_the_song_to_one_window():
    length, chunk, overlap, hop = 20_000, 3000, 1500, 64
    starts = chunk_starts(length, chunk, overlap)
    centres = []
    for i, s in enumerate(starts):
        e = min(s + chunk, length)
        own = owned_frames(s, e, hop, overlap, first=i == 0, next_start=starts[i + 1] if i + 1 < len(starts) else None)
        centres.append(s + own * hop)
        assert len(own) > 0 and bool((s + own * hop <= e).all())
    flat = torch.cat(centres)
    assert bool((flat[1:] > flat[:-1]).all())  # in order, no stretch counted twice
    assert bool((flat[1:] - flat[:-1] <= hop).all()) and int(flat[0]) == 0 and int(flat[-1]) > length - hop
    assert abs(len(flat) - (1 + length // hop)) <= len(starts)  # about one song's worth of frames


def test_stft_frames_equal_the_same_frames_of_the_full_stft():
    x, window = torch.randn(2, 3, 5001), torch.hann_window(512)
    full = stft(x, 512, 128, window)
    for a, b in ((0, 1), (0, 7), (10, 25), (full.shape[-1] - 3, full.shape[-1])):
        torch.testing.assert_close(stft_frames(x, a, b, 512, 128, window), full[..., a:b], atol=1e-4, rtol=1e-5)


def test_match_order_recovers_a_permutation():
    a = torch.randn(8, 2, 100)
    perm = torch.randperm(8)
    b = a[perm] + 0.01 * torch.randn(8, 2, 100)
    assert torch.equal(perm[match_order(a, b)], torch.arange(8))


# --------------------------------------------------------------------------------------- separate_waveform
def test_stems_sum_to_input_over_many_chunks():
    model = tiny_performer()
    x = 0.1 * torch.randn(2, round(2.3 * RATE))
    sources, info = separate_waveform(model, x, RATE, chunk_seconds=0.5, overlap_seconds=0.125)
    assert sources.shape == (8, 2, x.shape[1]) and sources.dtype == torch.float32
    assert info["n_chunks"] == 6
    assert info["raw_consistency_db"] < -60  # the stitching itself keeps the sum, before any projection
    assert error_db(sources.sum(0), x) < -60


def test_half_window_overlap_of_an_odd_length_window():
    chunk = 4003  # odd: half of it (2001.5 samples) must round down, not up past half the window
    x = 0.1 * torch.randn(2, 3 * chunk)
    sources, info = separate_waveform(tiny_performer(), x, RATE, chunk_seconds=chunk / RATE,
                                      overlap_seconds=chunk / RATE * DEFAULT_OVERLAP_FRACTION)
    assert info["n_chunks"] == 5 and error_db(sources.sum(0), x) < -60


def test_chunked_equals_unchunked_below_one_chunk():
    model = tiny_performer()
    x = 0.1 * torch.randn(2, 3001)  # shorter than one 0.5 s chunk (4000 samples)
    sources, info = separate_waveform(model, x, RATE, chunk_seconds=0.5, overlap_seconds=0.1)
    assert info["n_chunks"] == 1
    with torch.no_grad():
        direct = model(x[None])[0]
    torch.testing.assert_close(sources, direct, atol=1e-6, rtol=1e-5)


def test_stitching_keeps_the_order_of_changing_sources():
    low, high = two_tones()
    model = PermutingBandSplit()
    sources, info = separate_waveform(model, low + high, RATE, chunk_seconds=0.5, overlap_seconds=0.1)
    assert info["n_chunks"] > 8 and len({tuple(p.tolist()) for p in model.perms}) > 1  # it did permute
    i_low = int(torch.argmax(torch.stack([si_snr(s, low, signal_dims=2) for s in sources])))
    i_high = int(torch.argmax(torch.stack([si_snr(s, high, signal_dims=2) for s in sources])))
    assert i_low != i_high
    # one output holds the whole low tone and another the whole high tone, across every chunk boundary
    assert si_snr(sources[i_low], low, signal_dims=2) > 30
    assert si_snr(sources[i_high], high, signal_dims=2) > 30
    # the six other outputs stay silent all along
    rest = [i for i in range(8) if i not in (i_low, i_high)]
    assert float(sources[rest].abs().max()) < 1e-5


def test_inconsistent_model_and_resampling_still_sum_to_input():
    x = 0.2 * torch.randn(1, 11025 * 2)  # mono at 11.025 kHz into an 8 kHz model
    sources, info = separate_waveform(Constant(), x, 11025, chunk_seconds=0.5, overlap_seconds=0.1, analysis=True)
    assert sources.shape == (8, 1, x.shape[1])
    assert info["analysis"]["mask_source"] == "stems"  # no masks of its own: derived from the stems
    assert info["analysis"]["effective_mask_count"] == pytest.approx(8.0, rel=1e-4)  # 8 equal outputs
    assert info["raw_consistency_db"] > 0  # 2.4·x − x: the model itself is far off
    assert error_db(sources.sum(0), x) < -60


def test_channel_adaptation():
    mono, stereo = 0.1 * torch.randn(1, 3000), 0.1 * torch.randn(2, 3000)
    out, _ = separate_waveform(tiny_performer(channels=2), mono, RATE, 0.25, 0.05)  # mono into a stereo model
    assert out.shape == (8, 1, 3000) and error_db(out.sum(0), mono) < -60
    out, _ = separate_waveform(tiny_performer(channels=1), stereo, RATE, 0.25, 0.05)  # stereo into mono
    assert out.shape == (8, 2, 3000) and error_db(out.sum(0), stereo) < -60


@pytest.mark.parametrize("audio,match", [
    (torch.full((1, 100), float("nan")), "NaN"),
    (torch.zeros(2, 100), "silent"),
    (torch.zeros(2, 0), "empty"),
    (torch.ones(3, 100), "1 or 2 channels"),
    (torch.ones(100), "shape"),
])
def test_bad_audio_is_rejected(audio, match):
    with pytest.raises(ValueError, match=match):
        separate_waveform(Constant(), audio, RATE, 0.5, 0.1)


def test_bad_chunking_is_rejected():
    x = torch.randn(1, 1000)
    with pytest.raises(ValueError, match="overlap_seconds"):
        separate_waveform(Constant(), x, RATE, 0.5, 0.0)
    with pytest.raises(ValueError, match="at most half"):
        separate_waveform(Constant(), x, RATE, 0.5, 0.26)
    with pytest.raises(ValueError, match="chunk_seconds"):
        separate_waveform(Constant(), x, RATE, -1.0, 0.1)
    with pytest.raises(ValueError, match="sample_rate"):
        separate_waveform(Constant(), x, 0, 0.5, 0.1)


# ---------------------------------------------------------------------------- the band above the model's Nyquist
class TimeGate(nn.Module):
    """Stand-in whose output 0 is its window's first ``split`` seconds, output 1 the rest, outputs 2..M-1 silent:
    in one window, which output holds the input changes half-way."""

    def __init__(self, split: float, n_sources: int = 8, sample_rate: int = RATE):
        super().__init__()
        self.sample_rate, self.n_sources, self.split = sample_rate, n_sources, split
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        gate = (torch.arange(x.shape[-1]) < self.split * self.sample_rate).to(x.dtype)
        out = torch.zeros(x.shape[0], self.n_sources, *x.shape[1:], dtype=x.dtype)
        out[:, 0], out[:, 1] = x * gate, x * (1 - gate)
        return out


def high_band_energy(wave: torch.Tensor, rate: int, cutoff: float) -> torch.Tensor:
    """Energy (…) of ``wave`` (…, T) above ``cutoff`` Hz."""
    spec = torch.fft.rfft(wave.double(), dim=-1)
    return spec[..., torch.fft.rfftfreq(wave.shape[-1], 1 / rate) > cutoff].abs().pow(2).sum(-1)


@pytest.mark.parametrize("channels", [1, 2])
def test_high_band_follows_the_outputs_of_the_top_band(channels):
    """22.05 kHz white noise into an 8 kHz model that gives the first second to output 0, the rest to output 1:
    with "shares" the 4-11 kHz band goes with them; with "even" each output gets an eighth of it."""
    rate, length = 22050, 2 * 22050 + 7  # odd length
    x = 0.1 * torch.randn(channels, length, generator=torch.Generator().manual_seed(0))
    results = {mode: separate_waveform(TimeGate(1.0), x, rate, chunk_seconds=4.0, overlap_seconds=1.0,
                                       high_band=mode) for mode in ("shares", "even")}
    first, second = slice(0, int(0.8 * rate)), slice(int(1.2 * rate), length)  # away from the switch
    for mode, (sources, info) in results.items():
        assert info["high_band"] == mode and sources.shape == (8, channels, length)
        assert torch.isfinite(sources).all() and error_db(sources.sum(0), x) < -100
        energy = [high_band_energy(sources[:, :, part], rate, 4500).sum(1) for part in (first, second)]  # (8,)
        shares = [e / e.sum() for e in energy]
        if mode == "shares":
            assert shares[0][0] > 0.99 and shares[1][1] > 0.99
        else:  # an eighth of the amplitude in each: equal energies
            assert torch.allclose(shares[0], torch.full((8,), 1 / 8, dtype=torch.float64), atol=0.01)
    difference = results["shares"][0] - results["even"][0]  # only the band the model cannot see differs
    above, total = high_band_energy(difference, rate, 3000).sum(), high_band_energy(difference, rate, 0).sum()
    assert float(total - above) < 1e-4 * float(total)  # below 3 kHz: the resampling filter's passband ripple


def test_high_band_of_silence_and_of_a_model_at_the_input_rate():
    """Silent stretches (no top-band energy: shares 1/M) give zeros, not NaN; a model at the input's rate or
    above has no high band to split."""
    rate = 22050
    x = torch.zeros(2, 3 * rate + 1)
    x[:, rate:2 * rate] = 0.1 * torch.randn(2, rate, generator=torch.Generator().manual_seed(1))
    sources, info = separate_waveform(PermutingBandSplit(), x, rate, chunk_seconds=0.5, overlap_seconds=0.25)
    assert info["high_band"] == "shares" and torch.isfinite(sources).all()
    assert error_db(sources.sum(0), x) < -100
    assert float(sources[..., :rate // 2].abs().max()) < 1e-6 and float(sources[..., -rate // 2:].abs().max()) < 1e-6
    _, info = separate_waveform(PermutingBandSplit(), x[:, rate:rate + RATE], RATE, 0.5, 0.25)
    assert info["high_band"] is None
    with pytest.raises(ValueError, match="high_band must be one of shares, even"):
        separate_waveform(PermutingBandSplit(), x, rate, 0.5, 0.25, high_band="spread")


def shares_at(shares: TopBandShares, times: np.ndarray, channels: int = 2) -> torch.Tensor:
    """(M, C, n) shares at ``times``: what they add of a residual of ones to outputs of zeros."""
    m = shares.shares[0].shape[0]
    return shares.add_shares(torch.zeros(m, channels, len(times)), torch.ones(channels, len(times)), times)


def test_top_band_shares_do_not_depend_on_the_blocks():
    """Frames analysed as blocks arrive equal those of the whole signal at once; shares sum to 1."""
    outputs = torch.randn(3, 2, 5000, generator=torch.Generator().manual_seed(2))
    outputs[0, :, 2000:] = 0  # output 0 silent in the second part
    whole, pieces = TopBandShares(RATE, (2000, 3600)), TopBandShares(RATE, (2000, 3600))
    whole.push(outputs)
    for a, b in zip([0, 1, 300, 301, 2999], [1, 300, 301, 2999, 5000]):
        pieces.push(outputs[..., a:b])
    times = np.arange(5000, dtype=np.float64)
    for shares in (whole, pieces):
        shares.finish()
    assert torch.allclose(shares_at(whole, times), shares_at(pieces, times))
    gains = shares_at(whole, times)
    assert torch.allclose(gains.sum(0), torch.ones(2, 5000)) and float(gains[0, :, 2300:].max()) == 0
    short = TopBandShares(RATE, (2000, 3600))
    short.push(outputs[..., :10])  # shorter than one frame
    assert short.known_until() == -math.inf
    short.finish()
    assert short.known_until() == math.inf and torch.allclose(shares_at(short, times).sum(0), torch.ones(2, 5000))


# ------------------------------------------------------------------------------------------ analysis, files
def test_stem_derived_masks_of_a_model_without_masks():
    low, high = two_tones(3.0)  # equal energy overall
    _, info = separate_waveform(PermutingBandSplit(), low + high, RATE, 0.5, 0.1, analysis=True)
    a = info["analysis"]
    assert a["mask_source"] == "stems"
    assert len(info["silent_outputs"]) == 6  # only the two band outputs carry sound
    assert 1.0 <= a["mask_overlap"] < 1.05  # the tones are 1.7 kHz apart: masks almost disjoint
    assert 1.9 < a["effective_mask_count"] < 2.05
    assert a["picture"]["masks"].shape[0] == 8 and a["picture"]["mix_db"].shape == a["picture"]["masks"].shape[1:]


def test_model_masks_in_one_window_give_the_metrics_of_the_model_masks():
    model = tiny_performer()
    x = 0.1 * torch.randn(2, 3001)
    _, info = separate_waveform(model, x, RATE, 0.5, 0.1, analysis=True)
    with torch.no_grad():
        _, masks = model(x[None], return_masks=True)
        mag = model.spectrogram(x[None]).abs()
    assert info["analysis"]["mask_source"] == "model"
    assert info["analysis"]["effective_mask_count"] == pytest.approx(float(effective_mask_count(masks, mag)[0]),
                                                                     rel=1e-5)
    assert info["analysis"]["mask_overlap"] == pytest.approx(float(mask_overlap(masks, mag)[0]), rel=1e-5)


class MaskedBandSplit(nn.Module):
    """Stand-in with masks (like the Performer): one-hot masks, output 0 below 1 kHz, output 1 above, the rest
    zero, permuted differently on every call; STFT 256 / 64."""

    has_masks = True

    def __init__(self, n_sources: int = 8):
        super().__init__()
        self.sample_rate, self.n_sources = RATE, n_sources
        self.config = SimpleNamespace(hop=64)
        self.weight = nn.Parameter(torch.zeros(()))
        self.calls = 0

    def spectrogram(self, x):
        return stft(x, 256, 64, torch.hann_window(256))

    def forward(self, x, return_masks=False, return_magnitude=False):
        spec = self.spectrogram(x)  # (B, C, F, L)
        low = (torch.fft.rfftfreq(256, 1 / RATE) < 1000).float()[:, None]
        masks = torch.zeros(x.shape[0], self.n_sources, *spec.shape[1:])
        masks[:, 0], masks[:, 1] = low, 1 - low
        masks = masks[:, torch.roll(torch.arange(self.n_sources), 3 * self.calls + 1)]
        self.calls += 1
        est = istft(masks * spec[:, None], 256, 64, torch.hann_window(256), x.shape[-1])
        if return_magnitude:
            return est, masks, spec.abs()
        return (est, masks) if return_masks else est


def test_mask_picture_follows_the_output_order_across_chunks():
    low, high = two_tones(3.0)
    model = MaskedBandSplit()
    sources, info = separate_waveform(model, low + high, RATE, 0.5, 0.1, analysis=True)
    assert info["n_chunks"] > 5 and info["raw_consistency_db"] < -60
    i_low = int(torch.argmax(torch.stack([si_snr(s, low, signal_dims=2) for s in sources])))
    picture = info["analysis"]["picture"]
    low_bins = torch.fft.rfftfreq(256, 1 / RATE) < 900
    assert picture["masks"].shape[0] == 8 and picture["seconds_per_column"] > 0
    # every column: the low band belongs to output i_low in the picture too, not to whoever held it per chunk
    torch.testing.assert_close(picture["masks"][i_low][low_bins], torch.ones(int(low_bins.sum()),
                                                                              picture["masks"].shape[2]))
    assert info["analysis"]["mask_overlap"] == pytest.approx(1.0, abs=1e-6)
    assert info["analysis"]["effective_mask_count"] == pytest.approx(2.0, abs=0.01)  # tones of equal energy


@pytest.mark.parametrize("rate,channels", [(RATE, 2), (11025, 1)])
def test_separate_file_writes_stems_picture_and_json(tmp_path, rate, channels):
    song = tmp_path / "my song.flac"
    audio = 0.1 * np.random.default_rng(0).standard_normal((round(1.7 * rate), channels)).astype(np.float32)
    sf.write(song, audio, rate)
    result = separate_file(tiny_performer(), str(song), str(tmp_path / "out"), chunk_seconds=0.5,
                           overlap_seconds=0.1)
    folder = tmp_path / "out" / "my song"
    stems = []
    for i in range(8):
        data, sr = sf.read(folder / f"source_{i + 1}.wav", always_2d=True)
        assert sr == rate and data.shape == audio.shape
        assert sf.info(folder / f"source_{i + 1}.wav").subtype == "PCM_16"  # the default, as demucs
        stems.append(data)
    mix, _ = sf.read(song, always_2d=True)  # the file as soundfile decodes it (FLAC is 16-bit)
    assert error_db(torch.from_numpy(np.sum(stems, axis=0)), torch.from_numpy(mix)) < -60
    assert (folder / "masks.png").stat().st_size > 1000
    saved = json.loads((folder / "separation.json").read_text())
    assert saved["sample_rate"] == rate and saved["channels"] == channels and saved["clipped_samples"] == 0
    assert len(saved["output_energy_db"]) == 8 and 1 <= saved["effective_mask_count"] <= 8
    assert saved == json.loads(json.dumps(result))
    assert sorted(p.name for p in folder.iterdir() if ".tmp" in p.name) == []  # no temporary files left


@pytest.mark.parametrize("rate,channels", [(11025, 2), (RATE, 1)])
def test_streamed_files_equal_the_in_memory_separation(tmp_path, rate, channels):
    song = tmp_path / "song.wav"
    audio = 0.1 * np.random.default_rng(1).standard_normal((channels, round(2.3 * rate))).astype(np.float32)
    sf.write(song, audio.T, rate, subtype="FLOAT")
    model = tiny_performer()
    result = separate_file(model, str(song), str(tmp_path), chunk_seconds=0.5, overlap_seconds=0.125,
                           sample_format="float32")
    sources, info = separate_waveform(model, audio, rate, 0.5, 0.125, analysis=True)
    written = np.stack([sf.read(p, always_2d=True, dtype="float32")[0].T for p in result["sources"]])
    np.testing.assert_allclose(written, sources.numpy(), atol=1e-6, rtol=0)
    assert result["effective_mask_count"] == pytest.approx(info["analysis"]["effective_mask_count"], rel=1e-6)
    assert result["output_energy_db"] == pytest.approx(info["output_energy_db"], abs=1e-4)
    quick = separate_file(model, str(song), str(tmp_path / "quick"), chunk_seconds=0.5, overlap_seconds=0.125,
                          sample_format="float32", plot=False)  # no picture, no mask statistics, same stems
    assert quick["picture"] is None and not (tmp_path / "quick" / "song" / "masks.png").exists()
    assert quick["effective_mask_count"] is None and quick["mask_source"] is None
    np.testing.assert_array_equal(sf.read(quick["sources"][3])[0], sf.read(result["sources"][3])[0])


@pytest.mark.parametrize("rate", [RATE, 11025])
def test_stream_yields_window_sized_blocks(rate):
    """The stream never holds the outputs at full length: every block it yields is at most one window long."""
    audio = 0.1 * torch.randn(2, 10 * rate)
    stream = SeparationStream(tiny_performer(), audio, rate, 0.5, 0.25)
    lengths = [b.shape[-1] for b in stream.blocks()]
    assert sum(lengths) == audio.shape[1] and len(lengths) >= stream.n_chunks
    assert max(lengths) <= 0.5 * rate * 1.1


@pytest.mark.parametrize("ext,sample_format,subtype", [
    ("wav", "int24", "PCM_24"), ("wav", "float32", "FLOAT"), ("flac", "int16", "PCM_16"),
    ("flac", "int24", "PCM_24"), ("mp3", "int16", "MPEG_LAYER_III"),
])
def test_output_formats(tmp_path, ext, sample_format, subtype):
    song = tmp_path / "song.wav"
    audio = 0.1 * np.random.default_rng(2).standard_normal((8000, 2)).astype(np.float32)
    sf.write(song, audio, RATE)
    result = separate_file(tiny_performer(), str(song), str(tmp_path / "out"), chunk_seconds=0.5,
                           overlap_seconds=0.1, ext=ext, sample_format=sample_format, plot=False)
    assert [os.path.basename(p) for p in result["sources"]] == [f"source_{i}.{ext}" for i in range(1, 9)]
    info = sf.info(result["sources"][0])
    assert info.subtype == subtype and info.samplerate == RATE and info.channels == 2
    if ext != "mp3":  # lossless: the stems still sum to the input within the bit depth
        total = sum(sf.read(p, always_2d=True)[0] for p in result["sources"])
        mix = sf.read(song, always_2d=True)[0]
        assert error_db(torch.from_numpy(total), torch.from_numpy(mix)) < -60


def test_loud_stems_are_clipped_and_counted(tmp_path):
    song = tmp_path / "loud.wav"
    t = np.arange(8000) / RATE
    sf.write(song, (1.5 * np.sin(2 * np.pi * 300 * t))[:, None], RATE, subtype="FLOAT")
    result = separate_file(PermutingBandSplit(), str(song), str(tmp_path), chunk_seconds=0.5, overlap_seconds=0.1,
                           plot=False)
    assert result["clipped_samples"] > 1000
    assert max(np.abs(sf.read(p)[0]).max() for p in result["sources"]) <= 1.0


def test_filename_template(tmp_path):
    paths = stem_paths("in/My Song.mp3", str(tmp_path), 2, filename="{track}_{stem}.{trackext}.{ext}", ext="flac")
    assert paths == [str(tmp_path / "My Song_source_1.mp3.flac"), str(tmp_path / "My Song_source_2.mp3.flac")]
    with pytest.raises(ValueError, match="same file; include {stem}"):
        stem_paths("a.wav", str(tmp_path), 8, filename="{track}.{ext}")
    with pytest.raises(ValueError, match="may use {track}, {trackext}, {stem}, {ext}"):
        stem_paths("a.wav", str(tmp_path), 8, filename="{song}/{stem}.{ext}")
    song = tmp_path / "song.wav"
    sf.write(song, 0.1 * np.random.default_rng(3).standard_normal(6000), RATE)
    result = separate_file(Constant(), str(song), str(tmp_path / "out"), chunk_seconds=0.5, overlap_seconds=0.1,
                           filename="{stem}-{track}.{ext}")
    assert result["sources"][0] == str(tmp_path / "out" / "source_1-song.wav") and os.path.isfile(result["sources"][0])
    track = tmp_path / "out" / "song"  # analysis files stay in <out>/<track>/ whatever the template
    assert (track / "separation.json").is_file() and (track / "masks.png").is_file()


def test_resolve_window_defaults_to_the_training_segment():
    assert resolve_window({"segment_seconds": 2.0}) == (2.0, 2.0 * DEFAULT_OVERLAP_FRACTION)
    assert resolve_window({"segment_seconds": 2.0}, 4.0, 0.25) == (4.0, 1.0)
    with pytest.raises(ValueError, match="--overlap is a fraction of the window"):
        resolve_window({"segment_seconds": 2.0}, overlap=0.6, names=("--chunk-seconds", "--overlap"))
    with pytest.raises(ValueError, match="--chunk-seconds must be a positive number"):
        resolve_window({}, chunk_seconds=0, names=("--chunk-seconds", "--overlap"))


@pytest.mark.gpu
def test_cuda_matches_cpu():
    model = tiny_performer()
    x = 0.1 * torch.randn(2, round(1.3 * RATE))
    cpu, cpu_info = separate_waveform(model, x, RATE, 0.5, 0.125, analysis=True)
    gpu, gpu_info = separate_waveform(model.cuda(), x, RATE, 0.5, 0.125, analysis=True)
    assert gpu.device.type == "cpu"  # results come back to the CPU
    torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=1e-3)
    assert gpu_info["analysis"]["mask_overlap"] == pytest.approx(cpu_info["analysis"]["mask_overlap"], rel=1e-3)


def test_convtasnet_checkpoint_separates_with_stem_derived_masks(tmp_path):
    from trackformer.baselines import ConvTasNet
    from trackformer.checkpoint_io import load_separator

    small = ConvTasNet(enc_num_feats=16, msk_num_feats=8, msk_num_hidden_feats=16, msk_num_layers=2,
                       msk_num_stacks=1, sample_rate=RATE)
    path = write_checkpoint(tmp_path / "ctn.pt", small)
    model, info = load_separator(path, "cpu")
    assert info["name"] == "convtasnet" and not model.training
    x = 0.1 * torch.randn(2, round(1.2 * RATE))
    sources, sep = separate_waveform(model, x, RATE, 0.5, 0.1, analysis=True)
    assert sources.shape == (8, 2, x.shape[1]) and sep["analysis"]["mask_source"] == "stems"
    assert error_db(sources.sum(0), x) < -60  # consistent after the projection, though ConvTasNet is not


def test_mask_picture_in_hz_says_when_it_shows_less_than_the_input():
    from trackformer.plots import masks_figure

    mix_db, masks = np.zeros((129, 40)), np.full((8, 129, 40), 0.125)
    fig = masks_figure(mix_db, masks, sample_rate=16000, seconds_per_column=0.1, title="song", input_sample_rate=44100)
    axes = [a for a in fig.axes if a.get_ylabel().endswith("Hz")]  # not the colour bars
    assert len(axes) == 9  # the spectrogram and the 8 masks, frequency in Hz
    assert axes[0].get_ylim() == (0.0, 8000.0) and axes[-1].get_xlabel() == "time (s)"
    assert "shows 0–8,000 Hz of the input's 0–22,050 Hz" in axes[0].get_title()
    fig = masks_figure(mix_db, masks, sample_rate=16000, seconds_per_column=0.1, title="song", input_sample_rate=16000)
    assert fig.axes[0].get_title() == "song"


def test_plots_leave_the_session_matplotlib_alone(tmp_path):
    """Drawing writes PNGs without importing pyplot or switching the backend a user's session chose."""
    code = f"""
import sys, matplotlib
matplotlib.use("svg")
import numpy as np
from trackformer.plots import plot_evaluation, plot_masks
plot_masks(np.zeros((5, 4)), np.full((2, 5, 4), 0.5), sample_rate=8000, seconds_per_column=0.5,
           path={str(tmp_path / "m.png")!r})
plot_evaluation({{2: {{"one_to_one_sisnri": [1.0, 2.0], "mixit_sisnri": [2.0, 3.0]}}}}, {str(tmp_path / "e.png")!r})
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg", "False"]
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "e.png").stat().st_size > 1000


@pytest.mark.slow
def test_bench_separate_runs_and_reports(tmp_path):
    """benchmarks/bench_separate.py on a 1.2-second song: speed, CPU time and peak RSS of a fresh process."""
    import subprocess
    import sys

    ckpt = write_checkpoint(tmp_path / "tiny.pt", tiny_performer(sample_rate=44100), segment_seconds=0.5)
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks",
                          "bench_separate.py")
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, script, "--checkpoint", ckpt, "--minutes", "0.02", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    row = json.loads(out.read_text())["rows"][0]
    assert row["minutes"] == 0.02 and row["separate_s"] > 0 and 0.1 < row["peak_rss_gb"] < 8
    assert row["realtime_factor"] == pytest.approx(1.2 / row["separate_s"])
    assert "x real time" in done.stdout and "peak RSS" in done.stdout
    done = subprocess.run([sys.executable, script, "--checkpoint", str(tmp_path / "none.pt")], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0 and "checkpoint not found" in done.stderr
