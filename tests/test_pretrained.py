"""trackformer.pretrained: shipped names and paths, model cards, load, and the slim export of a real training
checkpoint (optimizer and RNG states dropped, same model)."""

import os

import pytest
import torch

from trackformer import pretrained
from trackformer.registry import load_checkpoint, load_model
from trackformer.train import TrainConfig, fit

TINY_MODEL = dict(n_fft=256, hop=64, d_model=32, n_layers=1, n_heads=2, nb_features=16, ffn=32, dropout=0.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step MixIT run of a tiny Performer on synthetic music: its last.pt (a full training checkpoint)."""
    run = tmp_path_factory.mktemp("pretrained") / "tinyrun"
    cfg = TrainConfig(model="performer", model_config=dict(TINY_MODEL), data="synthetic", synthetic_songs=4,
                      synthetic_seconds=2.0, sample_rate=8000, channels=1, segment_seconds=1.0, batch_size=2,
                      lr=1e-3, warmup_steps=1, max_steps=2, examples_per_epoch=40, valid_examples=0, workers=0,
                      log_every=1, eval_every=1000, checkpoint_every=1000, redraw_every=0, device="cpu",
                      run_dir=str(run))
    return fit(cfg)


@pytest.fixture()
def shipped(tmp_path, monkeypatch):
    """An empty stand-in for the trackformer/pretrained/ folder."""
    monkeypatch.setattr(pretrained, "PACKAGE_DIR", str(tmp_path))
    return tmp_path


def test_checkpoint_path_names_and_paths(shipped, trained):
    with pytest.raises(ValueError, match=r"no shipped model named 'default'; this install ships no model .*"
                                         r"pass the path of a checkpoint"):
        pretrained.checkpoint_path()
    os.link(trained, shipped / "default.pt")
    os.link(trained, shipped / "small.pt")
    assert pretrained.shipped_names() == ["default", "small"]
    assert pretrained.checkpoint_path() == str(shipped / "default.pt")
    assert pretrained.checkpoint_path("small") == str(shipped / "small.pt")
    assert pretrained.checkpoint_path(trained) == trained  # a path is itself
    with pytest.raises(ValueError, match="no shipped model named 'big'; this install ships 'default', 'small'"):
        pretrained.checkpoint_path("big")
    with pytest.raises(FileNotFoundError, match="checkpoint not found: runs/x/last.pt"):
        pretrained.checkpoint_path("runs/x/last.pt")
    with pytest.raises(TypeError, match="shipped model's name or a checkpoint path"):
        pretrained.checkpoint_path(3)


def test_model_label_keeps_runs_apart():
    assert pretrained.model_label("default") == "default"
    assert pretrained.model_label("runs/a/checkpoints/last.pt") == "a-last"
    assert pretrained.model_label("runs/b/checkpoints/last.pt") == "b-last"
    assert pretrained.model_label("outputs/demo/model.pt") == "model"


def test_load_gives_an_eval_model_on_the_device(shipped, trained):
    os.link(trained, shipped / "default.pt")
    model = pretrained.load()
    assert isinstance(model, torch.nn.Module) and not model.training and model.sample_rate == 8000
    assert next(model.parameters()).device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pretrained.load(device="cuda")


def test_describe_reads_the_card_else_the_checkpoint(shipped, trained):
    assert "No model named 'default' is installed" in pretrained.describe()
    os.link(trained, shipped / "default.pt")
    assert pretrained.describe() == ("performer model trained (mixit) on synthetic data at 8000 Hz mono, 1.0 s "
                                     "segments, 2 steps.")
    (shipped / "default.md").write_text("# default\n\nTrained on\nrendered songs.\n\nScores: ...\n")
    assert pretrained.describe() == "Trained on rendered songs."
    assert pretrained.model_card().startswith("# default")


def test_export_writes_a_slim_checkpoint_of_the_same_model(tmp_path, trained):
    full = load_checkpoint(trained)
    assert full["optimizer"]  # a real training checkpoint, with its optimizer state
    out = pretrained.export(trained, str(tmp_path / "slim.pt"))
    slim = load_checkpoint(out)
    assert not {"optimizer", "scheduler", "scaler", "rng"} & set(slim)
    assert slim["step"] == full["step"] == 2 and slim["config"] == full["config"]
    assert slim["model"]["name"] == full["model"]["name"] and slim["model"]["config"] == full["model"]["config"]
    assert os.path.getsize(out) < 0.6 * os.path.getsize(trained)  # Adam's two moments are gone
    a, info_a = load_model(trained)
    b, info_b = load_model(out)
    x = 0.1 * torch.randn(1, 1, 8000)
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)
    assert info_b["segment_seconds"] == info_a["segment_seconds"] == 1.0
    with pytest.raises(ValueError, match="would overwrite its input"):
        pretrained.export(out, out)
