"""The public FAVOR+ op: validation errors, backend dispatch, torch.library registration, torch.compile."""

import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd

from trackformer.kernels import favor_attention, favor_features, orthogonal_random_features
from trackformer.kernels.favor import op, triton_fwd
from trackformer.kernels.favor.reference import favor_attention_reference

pytestmark = pytest.mark.filterwarnings("ignore:Conversion of an array with ndim:DeprecationWarning")  # interpreter


def _inputs(b=1, h=2, length=13, d=32, m=48, requires_grad=False):
    q, k, v = (torch.randn(b, h, length, d, requires_grad=requires_grad) for _ in range(3))
    return q, k, v, orthogonal_random_features(m, d)


@pytest.mark.parametrize("make,error,match", [
    (lambda q, k, v, w: (q[0], k, v, w), ValueError, "batch, heads, length, head_dim"),
    (lambda q, k, v, w: (q.numpy(), k, v, w), TypeError, "q must be a torch.Tensor"),
    (lambda q, k, v, w: (q.long(), k.long(), v.long(), w), TypeError, "float32"),
    (lambda q, k, v, w: (q, k.half(), v, w), TypeError, "one dtype"),
    (lambda q, k, v, w: (q, k, v[:, :, :5], w), ValueError, "same shape"),
    (lambda q, k, v, w: (q, k[:, :1], v[:, :1], w), ValueError, "agree in batch, heads and head_dim"),
    (lambda q, k, v, w: (q[:, :, :0], k, v, w), ValueError, "empty"),
    (lambda q, k, v, w: (q[..., :24], k[..., :24], v[..., :24], w[:, :24]), ValueError, "head_dim D must be"),
    (lambda q, k, v, w: (q, k, v, w[:40]), ValueError, "multiple of 16"),
    (lambda q, k, v, w: (q, k, v, torch.randn(528, 32)), ValueError, "multiple of 16"),
    (lambda q, k, v, w: (q, k, v, w[:, :16]), ValueError, r"projection must have shape \(m, D=32\)"),
    (lambda q, k, v, w: (q, k, v, w.long()), TypeError, "projection must be float"),
    (lambda q, k, v, w: (q, k, v, w.to("meta")), ValueError, "projection is on meta"),
    (lambda q, k, v, w: (q, k, v, w.clone().requires_grad_()), ValueError, "requires grad"),
])
def test_bad_inputs_raise_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        favor_attention(*make(*_inputs()))


def test_limits_are_defined_once_and_exported():
    """trackformer.kernels exports the FAVOR+ limits; the op and the module share its checks."""
    import trackformer.kernels as kernels
    from trackformer.kernels.favor import limits
    from trackformer.nn.attention import FavorAttention

    assert kernels.HEAD_DIMS is limits.HEAD_DIMS is op.HEAD_DIMS == (16, 32, 64, 128)
    assert kernels.MAX_FEATURES is op.MAX_FEATURES == 512
    for m in (16, 256, 512):
        kernels.check_features(m)
    for m in (0, 8, 40, 528, 16.0, True):
        with pytest.raises(ValueError, match="multiple of 16 in"):
            kernels.check_features(m)
    with pytest.raises(ValueError, match=r"head_dim D must be one of \(16, 32, 64, 128\), got 24"):
        kernels.check_head_dim(24)
    with pytest.raises(ValueError, match="nb_features must be a multiple of 16"):
        FavorAttention(64, 4, nb_features=40)
    with pytest.raises(ValueError, match="d_model / n_heads = 96 / 4 must be one of"):
        FavorAttention(96, 4)


def test_bad_eps_and_device_mismatch():
    q, k, v, w = _inputs()
    for eps in (-1.0, float("nan"), float("inf"), "1e-4"):
        with pytest.raises(ValueError, match="eps"):
            favor_attention(q, k, v, w, eps=eps)
        with pytest.raises(ValueError, match="eps"):
            favor_features(q, w, is_query=True, eps=eps)
    with pytest.raises(ValueError, match="one device"):
        favor_attention(q, k.to("meta"), v, w)
    with pytest.raises(TypeError, match="is_query"):
        favor_features(q, w, is_query=1)
    with pytest.raises(ValueError, match="projection must have shape"):
        favor_features(q, w[:, :16], is_query=True)


def test_causal_is_not_implemented():
    with pytest.raises(NotImplementedError, match="causal"):
        favor_attention(*_inputs(), causal=True)


def test_backend_env_dispatch(monkeypatch):
    q, k, v, w = _inputs()
    monkeypatch.setenv("TRACKFORMER_FAVOR_BACKEND", "reference")
    assert torch.equal(favor_attention(q, k, v, w), favor_attention_reference(q, k, v, w))
    monkeypatch.setenv("TRACKFORMER_FAVOR_BACKEND", "cuda-please")
    with pytest.raises(ValueError, match="TRACKFORMER_FAVOR_BACKEND"):
        favor_attention(q, k, v, w)
    monkeypatch.setenv("TRACKFORMER_FAVOR_BACKEND", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        favor_attention(q, k, v, w)
    monkeypatch.delenv("TRACKFORMER_FAVOR_BACKEND")
    assert op._backend(q.device) == "chunked"
    assert op._backend(torch.device("cuda")) == "triton"


@pytest.mark.parametrize("backend", ["chunked", "triton"])
def test_opcheck(backend):
    if backend == "triton" and not torch.cuda.is_available() and not triton_fwd.interpreting():
        pytest.skip("Triton kernels need CUDA or TRITON_INTERPRET=1 set before import (make test sets it)")
    q, k, v, w = _inputs(length=9, d=16, m=16, requires_grad=True)
    torch.library.opcheck(torch.ops.trackformer.favor_attention.default, (q, k, v, w, 1e-4, backend))
    out = torch.ops.trackformer.favor_attention(q, k, v, w, 1e-4, backend)
    saved = [t.detach() for t in (q, k, v, w, *out)]
    grad_args = (torch.randn_like(out[0]), *saved, 1e-4, backend)
    torch.library.opcheck(torch.ops.trackformer.favor_attention_backward.default, grad_args,
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def test_compile_fullgraph_keeps_one_node(monkeypatch):
    """torch.compile(fullgraph=True): one trackformer::favor_attention node, same values and gradients.

    The backend is aot_eager (traces forward and backward through the fake kernels); inductor gives the same
    graph but takes ~20-45 s of C++ compilation on a 2-core machine.
    """
    monkeypatch.setenv("TRACKFORMER_FAVOR_BACKEND", "chunked")
    q, k, v, w = _inputs(requires_grad=True)
    graphs = []

    def capture(gm, example_inputs):
        graphs.append(gm)
        return aot_autograd(fw_compiler=lambda g, _: make_boxed_func(g.forward))(gm, example_inputs)

    torch._dynamo.reset()
    compiled = torch.compile(lambda q, k, v: favor_attention(q, k, v, w) * 2.0, fullgraph=True, backend=capture)
    out = compiled(q, k, v)
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    expected = favor_attention(q, k, v, w) * 2.0
    expected_grads = torch.autograd.grad(expected.sum(), (q, k, v))
    assert len(graphs) == 1
    nodes = [n for n in graphs[0].graph.nodes if n.op == "call_function" and "favor_attention" in str(n.target)]
    assert len(nodes) == 1
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads, expected_grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.gpu
def test_compile_inductor_cuda_matches_eager():
    q, k, v = (torch.randn(2, 4, 700, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    w = orthogonal_random_features(256, 64).cuda()
    loss_fn = lambda q, k, v: favor_attention(q, k, v, w).float().square().mean()
    torch._dynamo.reset()
    compiled = torch.compile(loss_fn, fullgraph=True)
    loss = compiled(q, k, v)
    grads = torch.autograd.grad(loss, (q, k, v))
    expected = loss_fn(q, k, v)
    expected_grads = torch.autograd.grad(expected, (q, k, v))
    torch.testing.assert_close(loss, expected)
    for a, b in zip(grads, expected_grads):
        torch.testing.assert_close(a, b)
