"""trackformer.registry: build/name/config round trip, checkpoint reading, and inference without the trainer."""

import subprocess
import sys

import pytest
import torch

from trackformer.registry import MODEL_NAMES, CheckpointError, build_model, load_model, model_config, model_name
from trackformer.train.checkpoint import save_checkpoint

TINY = {"performer": dict(n_fft=256, hop=64, d_model=32, n_layers=1, n_heads=2, nb_features=16, ffn=32,
                          sample_rate=8000, channels=1),
        "convtasnet": dict(n_sources=2, msk_num_layers=1, msk_num_stacks=1, sample_rate=8000)}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_build_name_config_round_trip(name):
    model = build_model(name, TINY[name])
    assert model_name(model) == name
    rebuilt = build_model(name, model_config(model))
    assert model_config(rebuilt) == model_config(model)


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown model name 'demucs'"):
        build_model("demucs")
    with pytest.raises(TypeError, match="Linear is not a registered model"):
        model_name(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_load_model_gives_the_saved_weights_in_eval_mode(tmp_path, name):
    model = build_model(name, TINY[name])
    path = save_checkpoint(str(tmp_path / "m.pt"), dict(
        stage="mixit", step=7, config=dict(sample_rate=8000, channels=1, segment_seconds=1.0),
        model=dict(name=name, config=model_config(model), state=model.state_dict())))
    loaded, info = load_model(path)
    assert not loaded.training and (info["name"], info["step"], info["sample_rate"]) == (name, 7, 8000)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_load_model_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(CheckpointError, match="not found: .*missing.pt"):
        load_model(str(tmp_path / "missing.pt"))


def test_inference_imports_no_training_code():
    """Separating with a checkpoint needs the registry and trackformer.separate, never trackformer.train."""
    code = ("import sys, trackformer.separate, trackformer.registry; "
            "print(sorted(m for m in sys.modules if m.startswith('trackformer.train')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
