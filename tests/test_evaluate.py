"""trackformer.evaluate: known scores on hand-built cases, grouping, and the CLI on a tiny MoisesDB folder."""

import json

import numpy as np
import pytest
import torch
from test_separate import RATE, tiny_performer, write_checkpoint
from torch import nn

from trackformer import cli
from trackformer.data import write_song
from trackformer.evaluate import evaluate_segment, format_table, segments_of, summarize


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
    rows = [dict(n_active_refs=k, one_to_one_sisnr=v, one_to_one_sisnri=v, mixit_sisnr=v, mixit_sisnri=v,
                 mixture_sisnr=0.0, mask_overlap=2.0, effective_mask_count=None) for k, v in ((2, 1.0), (2, 3.0),
                                                                                              (4, 5.0))]
    summary = summarize(rows)
    assert summary["2"]["segments"] == 2 and summary["2"]["mixit_sisnri"] == pytest.approx(2.0)
    assert summary["all"]["one_to_one_sisnr"] == pytest.approx(3.0)
    assert summary["4"]["effective_mask_count"] is None
    table = format_table(summary)
    assert table.splitlines()[-1].split()[0] == "all" and len(table.splitlines()) == 4


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
    saved = json.loads((tmp_path / "eval" / "tiny.json").read_text())
    assert [s["song"] for s in saved["segments"]] == ["song-0", "song-0", "song-1", "song-1", "song-2", "song-2"]
    # own stems (bass, vocals active, drums silent) for the 3-stem songs; the 5-stem song in the 4 MUSDB groups
    assert [(s["n_refs"], s["n_silent_refs"]) for s in saved["segments"]] == [(3, 1)] * 4 + [(4, 0)] * 2
    assert set(saved["summary"]) == {"all", "2", "4"}
    assert (tmp_path / "eval" / "tiny.png").stat().st_size > 1000

    rc = cli.main(["evaluate", ckpt, str(tmp_path / "db"), "--segment", "0.5", "--n", "1", "--stems", "as-is",
                   "-o", str(tmp_path / "eval"), "--device", "cpu", "-q"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "1 segments of 0.5 s from 3 songs (0 silent segments skipped; 1 songs unusable)" in out
