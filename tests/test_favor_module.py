"""trackformer.nn.FavorAttention: shapes, the softmax switch, feature redraws, eval-time stability."""

import pytest
import torch
import torch.nn.functional as F

from trackformer.kernels.favor.reference import favor_attention_reference
from trackformer.nn import FavorAttention


def _heads(module, x):
    b, length, _ = x.shape
    qkv = module.qkv(x).view(b, length, 3, module.n_heads, module.d_head).permute(2, 0, 3, 1, 4)
    return qkv.unbind(0)


def _merge(module, y):
    b, _, length, _ = y.shape
    return module.out(y.transpose(1, 2).reshape(b, length, module.d_model))


@pytest.mark.parametrize("attention", ["favor", "softmax"])
def test_shapes_and_equivalence_to_the_formula(attention):
    module = FavorAttention(64, 4, nb_features=48, attention=attention)
    x = torch.randn(3, 29, 64)
    y = module(x)
    assert y.shape == (3, 29, 64) and torch.isfinite(y).all()
    q, k, v = _heads(module, x)
    if attention == "favor":
        expected = _merge(module, favor_attention_reference(q, k, v, module.projection))
    else:
        expected = _merge(module, F.scaled_dot_product_attention(q, k, v))
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-5)
    y.square().sum().backward()
    assert module.qkv.weight.grad is not None and torch.isfinite(module.qkv.weight.grad).all()
    assert module.projection.grad is None


def test_redraw_in_training_and_fixed_in_eval():
    module = FavorAttention(32, 2, nb_features=32)
    assert module.projection.shape == (32, 16) and module.nb_features == 32
    before = module.projection.clone()
    assert module.redraw_features(torch.Generator().manual_seed(1))
    assert not torch.equal(before, module.projection)
    drawn = module.projection.clone()
    module.eval()
    x = torch.randn(1, 10, 32)
    y1 = module(x)
    assert not module.redraw_features()
    assert torch.equal(module.projection, drawn)
    assert torch.equal(module(x), y1)
    state = module.state_dict()
    assert "projection" in state
    fresh = FavorAttention(32, 2, nb_features=32)
    fresh.load_state_dict(state)
    fresh.eval()
    assert torch.equal(fresh(x), y1)


def test_dropout_only_in_training():
    module = FavorAttention(32, 2, nb_features=16, dropout=0.5)
    x = torch.randn(2, 8, 32)
    module.eval()
    assert torch.equal(module(x), module(x))
    module.train()
    assert (module(x) == 0).any()


def test_bad_configuration_and_input():
    with pytest.raises(ValueError, match="multiple of n_heads"):
        FavorAttention(30, 4)
    with pytest.raises(ValueError, match="d_model / n_heads"):
        FavorAttention(96, 4)  # d_head 24
    FavorAttention(96, 4, attention="softmax")  # any head size for exact attention
    with pytest.raises(ValueError, match="attention must be"):
        FavorAttention(64, 4, attention="linear")
    with pytest.raises(ValueError, match="multiple of 16"):
        FavorAttention(64, 4, nb_features=40)
    with pytest.raises(ValueError, match=r"\(batch, length, 64\)"):
        FavorAttention(64, 4)(torch.randn(3, 64))
