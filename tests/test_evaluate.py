"""trackformer.evaluate: known scores on hand-built cases, grouping, and the CLI on a tiny MoisesDB folder."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_separate import RATE, tiny_performer, write_checkpoint
from torch import nn

from trackformer import cli
from trackformer.data import write_song
from trackformer.evaluate import (
    BASELINES,
    MixturePairs,
    audible_excerpt,
    baseline_sources,
    baseline_stft,
    data_rate,
    evaluate_pairs,
    evaluate_segment,
    evaluate_songs,
    format_comparison,
    format_table,
    open_songs,
    segments_of,
    summarize,
)
from trackformer.metrics import separation_scores


class Oracle(nn.Module):
    """Stand-in that returns the true stems, in the output slots ``slots`` (zeros elsewhere)."""

    def __init__(self, stems: torch.Tensor, slots: list[int], n_sources: int = 8):
        super().__init__()
        self.sample_rate, self.stems, self.slots, self.n_sources = RATE, stems, slots, n_sources
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        torch.testing.assert_close(x[0], self.stems.sum(0))
        out = torch.zeros(1, self.n_sources, *x.shape[1:])
        out[0, self.slots] = self.stems
        return out


def test_perfect_swapped_estimates_are_matched_back():
    g = torch.Generator().manual_seed(0)
    stems = 0.1 * torch.randn(3, 2, 4000, generator=g)
    stems[2] = 0.0  # silent: excluded and counted (tests/test_metrics.py covers the 1e-4 RMS threshold)
    scores = evaluate_segment(Oracle(stems, [6, 1, 3]), stems, RATE)
    assert scores["one_to_one_assignment"] == [6, 1, None]
    assert scores["mixit_assignment"][6] == 0 and scores["mixit_assignment"][1] == 1
    assert scores["n_active_refs"] == 2 and scores["n_silent_refs"] == 1
    # a perfect estimate scores the eps bound 10·log10(‖s‖² / 1e-8) (float32 rounding is far below it)
    energy = (stems - stems.mean(-1, keepdim=True)).double().pow(2).sum(dim=(1, 2))[:2]
    bound = float((10 * torch.log10(energy / 1e-8)).mean())
    assert scores["one_to_one_sisnr"] == pytest.approx(bound, abs=0.1)
    assert scores["mixit_sisnr"] == pytest.approx(bound, abs=0.1)
    assert scores["one_to_one_sisnri"] == pytest.approx(scores["one_to_one_sisnr"] - scores["mixture_sisnr"])
    assert scores["n_silent_outputs"] == 6
    assert 1.0 <= scores["effective_mask_count"] <= 3.0


def test_half_mixture_outputs_score_zero_improvement():
    stems = 0.1 * torch.randn(2, 1, 3000)
    half = stems.sum(0, keepdim=True).expand(2, -1, -1) / 2
    model = Oracle(half, [0, 4])  # two outputs each half the mixture, the rest silent: nothing separated
    scores = evaluate_segment(model, stems, RATE)
    assert scores["one_to_one_sisnri"] == pytest.approx(0.0, abs=1e-4)
    assert scores["mixit_sisnri"] == pytest.approx(0.0, abs=1e-4)


def test_segments_and_summary():
    class Song:
        def __init__(self, name, frames):
            self.name, self.num_frames, self.sample_rate = name, frames, 10

    songs = [Song("a", 35), Song("b", 9), Song("c", 20)]
    assert [(s.name, start) for s, start, _ in segments_of(songs, 1.0)] == [("a", 0), ("a", 10), ("a", 20),
                                                                            ("c", 0), ("c", 10)]
    rows = [dict(n_active_refs=k, one_to_one_sisnr=v, one_to_one_sisnri=v, one_to_one_sdr=v, mixit_sisnr=v,
                 mixit_sisnri=v, mixture_sisnr=0.0, mask_overlap=2.0, effective_mask_count=None)
            for k, v in ((2, 1.0), (2, 3.0), (4, 5.0), (1, 90.0))]
    rows[-1]["one_to_one_sisnri"] = rows[-1]["mixit_sisnri"] = -88.0  # one stem: the mixture *is* the stem
    summary = summarize(rows)
    assert summary["2"]["segments"] == 2 and summary["2"]["mixit_sisnri"] == pytest.approx(2.0)
    # the 2+ row never averages in the one-stem segment; that one reports SI-SNR but no SI-SNRi
    assert summary["2+"]["segments"] == 3 and summary["2+"]["one_to_one_sisnri"] == pytest.approx(3.0)
    assert summary["1"]["one_to_one_sisnr"] == pytest.approx(90.0)
    assert summary["1"]["one_to_one_sisnri"] is None and summary["1"]["mixit_sisnri"] is None
    assert "all" not in summary and summary["4"]["effective_mask_count"] is None
    table = format_table(summary)
    assert [line.split()[0] for line in table.splitlines()[1:]] == ["1", "2", "4", "2+"]
    assert table.splitlines()[1].split()[3] == "-"  # no SI-SNRi on the one-stem row
    md = format_comparison({"model": summary})
    assert "| model | 3 | 3.00 | 3.00 | 3.00 | 3.00 | 90.00 |" in md


class Gain(nn.Module):
    """A 'separator' whose M outputs are the input times fixed weights summing to 1 (records window lengths)."""

    def __init__(self, weights=(0.5, 0.25, 0.25)):
        super().__init__()
        self.sample_rate, self.weights, self.lengths = RATE, torch.tensor(weights), []
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        self.lengths.append(x.shape[-1])
        return self.weights[None, :, None, None] * x[:, None]


def test_evaluate_separates_in_windows_of_the_training_segment():
    stems = 0.1 * torch.randn(2, 1, 4 * RATE)
    model = Gain()
    evaluate_segment(model, stems, RATE, chunk_seconds=1.0)
    assert max(model.lengths) == RATE and len(model.lengths) > 4  # 1 s windows with half overlap, not one 4 s window
    model.lengths.clear()
    evaluate_segment(model, stems, RATE)
    assert model.lengths == [4 * RATE]


def test_baselines_mixture_bands_and_oracle():
    g = torch.Generator().manual_seed(1)
    t = torch.arange(2 * RATE) / RATE
    low, high = torch.sin(2 * torch.pi * 110 * t), 0.5 * torch.sin(2 * torch.pi * 3000 * t)
    stems = torch.stack([low, high])[:, None] + 1e-3 * torch.randn(2, 1, 2 * RATE, generator=g)
    mixture = separation_scores(baseline_sources("mixture", stems, RATE, n_fft=1024, hop=256), stems, stems.sum(0))
    assert mixture["one_to_one_sisnri"] == pytest.approx(0.0, abs=1e-9)
    bands = baseline_sources("bands", stems, RATE, n_fft=1024, hop=256)
    assert bands.shape == (8, 1, 2 * RATE)
    torch.testing.assert_close(bands.sum(0), stems.sum(0), atol=1e-5, rtol=0)  # a split: sums to the mixture
    assert separation_scores(bands, stems, stems.sum(0))["one_to_one_sisnri"] > 15  # tones far apart in frequency
    irm = separation_scores(baseline_sources("irm", stems, RATE, n_fft=1024, hop=256), stems, stems.sum(0))
    assert irm["one_to_one_sisnri"] > 20
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_sources("wiener", stems, RATE, n_fft=1024, hop=256)


def test_whole_song_mode_scores_the_same_segments():
    class Song:
        name, sample_rate = "s", RATE

        def __init__(self):
            self.stems = 0.1 * torch.randn(3, 1, 3 * RATE, generator=torch.Generator().manual_seed(2))
            self.num_frames = self.stems.shape[-1]

        def load_stems(self, start=0, frames=None):
            return self.stems[..., start:start + (frames or self.num_frames)]

        def load_mixture(self, start=0, frames=None):
            return self.load_stems(start, frames).sum(0)

    model = Gain()
    per_segment = evaluate_songs(model, [Song()], segment_seconds=1.0, chunk_seconds=0.5, baselines=("bands",))
    whole = evaluate_songs(model, [Song()], segment_seconds=1.0, chunk_seconds=0.5, whole_song=True)
    assert per_segment["mode"] == "segments" and whole["mode"] == "whole-song"
    assert [s["start_seconds"] for s in whole["segments"]] == [0.0, 1.0, 2.0]
    # a gain 'separator' scores the same either way (its outputs do not depend on the window)
    assert whole["summary"]["2+"]["one_to_one_sisnr"] == pytest.approx(per_segment["summary"]["2+"]["one_to_one_sisnr"],
                                                                       abs=1e-4)
    assert per_segment["baselines"]["bands"]["summary"]["2+"]["segments"] == 3 and whole["baselines"] == {}


def test_evaluate_command_on_a_moisesdb_folder(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(2):
        stems = {name: (0.1 * rng.standard_normal((2, 9000))).astype(np.float32) for name in ("bass", "vocals")}
        stems["drums"] = np.zeros((2, 9000), np.float32)  # a silent stem
        write_song(str(tmp_path / "db"), f"song-{i}", stems, RATE)
    silent = {name: np.zeros((2, 9000), np.float32) for name in ("bass", "vocals")}
    write_song(str(tmp_path / "db"), "song-00", silent, RATE)  # indexed between the two: both segments skipped
    five = {name: (0.1 * rng.standard_normal((2, 9000))).astype(np.float32)
            for name in ("bass", "vocals", "drums", "guitar", "piano")}
    write_song(str(tmp_path / "db"), "song-2", five, RATE)  # 5 stems: grouped to 4 (auto) or skipped (as-is)
    ckpt = write_checkpoint(tmp_path / "tiny.pt", tiny_performer())
    rc = cli.main(["evaluate", ckpt, str(tmp_path / "db"), "--segment", "0.5", "-o", str(tmp_path / "eval"),
                   "--device", "cpu", "-q"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "MixIT SI-SNRi" in out
    assert "6 segments of 0.5 s from 4 songs (2 silent segments skipped; 0 songs unusable)" in out
    path = out.split("results: ")[1].split()[0]
    assert path.endswith("db-segments.json")
    saved = json.loads(open(path).read())
    assert [s["song"] for s in saved["segments"]] == ["song-0", "song-0", "song-1", "song-1", "song-2", "song-2"]
    # own stems (bass, vocals active, drums silent) for the 3-stem songs; the 5-stem song in the 4 MUSDB groups
    assert [(s["n_refs"], s["n_silent_refs"]) for s in saved["segments"]] == [(3, 1)] * 4 + [(4, 0)] * 2
    assert set(saved["summary"]) == {"2", "4", "2+"}
    assert set(saved["baselines"]) == {"mixture", "bands", "irm"}
    assert saved["chunk_seconds"] == 1.0  # the checkpoint's training segment (write_checkpoint: 1 s)
    assert os.path.getsize(path.replace(".json", ".png")) > 1000

    rc = cli.main(["evaluate", ckpt, str(tmp_path / "db"), "--segment", "0.5", "--n", "1", "--stems", "as-is",
                   "-o", str(tmp_path / "eval"), "--device", "cpu", "-q"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "1 segments of 0.5 s from 3 songs (0 silent segments skipped; 1 songs unusable)" in out
    assert out.split("results: ")[1].split()[0].endswith("db-segments-2.json")  # the first run's file is kept


class MemorySong:
    """A one-stem song held in memory (a recording without stems): load_mixture / load_stems of ``audio``."""

    def __init__(self, name: str, audio: torch.Tensor, sample_rate: int = RATE):
        self.name, self.audio, self.sample_rate = name, audio, sample_rate
        self.num_frames = audio.shape[-1]

    def load_mixture(self, start=0, frames=None):
        return self.audio[..., start:start + (self.num_frames if frames is None else frames)]

    def load_stems(self, start=0, frames=None):
        return self.load_mixture(start, frames)[None]


def memory_songs(count: int, seconds: float = 3.0, seed: int = 0) -> list[MemorySong]:
    g = torch.Generator().manual_seed(seed)
    return [MemorySong(f"song-{i}", 0.1 * torch.randn(1, round(seconds * RATE), generator=g)) for i in range(count)]


def test_mixture_pairs_are_seeded_different_songs_and_audible():
    songs = memory_songs(5)
    songs[1].audio[:, :2 * RATE] = 0.0  # only its last second is audible: no quarter of the excerpt may miss it
    songs.append(MemorySong("silent", torch.zeros(1, 3 * RATE)))
    songs.append(MemorySong("short", 0.1 * torch.ones(1, RATE // 2)))
    pairs = MixturePairs(songs, 1.0, seed=3)
    got = list(pairs)
    # one round of the 6 songs long enough: 3 pairs, less the silent song's
    assert len(pairs) == 3 and len(got) == 2 and pairs.short_songs == ["short"] and pairs.silent_songs == ["silent"]
    names = [where["songs"] for where, _ in got]
    assert len({n for pair in names for n in pair}) == 4  # two different songs per pair, each song once a round
    assert any("song-1" in pair for pair in names)  # the song that starts silent is in a pair (seed 3)
    for where, refs in got:
        assert refs.shape == (2, 1, RATE) and where["gain_db"] == 0.0
        for k, name in enumerate(where["songs"]):
            song = next(s for s in songs if s.name == name)
            start = round(where["start_seconds"][k] * RATE)
            torch.testing.assert_close(refs[k], song.load_mixture(start, RATE))  # levels as they are
            assert audible_excerpt(refs[k])
            if name == "song-1":  # its first quarter must reach into the audible last second
                assert start + RATE // 4 > 2 * RATE
    assert [w["songs"] for w, _ in MixturePairs(songs, 1.0, seed=3)] == names  # deterministic
    assert [w["songs"] for w, _ in MixturePairs(songs, 1.0, seed=4)] != names
    # a relative level: the same pairs and excerpts, the second song scaled by a seeded gain within ±6 dB
    leveled = list(MixturePairs(songs, 1.0, seed=3, level_db=6.0))
    for (where, refs), (where_l, refs_l) in zip(got, leveled):
        assert where_l["songs"] == where["songs"] and where_l["start_seconds"] == where["start_seconds"]
        assert 0 < abs(where_l["gain_db"]) <= 6.0
        torch.testing.assert_close(refs_l[1], refs[1] * 10 ** (where_l["gain_db"] / 20))
    # more pairs than one round: new rounds, still never a song with itself
    many = list(MixturePairs(songs[:3], 1.0, n=5))
    assert len(many) == 5 and all(w["songs"][0] != w["songs"][1] for w, _ in many)
    with pytest.raises(ValueError, match="at least 2 songs"):
        MixturePairs(songs[-2:], 1.0)
    with pytest.raises(ValueError, match="level_db"):
        MixturePairs(songs, 1.0, level_db=-1.0)
    with pytest.raises(ValueError, match="several rates"):
        MixturePairs([*songs[:2], MemorySong("x", torch.ones(1, 9000), 16000)], 1.0)
    assert not audible_excerpt(torch.cat([torch.ones(1, 300), torch.zeros(1, 100)], dim=1))  # a silent quarter


def test_evaluate_pairs_scores_each_song_as_a_reference():
    songs = memory_songs(4)
    result = evaluate_pairs(Gain(), songs, segment_seconds=1.0, chunk_seconds=0.5, baselines=BASELINES,
                            band_above_hz=2000.0)
    assert result["mode"] == "mixture-of-mixtures" and len(result["segments"]) == 2
    row = result["summary"]["2+"]
    # a gain 'separator' (fixed shares of the input) separates nothing: MixIT-style SI-SNRi 0, in the band too
    assert row["mixit_sisnri"] == pytest.approx(0.0, abs=1e-3)
    assert row["band_mixit_sisnri"] == pytest.approx(0.0, abs=1e-3)
    assert row["band_segments"] == 2  # white noise: both songs carry half the band
    assert row["effective_mask_count"] is not None
    irm = result["baselines"]["irm"]["summary"]["2+"]
    assert irm["mixit_sisnri"] > 3 and irm["band_mixit_sisnri"] > 3
    assert result["baselines"]["mixture"]["summary"]["2+"]["one_to_one_sisnri"] == pytest.approx(0.0, abs=1e-6)
    table = format_table(result["summary"], scored_at="8000 Hz", band_above_hz=2000.0)
    assert table.splitlines()[0] == "scored at 8000 Hz" and ">2k MixIT" in table.splitlines()[1]
    md = format_comparison({"irm": result["baselines"]["irm"]["summary"]}, band_above_hz=2000.0)
    assert md.splitlines()[0].endswith("segments >2k | SI-SNRi MixIT >2k | SI-SNRi 1:1 >2k |")
    assert f"| 2 | {irm['band_mixit_sisnri']:.2f} |" in md.splitlines()[2]


def test_data_rate_and_baseline_stft():
    songs = [MemorySong("a", torch.ones(1, 10), 16000), MemorySong("b", torch.ones(1, 10), 44100),
             MemorySong("c", torch.ones(1, 10), 44100)]
    assert data_rate(songs) == 44100 and data_rate(songs[:2]) == 44100  # a tie goes to the higher rate
    model = tiny_performer(sample_rate=16000)  # STFT 256 / 64 at 16 kHz
    assert baseline_stft(model, 16000) == (256, 64)
    # the same 4 ms hop; the 16 ms window (705.6 samples) rounded up to a fast FFT size, 720 = 2^4 · 3^2 · 5
    assert baseline_stft(model, 44100) == (720, 176)
    assert baseline_stft(model, 44100, 1024, 256) == (1024, 256)


def write_wav(path, audio: np.ndarray, rate: int) -> str:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio.T, rate)
    return str(path)


def test_evaluate_mixture_of_mixtures_at_the_data_rate(tmp_path, capsys):
    rng = np.random.default_rng(5)
    for i in range(5):  # a plain folder of recordings at 16 kHz, in sub-folders, no stems
        write_wav(tmp_path / "music" / f"album{i % 2}" / f"track{i}.ogg", 0.1 * rng.standard_normal((2, 24000)), 16000)
    write_wav(tmp_path / "music" / "jingle.wav", 0.1 * rng.standard_normal((1, 4000)), 16000)  # shorter than 1 s
    (tmp_path / "music" / "broken.wav").write_bytes(b"not audio")
    ckpt = write_checkpoint(tmp_path / "tiny.pt", tiny_performer())  # an 8 kHz model
    argv = ["evaluate", ckpt, str(tmp_path / "music"), "--mixture-of-mixtures", "--segment", "1",
            "--band-above", "5000", "-o", str(tmp_path / "eval"), "--device", "cpu", "-q"]
    rc = cli.main([*argv, "--high-band", "even"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.startswith("scored at 16000 Hz (the data's rate; the model runs at 8000 Hz)")
    assert ("2 pairs of 1 s excerpts from 6 songs (split 'all', seed 0, levels as they are; 1 songs shorter than "
            "1 s and 0 without an audible excerpt left out; 1 files unusable)") in out
    assert "above 5000 Hz: 2 of 2 segments qualify" in out
    saved = json.loads(open(out.split("results: ")[1].split()[0]).read())
    assert saved["sample_rate"] == 16000 and saved["mode"] == "mixture-of-mixtures"
    assert all(s["n_refs"] == 2 and s["band_qualifies"] for s in saved["segments"])
    # above the 8 kHz model's 4 kHz Nyquist, spread evenly over the outputs, nothing is separated
    assert saved["high_band"] == "even" and abs(saved["summary"]["2+"]["band_mixit_sisnri"]) < 0.05
    assert saved["baselines"]["irm"]["summary"]["2+"]["band_mixit_sisnri"] > 1  # two equal white noises
    rc = cli.main([*argv, "--score-rate", "model", "--band-above", "3000", "--level-db", "3", "--n", "1"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.startswith("scored at 8000 Hz (the model's rate") and "relative level drawn in ±3 dB" in out
    rc = cli.main([*argv, "--whole-song"])
    assert rc == 1 and "--whole-song" in capsys.readouterr().err
    rc = cli.main([*argv, "--split", "test"])
    assert rc == 1 and "split 'test' is a music corpus's own split" in capsys.readouterr().err
    rc = cli.main([*argv, "--band-above", "9000"])
    assert rc == 1 and "Nyquist" in capsys.readouterr().err


def test_evaluate_without_matplotlib_writes_the_results_and_skips_the_plot(tmp_path):
    from test_cli import HIDE_MATPLOTLIB

    rng = np.random.default_rng(1)
    stems = {name: (0.1 * rng.standard_normal((2, 9000))).astype(np.float32) for name in ("bass", "vocals")}
    write_song(str(tmp_path / "db"), "song-0", stems, RATE)
    ckpt = write_checkpoint(tmp_path / "tiny.pt", tiny_performer())
    done = subprocess.run([sys.executable, "-c", HIDE_MATPLOTLIB, "evaluate", ckpt, str(tmp_path / "db"), "--segment",
                           "0.5", "-o", str(tmp_path / "eval"), "--device", "cpu", "-q"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "MixIT SI-SNRi" in done.stdout and "scored at 8000 Hz" in done.stdout
    hint = [line for line in done.stderr.splitlines() if "matplotlib" in line]
    assert len(hint) == 1 and "pip install 'trackformer[plots]'" in hint[0], done.stderr
    path = done.stdout.split("results: ")[1].split()[0]
    saved = json.loads(open(path).read())
    assert len(saved["segments"]) == 2 and saved["plot"] is None and "trackformer[plots]" in saved["plot_skipped"]
    assert not os.path.exists(path.replace(".json", ".png"))


def test_quality_benchmark_on_songs_with_stems_and_real_music(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("quality", os.path.join(os.path.dirname(__file__), "..",
                                                                           "benchmarks", "quality.py"))
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    rng = np.random.default_rng(2)
    stems = {name: (0.1 * rng.standard_normal((2, 16000))).astype(np.float32) for name in ("bass", "vocals")}
    write_song(str(tmp_path / "test"), "song-0", stems, 16000)
    for i in range(2):
        write_wav(tmp_path / "real" / f"track{i}.flac", 0.1 * rng.standard_normal((2, 16000)), 16000)
    ckpt = write_checkpoint(tmp_path / "tiny.pt", tiny_performer())  # 8 kHz
    out = tmp_path / "quality"
    assert quality.main(["--test", str(tmp_path / "test"), "--real", str(tmp_path / "real"), "--checkpoint",
                         f"tiny={ckpt}", "--segment", "0.5", "--band-above", "5000", "--out", str(out)]) == 0
    saved = json.loads((out / "quality.json").read_text())
    sets = saved["tests"]
    assert [s["sample_rate"] for s in sets.values()] == [16000, 16000] and [s["real"] for s in sets.values()] == [
        False, True]
    assert set(sets[str(tmp_path / "real")]["sets"]) == {"tiny", "mixture", "bands", "irm"}
    assert sets[str(tmp_path / "real")]["sets"]["tiny"]["summary"]["2+"]["segments"] == 1  # 2 songs: one pair
    assert saved["entries"]["tiny"]["summary"]["overall"]["segments"] == 2  # the first set: 2 segments of 0.5 s
    md = (out / "quality.md").read_text()
    assert "### test (songs with stems): 0.5 s segments, scored at 16000 Hz (1 songs)" in md
    assert "### real (mixture of mixtures, split 'all', seed 0, levels as they are)" in md
    assert "SI-SNRi MixIT >5k" in md


def test_mixture_of_mixtures_takes_a_corpus_test_split_and_moisesdb_mixtures(tmp_path):
    from trackformer.data.corpus import index_music

    rng = np.random.default_rng(4)
    for i in range(24):
        write_wav(tmp_path / "music" / f"t{i:02d}.wav", 0.1 * rng.standard_normal((1, 4000)), RATE)
    index = index_music(str(tmp_path / "music"), str(tmp_path / "corpus"), sample_rate=RATE, channels=1,
                        progress=False)
    test = sorted(s["name"] for s in index["songs"] if s["split"] == "test")
    assert test  # 24 songs: the 10 % test part is not empty
    opened = open_songs(str(tmp_path / "corpus"), sample_rate=RATE, channels=1, mixture_of_mixtures=True)
    assert opened["split"] == "test" and opened["layout"] == "MusicCorpus"
    assert sorted(song.name for song in opened["songs"]) == test
    every = open_songs(str(tmp_path / "corpus"), sample_rate=RATE, channels=1, mixture_of_mixtures=True, split="all")
    assert len(every["songs"]) == 24
    # a MoisesDB folder: each song's mixture (all its stems, however many) is one reference
    five = {name: (0.1 * rng.standard_normal((2, 9000))).astype(np.float32)
            for name in ("bass", "vocals", "drums", "guitar", "piano")}
    write_song(str(tmp_path / "db"), "song-5", five, RATE)
    db = open_songs(str(tmp_path / "db"), sample_rate=RATE, channels=2, mixture_of_mixtures=True)
    assert db["layout"] == "MoisesDB" and db["songs"][0].num_stems == 5
    torch.testing.assert_close(db["songs"][0].load_mixture(), torch.from_numpy(sum(five.values())), atol=1e-4,
                               rtol=0)
