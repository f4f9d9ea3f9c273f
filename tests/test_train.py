"""Trainer: learning, exact resume, checkpoints (atomic, validated), time budget, MAE → MixIT, config, CLI.

Tiny Performer (2 layers, d_model 32, 16 features, n_fft 256) on 8 kHz mono synthetic music, 1 s segments,
batch 4, no loader workers, CPU.
"""

import argparse
import json
import math
import os
import shutil
import signal

import numpy as np
import pytest
import torch

from trackformer.metrics import separation_scores
from trackformer.registry import CheckpointError, build_model, load_checkpoint, load_model
from trackformer.train import PRESETS, TrainConfig, apply_overrides, fit, load_config, preset, pretrain, save_config
from trackformer.train.checkpoint import save_checkpoint
from trackformer.train.cli import add_parser, config_from_args
from trackformer.train.songs import select_songs
from trackformer.train.validation import validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_MODEL = dict(n_fft=256, hop=64, d_model=32, n_layers=2, n_heads=2, nb_features=16, ffn=64, dropout=0.0)


def tiny(run_dir, **changes) -> TrainConfig:
    values = dict(model="performer", model_config=dict(TINY_MODEL), data="synthetic", synthetic_songs=6,
                  synthetic_seconds=3.0, sample_rate=8000, channels=1, segment_seconds=1.0, batch_size=4, lr=3e-3,
                  warmup_steps=3, max_steps=4, examples_per_epoch=400, valid_examples=0, workers=0, log_every=1,
                  eval_every=1000, checkpoint_every=1000, redraw_every=0, device="cpu", run_dir=str(run_dir))
    values.update(changes)
    return TrainConfig(**values)


def train_losses(run_dir, key="loss"):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    return [r[key] for r in records if r["kind"] == "train"]


def assert_same_state(a: dict, b: dict, atol=0.0):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), rtol=0, atol=atol), f"{key} differs"


# ------------------------------------------------------------------------------------------------ learning
def test_mixit_loss_decreases(tmp_path):
    """30 steps: the mean MixIT loss of the last 5 steps is at least 0.5 dB below that of the first 5.

    Measured on the 2-core dev machine: 14.32 -> 13.23 dB (batch-to-batch spread of single steps is ~0.4 dB)."""
    cfg = tiny(tmp_path, max_steps=30, lr=1e-2, eval_every=30, valid_examples=2)
    path = fit(cfg)
    losses = train_losses(cfg.run_dir)
    assert len(losses) == 30
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.5, f"MixIT loss did not decrease: first 5 steps {first:.2f} dB, last 5 {last:.2f} dB"
    payload = load_checkpoint(path)
    assert payload["step"] == 30 and payload["stage"] == "mixit"
    for key in ("loss", "n_eff", "mask_overlap", "mom_sisnri", "song_one_to_one_sisnri", "song_mixit_sisnri"):
        assert key in payload["metrics"] and payload["metrics"][key] == payload["metrics"][key], key  # not NaN
    assert 1.0 <= payload["metrics"]["n_eff"] <= 8.0


def test_mae_loss_decreases_and_initialises_mixit(tmp_path):
    """Audio-MAE: last 5 steps at least 20 % below the first 5 (measured 1.13 -> 0.64); its encoder then
    initialises MixIT training."""
    cfg = tiny(tmp_path / "mae", max_steps=30)
    mae_path = pretrain(cfg)
    losses = train_losses(cfg.run_dir)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, f"MAE loss did not decrease: {first:.3f} -> {last:.3f}"

    # lr 1e-12: after one step the weights are the initial ones to 1e-6, so we see what init_from loaded
    mixit = tiny(tmp_path / "mixit", max_steps=1, lr=1e-12, warmup_steps=0, init_from=mae_path)
    model, _ = load_model(fit(mixit))
    encoder = load_checkpoint(mae_path)["model"]["state"]
    own = model.state_dict()
    for key in model.encoder_state_dict():
        assert torch.allclose(own[key], encoder[key], atol=1e-6), key
    # only the encoder carries over: the MAE head trained in pre-training is left at its fresh initialisation
    assert not torch.allclose(own["mae_head.weight"], encoder["mae_head.weight"], atol=1e-4)


def test_init_from_mixit_checkpoint_loads_whole_model(tmp_path):
    """Fine-tuning: init_from a MixIT checkpoint (a trained separator) carries over every weight, the mask head
    included; a model of another config is refused with a CheckpointError."""
    trained = fit(tiny(tmp_path / "first", max_steps=3))
    tuned = fit(tiny(tmp_path / "tuned", max_steps=1, lr=1e-12, warmup_steps=0, init_from=trained))
    before, after = load_checkpoint(trained)["model"]["state"], load_model(tuned)[0].state_dict()
    for key in ("mask_head.weight", "mask_head.bias", "input_proj.weight"):
        assert torch.allclose(after[key], before[key], atol=1e-6), key
    other = tiny(tmp_path / "other", max_steps=1, model_config=dict(TINY_MODEL, d_model=TINY_MODEL["d_model"] * 2),
                 init_from=trained)
    with pytest.raises(CheckpointError, match="does not fit"):
        fit(other)


def test_resume_equals_uninterrupted(tmp_path):
    """6 steps in one go == 3 steps, stop, resume to 6: bitwise, with dropout, redraws, cosine lr, epoch crossing."""
    changes = dict(model_config=dict(TINY_MODEL, dropout=0.1), redraw_every=2, lr_schedule="cosine",
                   decay_steps=6, examples_per_epoch=8)  # 2 steps per epoch: resume at step 3 is mid-epoch
    whole = fit(tiny(tmp_path / "whole", max_steps=6, **changes))
    part = tiny(tmp_path / "part", max_steps=3, **changes)
    fit(part)
    assert load_checkpoint(os.path.join(part.run_dir, "checkpoints", "last.pt"))["step"] == 3
    resumed = fit(part.replace(max_steps=6), resume=True)
    a, b = load_checkpoint(whole), load_checkpoint(resumed)
    assert b["step"] == 6 and b["epoch"] == a["epoch"] == 3
    assert_same_state(a["model"]["state"], b["model"]["state"])
    assert_same_state(a["optimizer"]["state"][0], b["optimizer"]["state"][0])
    assert train_losses(tmp_path / "whole") == train_losses(part.run_dir)  # metrics.jsonl continued, no gaps


def test_max_minutes_stops_with_checkpoint_and_resumes(tmp_path):
    cfg = tiny(tmp_path, max_steps=1000, max_minutes=1e-5)
    path = fit(cfg)
    payload = load_checkpoint(path)
    assert payload["step"] == 1 and payload["reason"] == "max_minutes"
    with open(os.path.join(cfg.run_dir, "metrics.jsonl"), "a") as f:
        f.write('{"kind": "train", "step": 2, "lo')  # a line cut short by a crash
    more = fit(cfg.replace(max_minutes=None, max_steps=3), resume=True)
    assert load_checkpoint(more)["step"] == 3
    assert len(train_losses(cfg.run_dir)) == 3  # steps 1, 2, 3; the broken line is gone


def test_a_time_budget_alone_bounds_the_run(tmp_path):
    cfg = tiny(tmp_path, max_steps=None, epochs=None, max_minutes=1e-5)
    assert load_checkpoint(fit(cfg))["reason"] == "max_minutes"
    with pytest.raises(ValueError, match="needs an end"):
        cfg.replace(max_minutes=None)
    with pytest.raises(ValueError, match="needs decay_steps"):
        cfg.replace(lr_schedule="cosine")


def test_aux_losses_are_added_with_their_weights(tmp_path):
    cfg = tiny(tmp_path, max_steps=2, diversity_weight=0.5, sparsity_weight=0.25)
    fit(cfg)
    with open(os.path.join(cfg.run_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if '"train"' in line]
    assert len(records) == 2
    for r in records:
        assert 0 <= r["diversity"] <= 1 and 1 <= r["sparsity"] <= 8 ** 0.5
        assert r["loss"] == pytest.approx(r["mixit"] + 0.5 * r["diversity"] + 0.25 * r["sparsity"], abs=1e-4)


def test_convtasnet_trains_and_validates_without_masks(tmp_path):
    small = dict(enc_kernel_size=16, enc_num_feats=16, msk_num_feats=8, msk_num_hidden_feats=16, msk_num_layers=2,
                 msk_num_stacks=1)
    cfg = tiny(tmp_path, model="convtasnet", model_config=small, max_steps=2, eval_every=2, valid_examples=2)
    payload = load_checkpoint(fit(cfg))
    assert payload["model"]["name"] == "convtasnet" and payload["step"] == 2
    assert "song_mixit_sisnri" in payload["metrics"] and "n_eff" not in payload["metrics"]  # no masks
    model, info = load_model(os.path.join(cfg.run_dir, "checkpoints", "last.pt"))
    assert info["name"] == "convtasnet" and model(torch.randn(1, 1, 999)).shape == (1, 8, 1, 999)
    with pytest.raises(ValueError, match="diversity_weight needs a mask-based model"):
        fit(cfg.replace(diversity_weight=0.1))
    with pytest.raises(ValueError, match="no Audio-MAE pre-training"):
        pretrain(cfg)


def test_moisesdb_trains_on_every_song_and_validates_on_at_most_4_stems(tmp_path):
    """Songs with more than 4 stems are trained on (only mixtures matter) and validated on their MUSDB groups."""
    from trackformer.data import MoisesDB, write_song
    from trackformer.data.songs import split_fraction

    rng = np.random.default_rng(0)
    t = np.arange(3 * 8000) / 8000
    names4 = ("soprano", "alto", "tenor", "bass")
    names6 = ("vocals", "drums", "bass", "guitar", "piano", "percussion")
    # song names picked by the split's hash: 2 held-out songs of each kind, 2 training songs of each kind
    songs = {(valid, kind): [] for valid in (True, False) for kind in (4, 6)}
    for i in range(200):
        name = f"song-{i:03d}"
        group = songs[(split_fraction(name, 0) < 0.2, 4 + 2 * (i % 2))]
        if len(group) < 2:
            group.append(name)
    for (_, kind), names in songs.items():
        for name in names:
            stems = {n: (0.1 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) * (rng.uniform(size=t.size) > 0.3))
                     [None].astype(np.float32) for n in (names6 if kind == 6 else names4)}
            write_song(str(tmp_path / "db"), name, stems, 8000)
    cfg = tiny(tmp_path / "run", data="moisesdb", root=str(tmp_path / "db"), max_steps=2, eval_every=2,
               valid_examples=2)
    train, valid = select_songs(cfg)
    all_valid = {s.name for s in MoisesDB(cfg.root, sample_rate=8000, channels=1, max_stems=None).split("valid")}
    assert len(train) == 4 and any(s.num_stems == 6 for s in train)
    assert {s.name for s in valid} == all_valid and len(valid) == 4 and all(s.num_stems <= 4 for s in valid)
    payload = load_checkpoint(fit(cfg))
    assert payload["step"] == 2 and "song_one_to_one_sisnri" in payload["metrics"]


def _corpus(folder, n=12):
    """A music corpus of ``n`` 2 s noise-and-tone recordings at 8 kHz mono (index_music of generated WAVs)."""
    import soundfile as sf

    from trackformer.data import index_music

    rng = np.random.default_rng(1)
    os.makedirs(folder / "music")
    t = np.arange(2 * 8000) / 8000
    for i in range(n):
        x = 0.2 * np.sin(2 * np.pi * (150 + 60 * i) * t) + 0.02 * rng.standard_normal(t.size)
        sf.write(folder / "music" / f"rec{i:02d}.wav", x.astype(np.float32), 8000)
    index_music(str(folder / "music"), str(folder / "corpus"), sample_rate=8000, channels=1, progress=False)
    return str(folder / "corpus")


def test_real_music_corpus_mixed_into_rendered_stems(tmp_path, monkeypatch):
    """real_root + real_fraction: training pairs come from the corpus with that probability, validation stays on
    the stem data; data=corpus trains and validates on the corpus alone."""
    from trackformer.data import MixedPairs
    from trackformer.train.songs import select_real_songs

    root = _corpus(tmp_path)
    cfg = tiny(tmp_path / "run", real_root=root, real_fraction=0.5, max_steps=3, eval_every=3, valid_examples=2)
    real = select_real_songs(cfg)
    assert real and all(s.stem_names == ["mixture"] and s.meta["split"] == "train" for s in real)
    train, valid = select_songs(cfg)
    assert all(s.num_stems > 1 for s in train + valid)  # synthetic stems, not the corpus
    drawn = []
    is_real = MixedPairs.is_real
    monkeypatch.setattr(MixedPairs, "is_real", lambda self, i: drawn.append(is_real(self, i)) or drawn[-1])
    payload = load_checkpoint(fit(cfg))
    assert payload["step"] == 3 and "song_one_to_one_sisnri" in payload["metrics"]
    assert len(drawn) == 12 and 0 < sum(drawn) < 12  # 3 batches of 4, about half of them real
    assert select_real_songs(tiny(tmp_path / "none")) == []

    only = tiny(tmp_path / "corpus-run", data="corpus", root=root, max_steps=2, eval_every=2, valid_examples=2)
    train, valid = select_songs(only)
    assert {s.name for s in train} == {s.name for s in real} and all(s.spans for s in train)
    payload = load_checkpoint(fit(only))
    assert payload["step"] == 2


@pytest.mark.parametrize("changes, match", [
    (dict(real_root="x"), "together"),
    (dict(real_fraction=0.5), "together"),
    (dict(real_root="x", real_fraction=1.5), r"real_fraction must be in \[0, 1\]"),
    (dict(real_root="x", real_fraction=-0.1), "real_fraction must be >= 0"),
    (dict(real_root="", real_fraction=0.5), "real_root"),
    (dict(data="corpus", root=None), "root"),
    (dict(data="corpus", root="x", real_root="y", real_fraction=0.5), "already trains on real music"),
])
def test_real_music_fields_are_validated(changes, match):
    with pytest.raises(ValueError, match=match):
        preset("default").replace(**changes)


def test_missing_or_tiny_corpus_is_a_clear_error(tmp_path):
    from trackformer.train.songs import select_real_songs

    with pytest.raises(FileNotFoundError, match="real_root .* is not a folder"):
        select_real_songs(tiny(tmp_path / "r", real_root=str(tmp_path / "nope"), real_fraction=0.5))
    root = _corpus(tmp_path, n=1)
    with pytest.raises(ValueError, match="MixIT needs at least 2"):
        select_songs(tiny(tmp_path / "r", data="corpus", root=root))


def test_sigterm_stops_after_the_step_with_checkpoint(tmp_path, monkeypatch):
    """SIGTERM (a cluster's preemption) during step 2 ends the run after that step with a checkpoint."""
    from trackformer.train.trainer import Objective

    calls = []
    forward = Objective.forward

    def forward_then_signal(self, x1, x2):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return forward(self, x1, x2)

    monkeypatch.setattr(Objective, "forward", forward_then_signal)
    previous = signal.getsignal(signal.SIGTERM)
    payload = load_checkpoint(fit(tiny(tmp_path, max_steps=1000)))
    assert (payload["step"], payload["reason"]) == (2, "SIGTERM")
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is uninstalled again


class _Halves(torch.nn.Module):
    """A fixed "separator" without masks: two outputs, 0.7 and 0.3 of the mixture plus a little of it delayed."""

    has_masks, channels = False, None

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, mixture):
        echo = 0.05 * torch.roll(mixture, 7, dims=-1)
        return torch.stack((0.7 * mixture + echo, 0.3 * mixture - echo), dim=1)


def test_validation_averages_sisnri_over_multi_stem_segments_only(tmp_path):
    """A 1-stem song segment (the mixture is its stem: SI-SNRi ~ -90 dB) is scored as SI-SNR on its own row
    (FUSS convention), not averaged into the SI-SNRi rows; a silent one is counted and skipped."""
    t = torch.arange(800) / 8000
    tone = lambda f, a: (a * torch.sin(2 * np.pi * f * t))[None]  # (C=1, T)
    stems1 = torch.stack((tone(300, 0.5), tone(1200, 0.3)))  # 2 active stems
    stems2 = torch.stack((tone(500, 0.4), torch.zeros(1, 800)))  # 1 active stem (+ a silent one)
    stems3 = torch.zeros(2, 1, 800)  # silent song
    batch = lambda a, b: dict(x1=a.sum(0)[None], x2=b.sum(0)[None], stems1=a[None], stems2=b[None],
                              n_stems1=torch.tensor([2]), n_stems2=torch.tensor([2]))
    model = _Halves()
    metrics = validate(model, [batch(stems1, stems2), batch(stems1, stems3)], "mixit", tiny(tmp_path))
    multi = separation_scores(model(stems1.sum(0)[None])[0], stems1, stems1.sum(0))
    single = separation_scores(model(stems2.sum(0)[None])[0], stems2, stems2.sum(0))
    assert single["n_active_refs"] == 1 and single["one_to_one_sisnri"] < -50  # what used to be averaged in
    assert metrics["song_one_to_one_sisnri"] == pytest.approx(multi["one_to_one_sisnri"])
    assert metrics["song_mixit_sisnri"] == pytest.approx(multi["mixit_sisnri"])
    assert metrics["song_single_stem_sisnr"] == pytest.approx(single["one_to_one_sisnr"])
    assert (metrics["song_segments_multi_stem"], metrics["song_segments_single_stem"],
            metrics["songs_skipped_silent"]) == (2, 1, 1)
    mom = separation_scores(model((stems1.sum(0) + stems2.sum(0))[None])[0],
                            torch.stack((stems1.sum(0), stems2.sum(0))), stems1.sum(0) + stems2.sum(0))
    assert metrics["mom_sisnri"] == pytest.approx(mom["mixit_sisnri"])  # the pair with a silent song is left out


# ------------------------------------------------------------------------------------------------ checkpoints
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step run: (config, checkpoint path)."""
    cfg = tiny(tmp_path_factory.mktemp("trained") / "run", max_steps=2)
    return cfg, fit(cfg)


def test_load_model_for_inference(trained):
    cfg, path = trained
    model, info = load_model(path)
    assert not model.training
    assert info["sample_rate"] == 8000 and info["channels"] == 1 and info["segment_seconds"] == 1.0
    assert info["stage"] == "mixit" and info["step"] == 2 and info["name"] == "performer"
    x = torch.randn(1, 1, 1234)
    est = model(x)
    assert est.shape == (1, 8, 1, 1234)
    torch.testing.assert_close(est.sum(1), x, rtol=1e-4, atol=1e-4)


def test_truncated_checkpoint_is_a_clear_error(trained, tmp_path):
    cfg, path = trained
    bad = tmp_path / "run" / "checkpoints" / "last.pt"
    bad.parent.mkdir(parents=True)
    data = open(path, "rb").read()
    bad.write_bytes(data[: len(data) // 2])
    for load in (load_checkpoint, load_model):
        with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
            load(str(bad))
        assert str(bad) in str(err.value)
    with pytest.raises(CheckpointError, match=str(bad)):
        fit(cfg.replace(run_dir=str(tmp_path / "run")), resume=True)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(str(tmp_path / "missing.pt"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            load_model(path, map_location="cuda")


def test_other_version_or_model_is_a_clear_error(trained, tmp_path):
    cfg, path = trained
    payload = torch.load(path, weights_only=True)
    old = tmp_path / "old.pt"
    torch.save(dict(payload, format_version=99), old)
    with pytest.raises(CheckpointError, match="format version 99") as err:
        load_model(str(old))
    assert str(old) in str(err.value)

    foreign = tmp_path / "foreign.pt"
    torch.save(dict(payload, model=dict(payload["model"], name="wavenet")), foreign)
    with pytest.raises(CheckpointError, match="cannot build") as err:
        load_model(str(foreign))
    assert str(foreign) in str(err.value)

    run = tmp_path / "run"
    shutil.copytree(cfg.run_dir, run)
    other_model = cfg.replace(run_dir=str(run), model_config=dict(TINY_MODEL, d_model=64))
    with pytest.raises(CheckpointError, match="holds model") as err:
        fit(other_model, resume=True)
    assert os.path.join(str(run), "checkpoints", "last.pt") in str(err.value)
    with pytest.raises(CheckpointError, match="'mixit' checkpoint"):
        pretrain(cfg.replace(run_dir=str(run)), resume=True)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """An interrupted write leaves the previous checkpoint intact and no partial or temporary file."""
    path = str(tmp_path / "last.pt")
    save_checkpoint(path, dict(stage="mixit", step=1, config={}, model=dict(name="x", config={}, state={})))

    def interrupted_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, dict(stage="mixit", step=2, config={}, model=dict(name="x", config={}, state={})))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["last.pt"]
    assert load_checkpoint(path)["step"] == 1


# ------------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("name", PRESETS)
def test_presets_yaml_round_trip_and_config_files(name, tmp_path):
    cfg = preset(name)
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(str(tmp_path / "c.yaml")) == cfg
    assert load_config(os.path.join(ROOT, "configs", name.replace("-", "_") + ".yaml")) == cfg


def test_config_overrides_and_errors(tmp_path):
    cfg = apply_overrides(preset("tiny-cpu"), ["lr=3e-4", "model_config.d_model=128", "max_steps=null",
                                               "epochs=2", "root=/data/x"])
    assert cfg.lr == 3e-4 and cfg.model_config["d_model"] == 128 and cfg.max_steps is None and cfg.epochs == 2
    with pytest.raises(ValueError, match="unknown TrainConfig key 'lrate'"):
        apply_overrides(cfg, ["lrate=1"])
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides(cfg, ["lr"])
    (tmp_path / "bad.yaml").write_text("lr: 1e-4\nbatchsize: 3\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown TrainConfig keys \['batchsize'\]"):
        load_config(str(tmp_path / "bad.yaml"))
    (tmp_path / "ok.yaml").write_text("lr: 1e-4\nmax_steps: 10\n")  # YAML 1.1 reads 1e-4 as a string
    assert load_config(str(tmp_path / "ok.yaml")).lr == 1e-4
    for bad, match in ((dict(batch_size=0), "batch_size"), (dict(amp="fp8"), "amp"),
                       (dict(max_steps=None, epochs=None), "needs an end"),
                       (dict(data="moisesdb", root=None), "root"), (dict(channels=3), "channels"),
                       (dict(mae_mask_ratio=1.0), "mae_mask_ratio"), (dict(lr=float("nan")), "lr")):
        with pytest.raises(ValueError, match=match):
            preset("tiny-cpu").replace(**bad)
    with pytest.raises(ValueError, match="amp='fp16' needs a CUDA device"):
        fit(tiny(tmp_path / "amp", amp="fp16"))
    with pytest.raises(ValueError, match="model_config.sample_rate=16000 disagrees"):
        fit(tiny(tmp_path / "sr", model_config=dict(TINY_MODEL, sample_rate=16000)))


def test_bf16_autocast_trains_on_the_cpu(tmp_path):
    """amp=bf16 on the CPU: the same run as fp32 (same data, init and schedule), its losses finite and within
    0.5 dB of the fp32 run's (bf16 matmuls; the STFT, masks, FAVOR+ features and losses stay float32), no grad
    scaler saved."""
    losses = {}
    for amp in ("off", "bf16"):
        path = fit(tiny(tmp_path / amp, amp=amp, max_steps=3))
        losses[amp] = train_losses(tmp_path / amp)
        payload = load_checkpoint(path)
        assert payload["scaler"] is None and payload["config"]["amp"] == amp
    assert len(losses["bf16"]) == 3 and all(math.isfinite(v) for v in losses["bf16"])
    assert max(abs(a - b) for a, b in zip(losses["off"], losses["bf16"])) < 0.5
    assert losses["off"] != losses["bf16"]  # autocast was on


def test_cli_builds_the_config_and_trains(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command", required=True))
    config_file = tmp_path / "tiny.yaml"
    save_config(tiny(tmp_path / "unused"), config_file)
    args = parser.parse_args(["train", "--config", str(config_file), "--max-steps", "2", "--segment", "0.5",
                              "--run-dir", str(tmp_path / "cli"), "--set", "model_config.ffn=32", "--device", "cpu"])
    cfg = config_from_args(args)
    assert (cfg.max_steps, cfg.segment_seconds, cfg.model_config["ffn"]) == (2, 0.5, 32)
    assert args.func(args) == 0
    payload = load_checkpoint(str(tmp_path / "cli" / "checkpoints" / "last.pt"))
    assert (payload["step"], payload["reason"]) == (2, "max_steps=2")
    assert "stopped by max_steps=2; last checkpoint" in capsys.readouterr().out
    args = parser.parse_args(["pretrain", "--preset", "tiny-cpu", "--root", "/x", "--data", "stems"])
    assert config_from_args(args).data == "stems" and args.func is not None
    args = parser.parse_args(["train", "--preset", "tiny-cpu", "--root", "/x", "--data", "corpus"])
    assert config_from_args(args).data == "corpus"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--preset", "tiny-cpu", "--config", str(config_file)])


# ------------------------------------------------------------------------------------------------ GPU
@pytest.mark.gpu
@pytest.mark.parametrize("amp", ["off", "bf16", "fp16"])
def test_cuda_training_with_amp_resumes_exactly(tmp_path, amp):
    """On CUDA: finite losses under autocast (fp16 with a grad scaler); resume reproduces the uninterrupted run."""
    changes = dict(device="cuda", amp=amp, model_config=dict(TINY_MODEL, dropout=0.1), redraw_every=2,
                   examples_per_epoch=8)
    whole = fit(tiny(tmp_path / "whole", max_steps=4, **changes))
    losses = train_losses(tmp_path / "whole")
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    part = tiny(tmp_path / "part", max_steps=2, **changes)
    fit(part)
    resumed = fit(part.replace(max_steps=4), resume=True)
    a, b = load_checkpoint(whole), load_checkpoint(resumed)
    assert (b["scaler"] is not None) == (amp == "fp16")
    # GPU kernels (atomics, cuFFT) need not be bitwise reproducible and Adam amplifies last-bit differences of
    # tiny gradients, so the bound is 1 % of how far training moved the weights: a wrong data order, RNG state
    # or schedule after resume moves them by about as much as training itself.
    torch.manual_seed(0)
    initial = build_model("performer", dict(TINY_MODEL, dropout=0.1, sample_rate=8000, channels=1)).state_dict()
    moved = max((a["model"]["state"][k].cpu() - v).abs().max().item() for k, v in initial.items()
                if not k.endswith(".projection") and v.is_floating_point())
    assert moved > 0
    assert_same_state(a["model"]["state"], b["model"]["state"], atol=1e-6 + 0.01 * moved)
    model, _ = load_model(resumed)  # map_location cpu
    assert next(model.parameters()).device.type == "cpu"


@pytest.mark.parametrize("changes, match", [
    (dict(stems_per_mixture=0), "stems_per_mixture"),
    (dict(stems_per_mixture=True), "stems_per_mixture"),
    (dict(stem_gain_db=[6.0, -6.0]), "stem_gain_db"),
    (dict(stem_gain_db=[0.0]), "stem_gain_db"),
    (dict(stem_gain_db="loud"), "stem_gain_db"),
])
def test_stem_augmentation_fields_are_validated(changes, match):
    with pytest.raises(ValueError, match=match):
        preset("default").replace(**changes)
    assert preset("default").stems_per_mixture == 2 and preset("default").stem_gain_db == [-6.0, 6.0]
