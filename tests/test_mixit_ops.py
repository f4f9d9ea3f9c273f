"""The compiled MixIT ops directly: torch.ops.trackformer.mixit_stats / mixit_search against plain PyTorch."""

import math

import pytest
import torch

from trackformer import _ext
from trackformer.mixit import best_assignment, mixit_loss
from trackformer.mixit.search import search_reference
from trackformer.mixit.stats import statistics_reference

ops = _ext.ops()  # loads the compiled extension (and registers the fake kernels)


def _stats(b, m, n, length, dtype=torch.float32, device="cpu"):
    """Statistics (float64 reference) of random inputs, as ``dtype`` on ``device`` (the search takes float32 too)."""
    est = torch.randn(b, m, length, dtype=torch.float64)
    mix = torch.randn(b, n, length, dtype=torch.float64) + est[:, :n]
    return tuple(t.to(device=device, dtype=dtype) for t in statistics_reference(est, mix))


F32, F64 = torch.float32, torch.float64


@pytest.mark.parametrize("m,n,b,dtype,snr_max", [
    (2, 2, 1, F32, 30.0), (2, 2, 3, F64, 0.0), (5, 2, 3, F32, 30.0), (5, 2, 3, F64, 0.0), (7, 3, 2, F32, 0.0),
    (7, 3, 2, F64, 30.0), (6, 6, 1, F32, 30.0), (16, 2, 2, F32, 30.0), (16, 2, 1, F64, 0.0),
])
def test_search_op_matches_reference(m, n, b, dtype, snr_max):
    g, c, e = _stats(b, m, n, 37, dtype)
    tau = 10 ** (-snr_max / 10)
    assignment, loss = ops.mixit_search(g, c, e, tau)
    ref_assignment, ref_loss = search_reference(g, c, e, tau)
    assert assignment.dtype == torch.int64 and loss.dtype == dtype
    assert torch.equal(assignment, ref_assignment)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)


def test_search_op_ties_and_silence():
    g, c, e = (torch.zeros(2, 4, 4), torch.zeros(2, 4, 2), torch.zeros(2, 2))
    assignment, loss = ops.mixit_search(g, c, e, 1e-3)
    assert assignment.tolist() == [[0] * 4] * 2
    torch.testing.assert_close(loss, torch.full((2,), -80.0))


@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 1e-5), (torch.float64, 1e-12), (torch.float16, 1e-5),
                                        (torch.bfloat16, 1e-5)])
@pytest.mark.parametrize("m,n,length", [(1, 1, 1), (3, 2, 257), (8, 2, 1001), (16, 16, 5)])
def test_stats_op_matches_reference(dtype, rtol, m, n, length):
    est, mix = torch.randn(2, m, length).to(dtype), torch.randn(2, n, length).to(dtype)
    g, c, e = ops.mixit_stats(est, mix)
    ref = statistics_reference(est, mix)
    for got, expected in zip((g, c, e), ref):
        assert got.dtype == torch.float64  # accumulated in double, returned without rounding
        # reference in float64 on the same (rounded) inputs; errors relative to the energies involved
        scale = length if length > 1 else 10.0
        torch.testing.assert_close(got.double(), expected, rtol=rtol, atol=rtol * scale)
    assert torch.equal(g, g.transpose(1, 2))


def test_stats_duplicate_rows_are_bitwise_equal():
    est = torch.randn(1, 3, 999)
    est = torch.cat([est, est.flip(1)], 1)          # rows 0..2 equal rows 5..3
    g, c, _ = ops.mixit_stats(est, torch.randn(1, 2, 999))
    assert torch.equal(g[0, 0], g[0, 5]) and torch.equal(g[0, 1], g[0, 4]) and torch.equal(c[0, 1], c[0, 4])
    assert g[0, 0, 0] == g[0, 5, 5] == g[0, 0, 5]


def test_ops_opcheck():
    g, c, e = _stats(2, 4, 2, 20)
    torch.library.opcheck(ops.mixit_search, (g, c, e, 1e-3))
    torch.library.opcheck(ops.mixit_stats, (torch.randn(2, 4, 33), torch.randn(2, 2, 33)))


def test_loss_compiles_fullgraph():
    est, mix = torch.randn(2, 4, 2, 100, requires_grad=True), torch.randn(2, 2, 2, 100)
    compiled = torch.compile(mixit_loss, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(est, mix), mixit_loss(est, mix))


def test_search_op_errors():
    g, c, e = _stats(2, 4, 2, 20)
    with pytest.raises(ValueError, match=r"gram must be \(B, M, M\)"):
        ops.mixit_search(g[:, :3], c, e, 1e-3)
    with pytest.raises(ValueError, match=r"energy must be \(B, N\)"):
        ops.mixit_search(g, c, e[:1], 1e-3)
    with pytest.raises(ValueError, match="2 <= N <= M"):
        ops.mixit_search(g[:, :1, :1], c[:, :1], e, 1e-3)
    with pytest.raises(TypeError, match="float32 or all float64"):
        ops.mixit_search(g.double(), c, e, 1e-3)
    with pytest.raises(ValueError, match="tau"):
        ops.mixit_search(g, c, e, -1.0)
    with pytest.raises(ValueError, match="contiguous"):
        ops.mixit_search(g.transpose(1, 2), c, e, 1e-3)
    bad = c.clone()
    bad[1, 0, 0] = math.nan
    with pytest.raises(ValueError, match="example 1 has non-finite"):
        ops.mixit_search(g, bad, e, 1e-3)


def test_stats_op_errors():
    est, mix = torch.randn(2, 4, 10), torch.randn(2, 2, 10)
    with pytest.raises(TypeError, match="one dtype"):
        ops.mixit_stats(est, mix.double())
    with pytest.raises(TypeError, match="one dtype"):
        ops.mixit_stats(est.int(), mix.int())
    with pytest.raises(ValueError, match="batch or length"):
        ops.mixit_stats(est, mix[:, :, :9])
    with pytest.raises(ValueError, match=r"\(B, M, L\)"):
        ops.mixit_stats(est[0], mix)


# ----------------------------------------------------------------------------------------------------- CUDA
@pytest.mark.gpu
@pytest.mark.parametrize("m,n", [(2, 2), (4, 2), (8, 2), (8, 3), (12, 2), (16, 2), (10, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_search_cuda_equals_cpu(m, n, dtype):
    g, c, e = _stats(6, m, n, 50, dtype)
    g[0], c[0], e[0] = 0, 0, 0                      # all tied
    g[1, :, 1], g[1, 1, :], c[1, 1] = g[1, :, 0], g[1, 0, :], c[1, 0]   # estimates 0 and 1 duplicated
    g[1, 1, 1] = g[1, 0, 0]
    cpu = ops.mixit_search(g, c, e, 1e-3)
    gpu = ops.mixit_search(g.cuda(), c.cuda(), e.cuda(), 1e-3)
    assert torch.equal(gpu[0].cpu(), cpu[0])
    torch.testing.assert_close(gpu[1].cpu(), cpu[1], rtol=1e-12 if dtype == torch.float64 else 1e-6, atol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("length", [999, 1000])  # element-wise and vector loads
def test_stats_cuda_duplicate_rows_are_bitwise_equal(length):
    est = torch.randn(1, 3, length, device="cuda")
    est = torch.cat([est, est.flip(1)], 1)          # rows 0..2 equal rows 5..3
    g, c, _ = ops.mixit_stats(est, torch.randn(1, 2, length, device="cuda"))
    assert torch.equal(g[0, 0], g[0, 5]) and torch.equal(g[0, 1], g[0, 4]) and torch.equal(c[0, 1], c[0, 4])
    assert g[0, 0, 0] == g[0, 5, 5] == g[0, 0, 5]


@pytest.mark.gpu
def test_search_cuda_nonfinite_gives_nan():
    g, c, e = (t.cuda() for t in _stats(2, 4, 2, 20))
    c[1, 0, 0] = math.inf
    assignment, loss = ops.mixit_search(g, c, e, 1e-3)
    assert torch.isnan(loss[1]) and torch.isfinite(loss[0]) and (assignment[1] == 0).all()


def _on_cuda(shape, dtype, misaligned: bool) -> torch.Tensor:
    """Random (B, K, L) on CUDA; ``misaligned``: a contiguous view starting 1 element into its storage."""
    flat = torch.randn(math.prod(shape) + 1, device="cuda").to(dtype)
    return flat[1:].view(shape) if misaligned else flat[:-1].view(shape)


# Lengths: odd ones take the element-wise loads; multiples of 8 with aligned rows the 16-byte vector loads (and
# 132_304 at B = 3, 2_646_000 at B = 4 give chunks of several tiles, so the double buffering, and a partial last
# tile); a misaligned start with a multiple-of-8 length falls back to element loads.
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("b,m,n,length,misaligned", [
    (1, 2, 2, 1, False), (3, 8, 2, 132_301, False), (2, 16, 16, 777, False), (4, 12, 2, 2_646_003, False),
    (1, 2, 2, 8, False), (3, 8, 2, 132_304, False), (2, 16, 16, 776, False), (4, 12, 2, 2_646_000, False),
    (2, 7, 3, 132_304, True)])
def test_stats_cuda_matches_reference(dtype, b, m, n, length, misaligned):
    est, mix = _on_cuda((b, m, length), dtype, misaligned), _on_cuda((b, n, length), dtype, misaligned)
    got = ops.mixit_stats(est, mix)
    ref = statistics_reference(est, mix)
    rtol = 1e-12 if dtype == torch.float64 else 1e-5
    for x, y in zip(got, ref):
        assert x.dtype == torch.float64
        torch.testing.assert_close(x, y, rtol=rtol, atol=rtol * math.sqrt(length) * 4)
    assert torch.equal(got[0], got[0].transpose(1, 2))


@pytest.mark.gpu
@pytest.mark.parametrize("channels", [None, 2])
def test_loss_cuda_matches_cpu(channels):
    shape = (4, 8) + ((channels,) if channels else ()) + (10_001,)
    est = torch.randn(shape, dtype=torch.float64)
    mix = torch.randn((4, 2) + shape[2:], dtype=torch.float64) + est[:, :2]
    est_cuda = est.cuda().requires_grad_(True)
    est.requires_grad_(True)
    cpu = mixit_loss(est, mix, return_assignment=True)
    gpu = mixit_loss(est_cuda, mix.cuda(), return_assignment=True)
    assert torch.equal(gpu[1].cpu(), cpu[1])
    torch.testing.assert_close(gpu[0].cpu(), cpu[0])
    cpu[0].backward()
    gpu[0].backward()
    torch.testing.assert_close(est_cuda.grad.cpu(), est.grad)
    assert torch.equal(best_assignment(est_cuda.float(), mix.cuda().float())[0].cpu(),
                       best_assignment(est.float(), mix.float())[0])


@pytest.mark.gpu
def test_loss_cuda_graph_capture():
    """mixit_loss forward + backward can be captured in a CUDA graph (no host sync inside) and replayed."""
    est = torch.randn(4, 8, 44_101, device="cuda", requires_grad=True)
    mix = torch.randn(4, 2, 44_101, device="cuda") + est.detach()[:, :2]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            est.grad = None
            mixit_loss(est, mix).backward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    est.grad = None
    with torch.cuda.graph(graph):
        loss = mixit_loss(est, mix)
        loss.backward()
    with torch.no_grad():
        est.mul_(0.5)                                   # new inputs in the same buffers
    graph.replay()
    torch.cuda.synchronize()
    ref_est = est.detach().clone().requires_grad_(True)
    ref = mixit_loss(ref_est, mix)
    ref.backward()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(est.grad, ref_est.grad)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_loss_cuda_matches_cpu(dtype):
    est = torch.randn(3, 6, 2, 5_003).to(dtype)
    mix = (torch.randn(3, 2, 2, 5_003) + est[:, :2].float()).to(dtype)
    est_cuda = est.cuda().requires_grad_(True)
    cpu = mixit_loss(est.requires_grad_(True), mix, return_assignment=True)
    gpu = mixit_loss(est_cuda, mix.cuda(), return_assignment=True)
    assert gpu[0].dtype == torch.float32 and torch.equal(gpu[1].cpu(), cpu[1])
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], rtol=1e-5, atol=1e-5)
    cpu[0].backward()
    gpu[0].backward()
    assert est_cuda.grad.dtype == dtype
    torch.testing.assert_close(est_cuda.grad.cpu().float(), est.grad.float(), rtol=1e-2, atol=1e-6)


@pytest.mark.gpu
def test_loss_compiles_fullgraph_cuda():
    est = torch.randn(2, 4, 2, 1000, device="cuda", requires_grad=True)
    mix = torch.randn(2, 2, 2, 1000, device="cuda")
    compiled = torch.compile(mixit_loss, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(est, mix), mixit_loss(est, mix))
