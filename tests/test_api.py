"""The Python API a separation user imports: trackformer.Separator (shipped model by default, windows from the
checkpoint) and a light ``import trackformer``."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from test_separate import RATE, error_db, tiny_performer, write_checkpoint

import trackformer
from trackformer import pretrained


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return write_checkpoint(tmp_path_factory.mktemp("api") / "tiny.pt", tiny_performer(), segment_seconds=0.5)


def test_import_trackformer_is_light():
    code = "import sys, trackformer\nprint('torch' in sys.modules, trackformer.__version__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["False", trackformer.__version__], done.stderr
    assert trackformer.pretrained is pretrained
    with pytest.raises(AttributeError, match="no attribute 'Separatr'"):
        trackformer.Separatr  # noqa: B018


def test_separator_with_the_shipped_default(tmp_path, monkeypatch, checkpoint):
    monkeypatch.setattr(pretrained, "PACKAGE_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="no shipped model named 'default'"):
        trackformer.Separator()
    os.link(checkpoint, tmp_path / "default.pt")
    sep = trackformer.Separator(device="cpu")
    assert sep.name == "default" and sep.sample_rate == RATE and sep.device.type == "cpu"
    assert (sep.chunk_seconds, sep.overlap_seconds) == (0.5, 0.25)  # the checkpoint's segment, half overlap
    wav = 0.1 * torch.randn(2, 3 * RATE)
    stems = sep.separate_tensor(wav, RATE)
    assert list(stems) == [f"source_{i}" for i in range(1, 9)]
    assert all(s.shape == wav.shape and s.dtype == torch.float32 for s in stems.values())
    assert error_db(sum(stems.values()), wav) < -60  # they sum to the input


def test_separator_files_tensors_rates_and_shapes(tmp_path, checkpoint):
    sep = trackformer.Separator(checkpoint, device="cpu", chunk_seconds=1.0, overlap=0.25)
    assert sep.name == "tiny" and (sep.chunk_seconds, sep.overlap_seconds) == (1.0, 0.25)
    song = tmp_path / "song.flac"
    audio = 0.1 * np.random.default_rng(0).standard_normal((2 * 11025, 1))
    sf.write(song, audio, 11025)
    stems = sep.separate_file(str(song))
    assert len(stems) == 8 and stems["source_1"].shape == (1, 2 * 11025)  # the file's rate and channels
    mono = 0.1 * np.random.default_rng(1).standard_normal(RATE).astype(np.float32)
    stems = sep.separate_tensor(mono, RATE)  # (T,) numpy in, (T,) tensors out
    assert stems["source_3"].shape == (RATE,)
    assert error_db(sum(stems.values()), torch.from_numpy(mono)) < -60


@pytest.mark.parametrize("wav,rate,error,match", [
    (torch.zeros(2, 2, 100), RATE, ValueError, r"\(channels, samples\) or \(samples,\).*one item at a time"),
    (torch.ones(2, 100, dtype=torch.int16), RATE, TypeError, "floating point"),
    (torch.full((2, 100), float("nan")), RATE, ValueError, "NaN"),
    (torch.zeros(2, 100), RATE, ValueError, "silent"),
    (torch.ones(2, 0), RATE, ValueError, "empty"),
    (0.1 * torch.ones(2, 100), 44100.0, ValueError, "sample_rate must be a positive integer"),
    ([0.1, 0.2], RATE, TypeError, "numpy array or torch.Tensor"),
])
def test_separator_rejects_bad_input_clearly(checkpoint, wav, rate, error, match):
    sep = trackformer.Separator(checkpoint, device="cpu")
    with pytest.raises(error, match=match):
        sep.separate_tensor(wav, rate)


def test_separator_high_band_modes(checkpoint):
    """An 8 kHz model on 22.05 kHz audio: the band above 4 kHz goes by the outputs' top-band shares (default) or
    evenly; both sum to the input, and only that band differs."""
    wav = 0.1 * torch.randn(2, 22050, generator=torch.Generator().manual_seed(4))
    stems = {mode: trackformer.Separator(checkpoint, device="cpu", high_band=mode).separate_tensor(wav, 22050)
             for mode in ("shares", "even")}
    for mode in stems:
        assert error_db(sum(stems[mode].values()), wav) < -60
    assert not torch.allclose(stems["shares"]["source_1"], stems["even"]["source_1"])
    with pytest.raises(ValueError, match="high_band must be one of shares, even, got 'spread'"):
        trackformer.Separator(checkpoint, device="cpu", high_band="spread")


def test_loading_a_model_needs_neither_separate_nor_train():
    """pretrained.load and separate share trackformer.checkpoint_io: no import cycle, no training code."""
    code = ("import sys\nfrom trackformer import pretrained\npretrained.load(sys.argv[1])\n"
            "print(sorted(m for m in sys.modules if m == 'trackformer.separate' or m.startswith('trackformer.train')))")
    done = subprocess.run([sys.executable, "-c", code, pretrained.checkpoint_path("default")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_separator_settings_errors(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="overlap is a fraction of the window"):
        trackformer.Separator(checkpoint, device="cpu", overlap=0.75)
    with pytest.raises(ValueError, match="chunk_seconds must be a positive number"):
        trackformer.Separator(checkpoint, device="cpu", chunk_seconds=-2)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        trackformer.Separator(str(tmp_path / "missing.pt"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            trackformer.Separator(checkpoint, device="cuda")
    sep = trackformer.Separator(checkpoint, device="cpu")
    with pytest.raises(ValueError, match="audio file not found"):
        sep.separate_file(str(tmp_path / "nope.wav"))
