"""Separation metrics: SI-SNR / SI-SNRi, matched scores for M outputs against K references, and mask metrics
that need no ground truth.

Conventions (shared/DESIGN.md §3):

* ``si_snr(estimate, reference)``: signals are zero-meaned along time, then
  ``α = <ŝ, s> / (‖s‖² + eps)``, ``SI-SNR = 10·log10(‖α s‖² / (‖α s − ŝ‖² + eps) + eps)`` in dB. With
  ``signal_dims=2`` the last two dims (C, T) are one signal (channels folded into it: one score per source
  over C·T; each channel is zero-meaned on its own). Finite everywhere: a perfect estimate scores
  ``10·log10(‖α s‖² / eps + eps)``, an all-zero estimate 10·log10(eps) = −80 dB. Math in float32 (float64
  stays float64), differentiable.
* ``separation_scores``: (a) one-to-one: the injective map references -> outputs maximising the mean SI-SNR
  (Hungarian, exact); (b) MixIT-style: every output assigned to one reference and summed, maximising the mean
  SI-SNR over all K^M assignments (exact enumeration on inner products: 4^8 = 65,536 rows for K = 4, M = 8).
  References with RMS < 1e-4 (over C·T) are left out of both and counted in ``n_silent_refs``.
* ``high_band_scores``: the same matched scores on the part of every signal above a cutoff (an STFT high-pass,
  :func:`highpass`, applied identically to references, mixture and estimates), averaged over the references
  that carry at least ``min_share`` of the band's energy, only where at least two do.
* ``effective_mask_count``: ``exp(−Σ_m p_m log p_m)``, p_m = share of the masked mixture energy
  ``Σ (mask_m·|X|)²`` in output m (1 .. M).
* ``mask_overlap``: mean over TF bins, weighted by the mixture energy |X|², of ``exp(H_bin)`` with H_bin the
  entropy of the masks across outputs in that bin (1 = disjoint masks, M = identical masks).
* ``mask_statistics`` gives the additive sums behind both, so long signals can be scored block by block
  (``effective_count`` of the summed output energies; overlap sum / mixture energy).
"""

import functools
import itertools
import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

SILENT_RMS = 1e-4  # references quieter than this (RMS over C·T, full scale 1.0) are excluded from scores
_ENUM_LIMIT = 1 << 20  # largest K^M the MixIT-style search enumerates (K = 4, M = 10)


# ------------------------------------------------------------------------------------------------- SI-SNR
def _check_signal_dims(signal_dims) -> int:
    if signal_dims not in (1, 2) or isinstance(signal_dims, bool):
        raise ValueError(f"signal_dims must be 1 (signals (..., T)) or 2 (signals (..., C, T)), got {signal_dims!r}")
    return signal_dims


def _check_tensor(name: str, x, signal_dims: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor (float32, float64, float16, bfloat16), got {x.dtype}")
    if x.dim() < signal_dims:
        raise ValueError(f"{name} needs at least {signal_dims} dim(s) (signal_dims={signal_dims}), "
                         f"got shape {tuple(x.shape)}")
    if x.shape[-1] < 1:
        raise ValueError(f"{name} has no samples (shape {tuple(x.shape)})")


def _float(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.float()


def si_snr(estimate: torch.Tensor, reference: torch.Tensor, eps: float = 1e-8, *,
           signal_dims: int = 1) -> torch.Tensor:
    """Scale-invariant SNR in dB of ``estimate`` against ``reference``, both (..., T) (signal_dims=1) or
    (..., C, T) (signal_dims=2, channels folded into one signal). Shapes must be equal; returns the leading
    shape (...). float16/bfloat16 inputs are computed in float32."""
    signal_dims = _check_signal_dims(signal_dims)
    _check_tensor("estimate", estimate, signal_dims)
    _check_tensor("reference", reference, signal_dims)
    if estimate.shape != reference.shape:
        raise ValueError(f"estimate and reference must have the same shape, got {tuple(estimate.shape)} and "
                         f"{tuple(reference.shape)}")
    if estimate.device != reference.device:
        raise ValueError(f"estimate is on {estimate.device} but reference is on {reference.device}")
    est, ref = _float(estimate), _float(reference)
    if est.dtype != ref.dtype:
        est, ref = est.double(), ref.double()
    est = est - est.mean(dim=-1, keepdim=True)
    ref = ref - ref.mean(dim=-1, keepdim=True)
    dims = tuple(range(-signal_dims, 0))
    alpha = (est * ref).sum(dim=dims, keepdim=True) / (ref.pow(2).sum(dim=dims, keepdim=True) + eps)
    target = alpha * ref
    return 10 * torch.log10(target.pow(2).sum(dim=dims) / ((target - est).pow(2).sum(dim=dims) + eps) + eps)


def si_snri(estimate: torch.Tensor, reference: torch.Tensor, mixture: torch.Tensor, eps: float = 1e-8, *,
            signal_dims: int = 1) -> torch.Tensor:
    """SI-SNR improvement in dB: ``si_snr(estimate, reference) − si_snr(mixture, reference)``.

    estimate, reference: same shape (..., T) or (..., C, T) (see ``signal_dims``); mixture broadcastable to it
    (e.g. (C, T) against (K, C, T)). Returns the leading shape (...)."""
    _check_tensor("mixture", mixture, _check_signal_dims(signal_dims))
    try:
        mix = mixture.expand_as(reference)
    except RuntimeError as e:
        raise ValueError(f"mixture of shape {tuple(mixture.shape)} does not broadcast to the reference shape "
                         f"{tuple(reference.shape)}") from e
    return (si_snr(estimate, reference, eps, signal_dims=signal_dims)
            - si_snr(mix, reference, eps, signal_dims=signal_dims))


# -------------------------------------------------------------------------------- matched separation scores
def _as_tensor(name: str, x, dims: int) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {x.dtype}")
    if x.dim() != dims:
        shape = {3: "(n, C, T)", 2: "(C, T)"}[dims]
        raise ValueError(f"{name} must have shape {shape}, got {tuple(x.shape)}")
    x = x.detach().to("cpu", torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _si_snr_from_stats(dot, est_energy, ref_energy, eps: float):
    """SI-SNR of zero-mean signals from <ŝ, s>, ‖ŝ‖², ‖s‖² (same formula as :func:`si_snr`)."""
    alpha = dot / (ref_energy + eps)
    target = alpha * alpha * ref_energy
    err = target - 2 * alpha * dot + est_energy
    return 10 * np.log10(target / (np.maximum(err, 0.0) + eps) + eps)


@functools.lru_cache(maxsize=8)
def _all_assignments(k: int, m: int) -> np.ndarray:
    """Every map of m outputs to k references, (k^m, m) int64 (read-only, cached)."""
    table = np.array(list(itertools.product(range(k), repeat=m)), dtype=np.int64).reshape(-1, m)
    table.setflags(write=False)
    return table


def _mixit_style(est: torch.Tensor, refs: torch.Tensor, eps: float):
    """Exact best assignment of M outputs to K references (each output to one reference, summed).

    est (M, C·T), refs (K, C·T) zero-meaned float64. Every assignment's scores come from G = ŝŝᵀ and
    c = ŝ·sᵀ, so the search costs O(K^M · K · M²) and never touches the waveforms again.
    Returns (assignment (M,) int, per-reference SI-SNR (K,) float64).
    """
    m, k = est.shape[0], refs.shape[0]
    if k ** m > _ENUM_LIMIT:
        raise ValueError(f"MixIT-style scoring enumerates K^M assignments; K={k}, M={m} gives {k ** m} "
                         f"> {_ENUM_LIMIT}; use fewer outputs or references")
    gram = (est @ est.T).numpy()  # (M, M)
    cross = (est @ refs.T).numpy()  # (M, K)
    ref_energy = (refs * refs).sum(-1).numpy()  # (K,)
    assign = _all_assignments(k, m)  # (K^M, M)
    scores = np.zeros((assign.shape[0], k))
    for j in range(k):
        a = (assign == j).astype(np.float64)  # (A, M) 0/1 rows
        dot = a @ cross[:, j]
        energy = np.einsum("am,am->a", a @ gram, a)
        scores[:, j] = _si_snr_from_stats(dot, energy, ref_energy[j], eps)
    best = int(np.argmax(scores.mean(axis=1)))
    return assign[best], scores[best]


def separation_scores(estimates, references, mixture, eps: float = 1e-8) -> dict:
    """Scores of M separated outputs against K ≤ M ground-truth stems of one mixture (CPU, float64).

    estimates (M, C, T), references (K, C, T), mixture (C, T): tensors or numpy arrays. Channels are folded
    into the signal. Silent references (RMS < 1e-4) are excluded and counted; at least one must be active.
    Returns a dict of Python values:
      one_to_one_sisnr, one_to_one_sisnri: mean dB over active references, best injective reference->output map
      one_to_one_assignment: output index per reference (None for silent references)
      one_to_one_sdr: mean dB over active references of the plain SDR 10·log10(‖s‖² / ‖s − ŝ‖²) (no scale
        invariance; the per-track "SDR" of the MUSDB/MDX literature), same map as one_to_one_sisnr
      mixit_sisnr, mixit_sisnri: mean dB over active references, best output->reference assignment (summed)
      mixit_assignment: reference index per output (indices into ``references``)
      mixture_sisnr: mean dB of the mixture itself against the active references
      per_reference: list per reference of {active, rms, one_to_one_sisnr, mixit_sisnr, mixture_sisnr}
      n_refs, n_active_refs, n_silent_refs
    """
    est = _as_tensor("estimates", estimates, 3)
    refs = _as_tensor("references", references, 3)
    mix = _as_tensor("mixture", mixture, 2)
    m, k = est.shape[0], refs.shape[0]
    if est.shape[1:] != refs.shape[1:] or mix.shape != refs.shape[1:]:
        raise ValueError(f"estimates {tuple(est.shape)}, references {tuple(refs.shape)} and mixture "
                         f"{tuple(mix.shape)} must share (C, T)")
    if k < 1 or m < 1:
        raise ValueError(f"need at least one estimate and one reference, got M={m}, K={k}")
    if k > m:
        raise ValueError(f"more references (K={k}) than outputs (M={m}): a one-to-one map does not exist")
    rms = refs.pow(2).mean(dim=(1, 2)).sqrt()
    active = [j for j in range(k) if rms[j] >= SILENT_RMS]
    if not active:
        raise ValueError(f"all {k} references are silent (RMS < {SILENT_RMS}); nothing to score")

    flat = lambda x: (x - x.mean(dim=-1, keepdim=True)).flatten(-2)  # zero-mean per channel, fold C·T
    est_f, ref_f, mix_f = flat(est), flat(refs[active]), flat(mix)
    # (K_active, M) matrix of SI-SNR of every output against every active reference.
    pair = _si_snr_from_stats((ref_f @ est_f.T).numpy(), (est_f * est_f).sum(-1).numpy()[None, :],
                              (ref_f * ref_f).sum(-1).numpy()[:, None], eps)
    mix_scores = _si_snr_from_stats((ref_f @ mix_f).numpy(), float((mix_f * mix_f).sum()),
                                    (ref_f * ref_f).sum(-1).numpy(), eps)
    rows, cols = linear_sum_assignment(pair, maximize=True)
    one = pair[rows, cols]
    mixit_assign, mixit = _mixit_style(est_f, ref_f, eps)

    chosen_ref, chosen_est = refs[active][rows].flatten(1), est[cols].flatten(1)  # float64 already
    sdr = 10 * torch.log10((chosen_ref.pow(2).sum(-1) + eps) / ((chosen_ref - chosen_est).pow(2).sum(-1) + eps))
    per_ref, o2o_map = [], [None] * k
    for i, j in enumerate(active):
        o2o_map[j] = int(cols[i])
    for j in range(k):
        entry = {"active": j in active, "rms": float(rms[j])}
        if j in active:
            i = active.index(j)
            entry.update(one_to_one_sisnr=float(one[i]), mixit_sisnr=float(mixit[i]),
                         mixture_sisnr=float(mix_scores[i]))
        per_ref.append(entry)
    return {
        "one_to_one_sisnr": float(one.mean()),
        "one_to_one_sisnri": float((one - mix_scores).mean()),
        "one_to_one_assignment": o2o_map,
        "one_to_one_sdr": float(sdr.mean()),
        "mixit_sisnr": float(mixit.mean()),
        "mixit_sisnri": float((mixit - mix_scores).mean()),
        "mixit_assignment": [active[int(a)] for a in mixit_assign],
        "mixture_sisnr": float(mix_scores.mean()),
        "per_reference": per_ref,
        "n_refs": k,
        "n_active_refs": len(active),
        "n_silent_refs": k - len(active),
    }


# ------------------------------------------------------------------------------------------- high band
HIGHPASS_WINDOW_SECONDS = 0.05  # STFT window of :func:`highpass`, rounded to a power of two (2048 at 44.1 kHz)


def highpass(x: torch.Tensor, sample_rate: int, cutoff_hz: float) -> torch.Tensor:
    """The part of ``x`` (..., T) above ``cutoff_hz``: STFT (Hann window of the power of two nearest
    :data:`HIGHPASS_WINDOW_SECONDS`, hop a quarter of it), every bin below the cutoff set to zero, inverse STFT.
    Linear and zero-phase, so applied to references, mixture and estimates alike it commutes with their sums.
    Returns float32 (..., T)."""
    from trackformer.models.stft import istft, stft  # lazy: trackformer.models loads the model stack

    if not 0 < cutoff_hz < sample_rate / 2:
        raise ValueError(f"cutoff_hz must be in (0, {sample_rate / 2:g}) Hz (Nyquist at {sample_rate} Hz), "
                         f"got {cutoff_hz}")
    n_fft = 2 ** max(2, round(math.log2(HIGHPASS_WINDOW_SECONDS * sample_rate)))  # power of two: fast FFTs
    hop, window = n_fft // 4, torch.hann_window(n_fft)
    spec = stft(x, n_fft, hop, window)
    freqs = torch.arange(spec.shape[-2]) * (sample_rate / n_fft)
    return istft(spec * (freqs >= cutoff_hz)[:, None], n_fft, hop, window, x.shape[-1])


def high_band_scores(estimates, references, mixture, sample_rate: int, cutoff_hz: float, *,
                     min_share: float = 0.1, eps: float = 1e-8) -> dict:
    """MixIT-style and one-to-one SI-SNRi of the part of every signal above ``cutoff_hz`` (:func:`highpass`).

    estimates (M, C, T), references (K, C, T), mixture (C, T) at ``sample_rate`` Hz, as
    :func:`separation_scores`. A reference takes part when it carries at least ``min_share`` of the references'
    summed energy in the band and is not silent there (RMS >= 1e-4); the segment qualifies when at least two
    do. Returns {band_qualifies, band_refs (references taking part), band_shares (per reference),
    band_mixit_sisnri, band_one_to_one_sisnri (dB, means over the references taking part; None unless the
    segment qualifies)}. The assignments are those that maximise the scores of every active reference in the
    band (:func:`separation_scores` on the high-passed signals)."""
    if not 0 < min_share <= 0.5:
        raise ValueError(f"min_share must be in (0, 0.5] (two references must be able to carry it), got {min_share}")
    est = _as_tensor("estimates", estimates, 3)
    refs = _as_tensor("references", references, 3)
    mix = _as_tensor("mixture", mixture, 2)
    k = refs.shape[0]
    high = highpass(torch.cat([refs, mix[None], est]).float(), sample_rate, cutoff_hz).double()
    h_refs, h_mix, h_est = high[:k], high[k], high[k + 1:]
    energy = h_refs.pow(2).sum(dim=(1, 2))
    shares = energy / energy.sum() if float(energy.sum()) > 0 else torch.zeros_like(energy)
    audible = h_refs.pow(2).mean(dim=(1, 2)).sqrt() >= SILENT_RMS
    taking_part = [j for j in range(k) if shares[j] >= min_share and audible[j]]
    out = dict(band_qualifies=len(taking_part) >= 2, band_refs=len(taking_part),
               band_shares=[float(s) for s in shares], band_mixit_sisnri=None, band_one_to_one_sisnri=None)
    if out["band_qualifies"]:
        per_ref = separation_scores(h_est, h_refs, h_mix, eps)["per_reference"]
        for key in ("mixit", "one_to_one"):
            out[f"band_{key}_sisnri"] = float(np.mean([per_ref[j][f"{key}_sisnr"] - per_ref[j]["mixture_sisnr"]
                                                       for j in taking_part]))
    return out


# ------------------------------------------------------------------------------------------ mask metrics
def _check_masks(masks, mixture_mag):
    for name, x in (("masks", masks), ("mixture_mag", mixture_mag)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.is_complex():
            raise TypeError(f"{name} must be real (use spec.abs() for the magnitude), got {x.dtype}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {x.dtype}")
    if masks.dim() not in (4, 5):
        raise ValueError(f"masks must have shape (B, M, C, F, L) or (M, C, F, L), got {tuple(masks.shape)}")
    batched = masks.dim() == 5
    expected = (masks.shape[:1] + masks.shape[2:]) if batched else masks.shape[1:]
    if mixture_mag.shape != expected:
        raise ValueError(f"mixture_mag must have shape {tuple(expected)} to match masks {tuple(masks.shape)}, "
                         f"got {tuple(mixture_mag.shape)}")
    if masks.device != mixture_mag.device:
        raise ValueError(f"masks are on {masks.device} but mixture_mag is on {mixture_mag.device}")
    masks, mag = masks.float(), mixture_mag.float()
    if not batched:
        masks, mag = masks.unsqueeze(0), mag.unsqueeze(0)
    if not (torch.isfinite(masks).all() and torch.isfinite(mag).all()):
        raise ValueError("masks and mixture_mag must be finite (found NaN or inf)")
    if (masks < 0).any() or (mag < 0).any():
        raise ValueError("masks and mixture_mag must be non-negative")
    return masks, mag, batched


def mask_statistics(masks: torch.Tensor, mixture_mag: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Additive sums behind the two mask metrics, so that long signals can be scored block by block.

    Shapes as :func:`effective_mask_count`. Returns float32 ``(output_energy (B, M) = Σ (mask_m·|X|)²,
    overlap_sum (B,) = Σ_bins |X|²·exp(H_bin), mixture_energy (B,) = Σ_bins |X|²)``, without the leading B for
    unbatched input. Masks are normalised to sum to 1 per bin (softmax masks already do); a bin where every mask
    is 0 counts as disjoint (exp H = 1). Sums over several blocks give the metrics of the whole signal via
    :func:`effective_count` and ``overlap_sum / mixture_energy``.
    """
    masks, mag, batched = _check_masks(masks, mixture_mag)
    output_energy = (masks * mag.unsqueeze(1)).pow(2).flatten(2).sum(-1)
    total = masks.sum(1, keepdim=True)
    p = masks / torch.where(total > 0, total, torch.ones_like(total))
    weight = mag.pow(2)
    overlap_sum = (_exp_entropy(p, dim=1) * weight).flatten(1).sum(1)
    mixture_energy = weight.flatten(1).sum(1)
    out = (output_energy, overlap_sum, mixture_energy)
    return out if batched else tuple(x[0] for x in out)


def _exp_entropy(p: torch.Tensor, dim: int) -> torch.Tensor:
    """exp(−Σ p log p) along ``dim`` with 0·log 0 = 0; p sums to 1 along dim."""
    return torch.exp(-torch.xlogy(p, p).sum(dim=dim))


def effective_count(energy: torch.Tensor) -> torch.Tensor:
    """exp(entropy of the shares ``energy / energy.sum(-1)``) over the last dim (..., M) -> (...), in [1, M].

    Raises ValueError where all M energies are zero or one is negative."""
    energy = energy.float()
    total = energy.sum(-1, keepdim=True)
    if (total <= 0).any() or (energy < 0).any():
        raise ValueError("effective count needs non-negative energies that are not all zero")
    return _exp_entropy(energy / total, dim=-1)


def _check_not_silent(mixture_energy: torch.Tensor) -> None:
    if (mixture_energy <= 0).any():
        silent = torch.nonzero(mixture_energy.reshape(-1) <= 0).flatten().tolist()
        raise ValueError(f"mixture_mag is all zero (silent mixture) for batch item(s) {silent}; the mask metrics "
                         "are undefined there")


def effective_mask_count(masks: torch.Tensor, mixture_mag: torch.Tensor) -> torch.Tensor:
    """Effective number of active outputs, exp(entropy of the per-output masked energy shares), in [1, M].

    masks (B, M, C, F, L) or (M, C, F, L), non-negative; mixture_mag (B, C, F, L) or (C, F, L).
    Returns (B,) float32, or a 0-dim tensor for unbatched input."""
    output_energy, _, mixture_energy = mask_statistics(masks, mixture_mag)
    _check_not_silent(mixture_energy)
    if (output_energy.sum(-1) <= 0).any():
        raise ValueError("all masks are zero where the mixture has energy; the effective mask count is undefined")
    return effective_count(output_energy)


def mask_overlap(masks: torch.Tensor, mixture_mag: torch.Tensor) -> torch.Tensor:
    """Energy-weighted mean over TF bins of exp(entropy of the masks across outputs), in [1, M].

    1 when each bin belongs to one output, M when all masks are equal. Shapes and normalisation as
    :func:`mask_statistics`; returns (B,) float32 or a 0-dim tensor."""
    _, overlap_sum, mixture_energy = mask_statistics(masks, mixture_mag)
    _check_not_silent(mixture_energy)
    return overlap_sum / mixture_energy
