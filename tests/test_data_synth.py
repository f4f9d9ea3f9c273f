"""SyntheticMusic: shapes, determinism, windows = slices of the whole song, musical content, speed, CLI synth."""

import argparse
import time

import numpy as np
import pytest

from trackformer.data import MoisesDB, SyntheticMusic
from trackformer.data.cli import add_parser
from trackformer.data.synth import STEMS, midi_hz


def test_shapes_and_stems():
    music = SyntheticMusic(3, seconds=2.5, sample_rate=16000, seed=0)
    assert len(music) == 3 and music.skipped == []
    song = music[0]
    assert song.stem_names == list(STEMS) == ["drums", "bass", "chords", "melody"]
    assert song.duration == 2.5 and song.num_frames == 40000
    x = song.load_stems().numpy()
    assert x.shape == (4, 2, 40000) and x.dtype == np.float32 and np.isfinite(x).all()
    rms = np.sqrt((x ** 2).mean(axis=(1, 2)))
    assert (rms > 1e-3).all() and np.abs(x.sum(0)).max() < 1.5
    assert not np.allclose(x[:, 0], x[:, 1])  # panned: a real stereo image
    np.testing.assert_array_equal(song.load_mixture().numpy(), x.sum(0))
    mono = SyntheticMusic(1, seconds=1.0, sample_rate=8000, channels=1, seed=0)[0].load_stems()
    assert mono.shape == (4, 1, 8000)


def test_determinism_and_windows():
    a = SyntheticMusic(2, seconds=3, sample_rate=16000, seed=7)
    b = SyntheticMusic(4, seconds=3, sample_rate=16000, seed=7)  # more songs: the first ones do not change
    c = SyntheticMusic(2, seconds=3, sample_rate=16000, seed=8)
    full = a[1].load_stems().numpy()
    np.testing.assert_array_equal(full, b[1].load_stems().numpy())
    assert not np.allclose(full, c[1].load_stems().numpy())
    assert not np.allclose(full, a[0].load_stems().numpy())
    for start, n in [(0, 1), (12345, 7777), (47000, 2000), (48000, 5), (60000, 10)]:
        w = a[1].load_stems(start, n).numpy()
        ref = np.zeros_like(w)
        seg = full[..., start:start + n]
        ref[..., :seg.shape[-1]] = seg
        np.testing.assert_allclose(w, ref, atol=1e-6)


def test_musical_content():
    """Bass energy sits low, melody higher; the drum stem is percussive (peaky); songs differ in tempo and key."""
    music = SyntheticMusic(6, seconds=4, sample_rate=16000, seed=1)
    freqs = np.fft.rfftfreq(64000, 1 / 16000)
    for song in music:
        x = song.load_stems().numpy().mean(axis=1)
        spec = np.abs(np.fft.rfft(x, axis=-1)) ** 2
        centroid = (spec * freqs).sum(-1) / spec.sum(-1)
        assert centroid[1] < 300 and centroid[3] > centroid[1]  # bass vs melody
        env = np.abs(x[0]).reshape(-1, 160).max(1)  # 10 ms frames
        assert env.max() > 4 * np.median(env)  # drum hits stand out of the decays between them
    plans = [s.plan for s in music]
    assert len({round(p["bpm"]) for p in plans}) > 3 and len({p["key"] for p in plans}) > 2
    assert all(80 <= p["bpm"] <= 140 for p in plans)
    assert midi_hz(69) == pytest.approx(440.0)


def test_fast_enough():
    """10 s of 4-stem 16 kHz audio in well under 0.1 s (best of 3; the bound is loose for a busy 2-core CI)."""
    song = SyntheticMusic(1, seconds=10, sample_rate=16000, seed=2)[0]
    song.load_stems(0, 10)  # plan the events
    best = min(_timed(song.load_stems) for _ in range(3))
    assert best < 0.25


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def test_input_validation():
    with pytest.raises(ValueError, match="n_songs"):
        SyntheticMusic(-1, seconds=1, sample_rate=8000)
    with pytest.raises(ValueError, match="seed"):
        SyntheticMusic(1, seconds=1, sample_rate=8000, seed=-3)
    with pytest.raises(ValueError, match="seconds"):
        SyntheticMusic(1, seconds=0, sample_rate=8000)
    with pytest.raises(ValueError, match="sample_rate"):
        SyntheticMusic(1, seconds=1, sample_rate=44100.0)
    with pytest.raises(ValueError, match="start"):
        SyntheticMusic(1, seconds=1, sample_rate=8000)[0].load_stems(-5, 10)


def test_cli_synth_writes_moisesdb_layout(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command", required=True))
    argv = ["data", "synth", str(tmp_path), "--n", "3", "--seconds", "1.5", "--sample-rate", "16000"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0 and "wrote 3" in capsys.readouterr().out
    db = MoisesDB(str(tmp_path), sample_rate=16000)
    assert len(db) == 3 and db.skipped == []
    ref = SyntheticMusic(3, seconds=1.5, sample_rate=16000)
    for song, synth in zip(db, ref):
        assert song.stem_names == list(STEMS) and song.num_frames == 24000
        np.testing.assert_allclose(song.load_stems().numpy(), synth.load_stems().numpy(), atol=2 / 32768)
    args = parser.parse_args(argv)
    assert args.func(args) == 0 and "wrote 0" in capsys.readouterr().out  # idempotent
