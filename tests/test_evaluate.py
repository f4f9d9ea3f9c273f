"""trackformer.evaluate: known scores on hand-built cases, grouping, and the CLI on a tiny MoisesDB folder."""

import json
import os

import numpy as np
import pytest
import torch
from test_separate import RATE, tiny_performer, write_checkpoint
from torch import nn

from trackformer import cli
from trackformer.data import write_song
from trackformer.evaluate import (
    baseline_sources,
    evaluate_segment,
    evaluate_songs,
    format_comparison,
    format_table,
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
