"""ConvTasNet baseline: torchaudio-default parameter count, exact output length, per-channel folding, config."""

import pytest
import torch

from trackformer.baselines import ConvTasNet
from trackformer.registry import build_model, model_config, model_name

SMALL = dict(n_sources=3, enc_kernel_size=8, enc_num_feats=16, msk_kernel_size=3, msk_num_feats=8,
             msk_num_hidden_feats=12, msk_num_layers=3, msk_num_stacks=2)


@pytest.fixture(scope="module")
def default_model():
    return ConvTasNet().eval()


def test_default_parameter_count(default_model):
    # torchaudio.models.ConvTasNet(num_sources=8) with its defaults has exactly this many parameters.
    assert sum(p.numel() for p in default_model.parameters()) == 5_381_169


def test_state_dict_layout_follows_torchaudio(default_model):
    keys = set(default_model.state_dict())
    assert {"encoder.weight", "decoder.weight", "mask_generator.input_norm.weight",
            "mask_generator.output_conv.weight", "mask_generator.conv_layers.0.conv_layers.3.weight",
            "mask_generator.conv_layers.23.skip_out.weight"} <= keys
    assert "mask_generator.conv_layers.23.res_out.weight" not in keys  # the last block has no residual output
    assert "mask_generator.conv_layers.22.res_out.weight" in keys
    assert default_model.mask_generator.conv_layers[7].conv_layers[3].dilation == (128,)  # 2^7, stack 1
    assert default_model.mask_generator.conv_layers[8].conv_layers[3].dilation == (1,)  # stack 2 restarts


def test_matches_torchaudio_when_installed():
    ta_models = pytest.importorskip("torchaudio.models")
    ref = ta_models.ConvTasNet(num_sources=3, enc_kernel_size=8, enc_num_feats=16, msk_kernel_size=3,
                               msk_num_feats=8, msk_num_hidden_feats=12, msk_num_layers=3, msk_num_stacks=2).eval()
    model = ConvTasNet(**SMALL).eval()
    model.load_state_dict(ref.state_dict())
    x = torch.randn(2, 1, 203)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[:, :, 0], ref(x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 2, 333), (2, 1, 201), (1, 2, 8)])
def test_default_shapes_exact_length(default_model, shape):
    with torch.no_grad():
        out = default_model(torch.randn(shape))
    b, c, t = shape
    assert out.shape == (b, 8, c, t)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kernel", [8, 9, 16])
@pytest.mark.parametrize("t", [1, 5, 77, 160])
def test_small_any_kernel_exact_length(kernel, t):
    model = ConvTasNet(**dict(SMALL, enc_kernel_size=kernel)).eval()
    out = model(torch.randn(2, 2, t))
    assert out.shape == (2, 3, 2, t)


def test_channels_and_examples_are_independent():
    model = ConvTasNet(**SMALL).eval()
    x = torch.randn(2, 2, 301)
    with torch.no_grad():
        both = model(x)
        left = model(x[1:, :1])  # second example, first channel alone
    torch.testing.assert_close(both[1:, :, :1], left, rtol=1e-5, atol=1e-6)


def test_relu_variant_gradients_flow():
    model = ConvTasNet(**dict(SMALL, msk_activate="relu"))
    x = torch.randn(1, 1, 257, requires_grad=True)
    out = model(x)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_half_precision_input_returns_input_dtype():
    model = ConvTasNet(**SMALL).eval()
    x = torch.randn(1, 2, 100)
    with torch.no_grad():
        ref = model(x)
        out = model(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.02)  # bf16 input rounding (~0.4 %)


def test_config_round_trip_and_registry():
    model = ConvTasNet(**SMALL, sample_rate=16000)
    assert model.config["sample_rate"] == 16000 and model.sample_rate == 16000
    assert model_name(model) == "convtasnet"
    rebuilt = build_model("convtasnet", model_config(model))
    rebuilt.load_state_dict(model.state_dict())  # same architecture
    assert rebuilt.config == model.config
    x = torch.randn(1, 1, 64)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x))
    model.config["n_sources"] = 99  # a copy: the model's own config is unchanged
    assert model.config["n_sources"] == 3


@pytest.mark.parametrize("bad, error, match", [
    (dict(msk_activate="tanh"), ValueError, "msk_activate"),
    (dict(msk_kernel_size=4), ValueError, "msk_kernel_size"),
    (dict(enc_kernel_size=1), ValueError, "enc_kernel_size"),
    (dict(n_sources=0), ValueError, "n_sources"),
    (dict(enc_num_feats=2.5), ValueError, "enc_num_feats"),
])
def test_bad_config(bad, error, match):
    with pytest.raises(error, match=match):
        ConvTasNet(**dict(SMALL, **bad))


def test_from_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown keys"):
        ConvTasNet.from_config({"num_sources": 2})


@pytest.mark.parametrize("x, error, match", [
    (torch.randn(2, 100), ValueError, "shape"),
    (torch.ones(1, 1, 10, dtype=torch.int64), TypeError, "floating"),
    (torch.randn(1, 1, 0), ValueError, "one sample"),
    (torch.full((1, 1, 10), float("inf")), ValueError, "NaN or inf"),
    ([[0.0]], TypeError, "Tensor"),
])
def test_bad_input(x, error, match):
    with pytest.raises(error, match=match):
        ConvTasNet(**SMALL)(x)


@pytest.mark.gpu
def test_cuda_forward_backward_matches_cpu():
    model = ConvTasNet(**SMALL).eval()
    x = torch.randn(2, 2, 1001)
    with torch.no_grad():
        ref = model(x)
    cuda = model.cuda()
    out = cuda(x.cuda())
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-2, atol=1e-3)  # cuDNN may use TF32 for fp32 convs
    out.square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in cuda.parameters())
    with pytest.raises(ValueError, match="model is on"):
        cuda(x)
