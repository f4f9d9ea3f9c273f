"""MixIT losses: exact assignment search on the statistics, then one remix of the waveforms.

``best_assignment`` forms G, c, e (stats.py) and runs the exhaustive search (search.py) without gradients;
``mixit_loss`` remixes the estimates by that assignment once and evaluates the loss on the remixed waveforms,
so the gradient flows through the chosen assignment only. The (negative) SNR losses use a fused autograd
Function (one baddbmm + one dot product forward, one bmm backward); SI-SNR uses plain autograd.
"""

import math

import torch

from trackformer.metrics import si_snr
from trackformer.mixit.search import SEARCH_EPS, search
from trackformer.mixit.stats import accumulation_dtype, flatten_inputs, statistics

LOSS_TYPES = ("thresholded_snr", "neg_snr", "neg_sisnr")
REDUCTIONS = ("mean", "sum", "none")


def snr_tau(snr_max) -> float:
    """τ = 10^(−snr_max/10); snr_max None or +inf gives τ = 0 (no threshold)."""
    if snr_max is None:
        return 0.0
    if isinstance(snr_max, bool) or not isinstance(snr_max, (int, float)) or math.isnan(snr_max):
        raise TypeError(f"mixit: snr_max must be a real number (dB) or None, got {snr_max!r}")
    try:
        return 10.0 ** (-float(snr_max) / 10.0)
    except OverflowError:
        raise ValueError(f"mixit: snr_max = {snr_max} dB gives an infinite threshold τ") from None


def per_mixture_loss(remixed: torch.Tensor, mixtures: torch.Tensor, tau: float, loss_type: str) -> torch.Tensor:
    """Loss of each remixed signal against its mixture, in dB.

    Args: remixed, mixtures (..., L) in the accumulation dtype; tau from :func:`snr_tau`; loss_type one of
        LOSS_TYPES: "thresholded_snr" 10·log10(‖x − r‖² + τ‖x‖² + 1e-8); "neg_snr" the same minus
        10·log10(‖x‖² + 1e-8) (the negative SNR, capped at snr_max); "neg_sisnr" −SI-SNR(r, x)
        (trackformer.metrics.si_snr).
    Returns: (...) losses.
    """
    if loss_type == "neg_sisnr":
        return -si_snr(remixed, mixtures, SEARCH_EPS)
    energy = mixtures.pow(2).sum(-1)
    loss = 10 * torch.log10((mixtures - remixed).pow(2).sum(-1) + tau * energy + SEARCH_EPS)
    if loss_type == "neg_snr":
        loss = loss - 10 * torch.log10(energy + SEARCH_EPS)
    return loss


def _check_finite(search_loss: torch.Tensor) -> None:
    """The search's loss is NaN exactly where a statistic is not finite (the CPU op raises by itself): one
    device sync on CUDA. Skipped while compiling or capturing a CUDA graph (no data-dependent branch or sync
    there; the loss is then NaN)."""
    if torch.compiler.is_compiling() or (search_loss.is_cuda and torch.cuda.is_current_stream_capturing()):
        return
    if not math.isfinite(float(search_loss.sum())):  # losses are dB values: their sum is finite unless one is not
        raise ValueError("mixit: the estimates or mixtures contain NaN or inf, or their energies overflow the "
                         "accumulation dtype")


def _assign(estimates: torch.Tensor, mixtures: torch.Tensor, tau: float):
    """Flattened inputs (B, M, L), (B, N, L), the mixture energies e (B, N), the assignment and its loss; e and
    the loss in the accumulation dtype (the statistics and the search are float64).

    The caller checks the loss with :func:`_check_finite` (after queueing its own work, so that on CUDA the one
    host sync does not stall the launches)."""
    est, mix = flatten_inputs(estimates, mixtures)
    acc = accumulation_dtype(est, mix)
    with torch.no_grad():
        gram, cross, energy = statistics(est, mix)
        assignment, loss = search(gram, cross, energy, tau)
    return est, mix, energy.to(acc), assignment, loss.to(acc)


def best_assignment(estimates: torch.Tensor, mixtures: torch.Tensor, *, snr_max=30.0):
    """The MixIT-optimal assignment of estimates to mixtures (no gradient).

    Args:
        estimates: (B, M, T) or (B, M, C, T), M ≤ 16; mixtures: (B, N, T) or (B, N, C, T), 2 ≤ N ≤ M.
        snr_max: SNR threshold in dB (τ = 10^(−snr_max/10)); None for none.
    Returns:
        assignment (B, M) int64 in [0, N) (estimate m goes to mixture assignment[b, m]) and the thresholded-SNR
        loss (B,) in dB of that assignment, float32 (float64 for float64 inputs). Ties go to the lowest
        index Σ_m A_m·N^m.
    """
    _, _, _, assignment, loss = _assign(estimates, mixtures, snr_tau(snr_max))
    _check_finite(loss)
    return assignment, loss


class _RemixSNR(torch.autograd.Function):
    """Thresholded (or negative) SNR loss (B,) of the remix by a fixed assignment, with a fused backward.

    forward(est (B, M, L), mix (B, N, L), onehot (B, N, M), energy (B, N) = ‖x_n‖², tau, subtract_energy):
    residuals r_n = x_n − Σ_m A_nm ŝ_m in one baddbmm, v_n = ‖r_n‖² + τ e_n + 1e-8, loss = (1/N) Σ 10·log10 v_n
    (minus 10·log10(e_n + 1e-8) for the negative SNR). Backward: ∂loss/∂ŝ_m = −(20 / (N ln 10)) r_{A_m} / v_{A_m},
    one bmm; the same for the mixtures when they require grad.
    """

    @staticmethod
    def forward(ctx, est, mix, onehot, energy, tau, subtract_energy):
        resid = torch.baddbmm(mix, onehot, est, alpha=-1)
        # one fused reduction pass over the residuals (vecdot would materialise resid * resid)
        value = torch.linalg.vector_norm(resid, dim=-1).square_().add_(energy, alpha=tau).add_(SEARCH_EPS)
        per_mixture = torch.log10(value)
        if subtract_energy:
            per_mixture = per_mixture - torch.log10(energy + SEARCH_EPS)
        ctx.save_for_backward(resid, onehot, value, energy, mix if ctx.needs_input_grad[1] else None)
        ctx.tau, ctx.subtract_energy = tau, subtract_energy
        return per_mixture.mean(-1).mul_(10)

    @staticmethod
    def backward(ctx, grad):
        resid, onehot, value, energy, mix = ctx.saved_tensors
        const = 20 / (value.shape[1] * math.log(10))
        coef = torch.div(grad[:, None], value).mul_(const)                                 # (B, N)
        grad_est = grad_mix = None
        if ctx.needs_input_grad[0]:
            grad_est = torch.bmm(onehot.transpose(1, 2) * coef.neg()[:, None, :], resid)
        if ctx.needs_input_grad[1]:
            weight = coef * ctx.tau
            if ctx.subtract_energy:
                weight = weight - grad[:, None] * const / (energy + SEARCH_EPS)
            grad_mix = coef[..., None] * resid + weight[..., None] * mix
        return grad_est, grad_mix, None, None, None, None


def assignment_matrix(assignment: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """The 0/1 matrix A (B, N, M) of labels (B, M) (no device sync, unlike one_hot's range check on CUDA)."""
    labels = torch.arange(n, device=assignment.device)
    return (assignment[:, None, :] == labels[None, :, None]).to(dtype)


def remix(estimates: torch.Tensor, assignment: torch.Tensor, n: int) -> torch.Tensor:
    """Sums the estimates (B, M, ...) into N groups by assignment (B, M) → (B, N, ...), differentiable."""
    b, m = assignment.shape
    onehot = assignment_matrix(assignment, n, estimates.dtype)
    return torch.bmm(onehot, estimates.reshape(b, m, -1)).reshape(b, n, *estimates.shape[2:])


def mixit_loss(estimates: torch.Tensor, mixtures: torch.Tensor, *, snr_max=30.0, reduction: str = "mean",
               return_assignment: bool = False, loss_type: str = "thresholded_snr"):
    """MixIT loss (dB, lower is better) with the exact best assignment.

    Args:
        estimates: (B, M, T) or (B, M, C, T) separated sources, M ≤ 16, any floating dtype (fp16/bf16 are
            remixed and scored in float32).
        mixtures: (B, N, T) or (B, N, C, T) the mixtures that were summed, 2 ≤ N ≤ M.
        snr_max: threshold in dB, τ = 10^(−snr_max/10) (None: none).
        reduction: "mean" over the batch, "sum", or "none" for (B,) losses.
        return_assignment: also return the assignment (B, M) int64 and the remixed estimates (B, N, [C,] T).
        loss_type: "thresholded_snr" (the MixIT paper's), "neg_snr" or "neg_sisnr" (see :func:`per_mixture_loss`);
            the assignment always minimises the thresholded-SNR loss, which differs from "neg_snr" by a constant.
    Returns:
        loss, or (loss, assignment, remixed) with ``return_assignment``.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"mixit: loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"mixit: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    tau = snr_tau(snr_max)
    est, mix, energy, assignment, search_loss = _assign(estimates, mixtures, tau)
    acc = accumulation_dtype(est, mix)
    with torch.autocast(est.device.type, enabled=False):  # the loss stays in acc even inside autocast regions
        est, mix, n = est.to(acc), mix.to(acc), mix.shape[1]
        if loss_type == "neg_sisnr":
            loss = per_mixture_loss(remix(est, assignment, n), mix, tau, loss_type).mean(-1)
        else:
            onehot = assignment_matrix(assignment, n, acc)
            loss = _RemixSNR.apply(est, mix, onehot, energy, tau, loss_type == "neg_snr")
        if reduction == "mean":
            loss = loss.mean()
        elif reduction == "sum":
            loss = loss.sum()
        _check_finite(search_loss)
        if not return_assignment:
            return loss
        return loss, assignment, remix(estimates.to(acc), assignment, n)


def mixit_loss_of_masks(masks: torch.Tensor, synthesize, mixtures: torch.Tensor, *, snr_max=30.0) -> torch.Tensor:
    """The thresholded-SNR MixIT loss (mean over the batch) of a separator whose outputs are linear in its masks,
    remixing the masks instead of the waveforms.

    Args:
        masks: (B, L, M, ...) float masks, the M sources on axis 2 (PerformerSeparator.frame_masks).
        synthesize: masks (B, L, K, ...) -> waveforms (B, K, C, T) or (B, K, T), linear in the masks (e.g.
            ``lambda k: model.synthesize(k, spec, T)``).
        mixtures: (B, N, C, T) or (B, N, T), 2 <= N <= M.
    Returns:
        the scalar ``mixit_loss(synthesize(masks), mixtures, snr_max=snr_max)`` up to float rounding: the
        assignment is searched on the M estimates, made without gradient; the loss and its gradient go through
        the N remixes ``synthesize(A·masks)`` only, so the synthesis runs backward on N signals, not M.
    """
    with torch.no_grad():
        estimates = synthesize(masks.detach())
    assignment, _ = best_assignment(estimates, mixtures, snr_max=snr_max)
    (b, l, m), n = masks.shape[:3], mixtures.shape[1]
    onehot = assignment_matrix(assignment, n, masks.dtype)  # (B, N, M)
    grouped = torch.einsum("bnm,blmr->blnr", onehot, masks.reshape(b, l, m, -1)).reshape(b, l, n, *masks.shape[3:])
    remixed, mix = flatten_inputs(synthesize(grouped), mixtures)
    acc = accumulation_dtype(remixed, mix)
    return per_mixture_loss(remixed.to(acc), mix.to(acc), snr_tau(snr_max), "thresholded_snr").mean()

