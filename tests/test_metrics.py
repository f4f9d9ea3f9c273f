"""trackformer.metrics against hand-computed values and brute force."""

import itertools
import math

import numpy as np
import pytest
import torch

from trackformer.metrics import (
    effective_count,
    effective_mask_count,
    high_band_scores,
    highpass,
    mask_overlap,
    mask_statistics,
    separation_scores,
    si_snr,
    si_snri,
)

S = torch.tensor([1.0, -1.0, 1.0, -1.0])  # zero mean, ‖s‖² = 4
N = torch.tensor([1.0, 1.0, -1.0, -1.0])  # zero mean, orthogonal to S, ‖n‖² = 4


def test_si_snr_hand_computed():
    # ŝ = s + 0.5 n: α = 1, ‖αs‖² = 4, ‖αs − ŝ‖² = 1  ->  10·log10(4) dB
    assert si_snr(S + 0.5 * N, S).item() == pytest.approx(10 * math.log10(4.0), abs=1e-5)
    # scale and DC offset of the estimate do not matter
    assert si_snr(3.0 * (S + 0.5 * N) + 7.0, S).item() == pytest.approx(10 * math.log10(4.0), abs=1e-4)
    # equal signal and noise: 0 dB; noise twice as strong: −6.02 dB
    assert si_snr(S + N, S).item() == pytest.approx(0.0, abs=1e-5)
    assert si_snr(S + 2 * N, S).item() == pytest.approx(10 * math.log10(0.25), abs=1e-5)


def test_si_snr_perfect_and_zero_estimates_are_the_eps_bounds():
    eps = 1e-8
    alpha = 4.0 / (4.0 + eps)
    expected = 10 * math.log10(alpha * alpha * 4.0 / eps + eps)
    assert si_snr(S.double(), S.double(), eps).item() == pytest.approx(expected, rel=1e-9)
    assert si_snr(torch.zeros(4), S).item() == pytest.approx(10 * math.log10(eps), abs=1e-4)


def test_si_snr_channels_folded():
    est = torch.stack([S + 0.5 * N, S + 2 * N])  # (C=2, T): per channel 6.02 dB and −6.02 dB
    ref = torch.stack([S, S])
    per_channel = si_snr(est, ref)
    assert per_channel.shape == (2,)
    folded = si_snr(est, ref, signal_dims=2)
    assert folded.shape == ()
    # folded: <ŝ,s> = 8, ‖s‖² = 8 -> α = 1, error energy = 0.25·4 + 4·4 = 17, target 8
    assert folded.item() == pytest.approx(10 * math.log10(8 / 17), abs=1e-5)
    batch = torch.stack([est, ref])  # (B=2, C, T)
    assert si_snr(batch, torch.stack([ref, ref]), signal_dims=2).shape == (2,)


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 0.05), (torch.bfloat16, 0.2)])
def test_si_snr_low_precision_close_to_float32(dtype, tol):
    ref = torch.randn(3, 1001)
    est = ref + 0.3 * torch.randn(3, 1001)
    got = si_snr(est.to(dtype), ref.to(dtype))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, si_snr(est, ref), atol=tol, rtol=0)


def test_si_snr_is_differentiable():
    est = torch.randn(2, 333, requires_grad=True)
    si_snr(est, torch.randn(2, 333)).sum().backward()
    assert torch.isfinite(est.grad).all()


def test_si_snri():
    mix = S + N  # 0 dB
    got = si_snri(S + 0.5 * N, S, mix)
    assert got.item() == pytest.approx(10 * math.log10(4.0), abs=1e-5)
    refs = torch.stack([S, N])
    ests = torch.stack([S + 0.5 * N, N + 0.5 * S])
    torch.testing.assert_close(si_snri(ests, refs, mix), torch.full((2,), 10 * math.log10(4.0)))


def test_si_snr_errors():
    with pytest.raises(ValueError, match="same shape"):
        si_snr(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(TypeError, match="floating"):
        si_snr(torch.zeros(4, dtype=torch.int64), torch.zeros(4))
    with pytest.raises(TypeError, match="torch.Tensor"):
        si_snr([1.0, 2.0], torch.zeros(2))
    with pytest.raises(ValueError, match="signal_dims"):
        si_snr(S, S, signal_dims=3)
    with pytest.raises(ValueError, match="no samples"):
        si_snr(torch.zeros(2, 0), torch.zeros(2, 0))
    with pytest.raises(ValueError, match="broadcast"):
        si_snri(torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(3, 4))


# ------------------------------------------------------------------------------------- separation_scores
def _brute_force_mixit(est, refs):
    """Mean SI-SNR of the best output->reference assignment, by summing waveforms for each assignment."""
    best = -math.inf
    m, k = est.shape[0], refs.shape[0]
    for a in itertools.product(range(k), repeat=m):
        sums = torch.stack([est[[i for i in range(m) if a[i] == j]].sum(0) for j in range(k)])
        best = max(best, si_snr(sums, refs, signal_dims=2).mean().item())
    return best


def test_separation_scores_perfect_and_swapped():
    g = torch.Generator().manual_seed(1)
    refs = torch.randn(2, 2, 801, generator=g, dtype=torch.float64)
    mix = refs.sum(0)
    est = torch.zeros(4, 2, 801, dtype=torch.float64)
    est[3], est[1] = refs[0], refs[1]  # perfect estimates, in swapped / scattered output slots
    out = separation_scores(est, refs, mix)
    assert out["one_to_one_assignment"] == [3, 1]
    assert out["mixit_assignment"][3] == 0 and out["mixit_assignment"][1] == 1
    energies = (refs - refs.mean(dim=-1, keepdim=True)).pow(2).sum(dim=(1, 2))  # zero-mean per channel
    perfect = [10 * math.log10(float(e) ** 2 / (float(e) + 1e-8) ** 2 * float(e) / 1e-8) for e in energies]
    assert out["one_to_one_sisnr"] == pytest.approx(np.mean(perfect), abs=1e-3)
    assert out["mixit_sisnr"] == pytest.approx(np.mean(perfect), abs=1e-3)
    assert out["mixture_sisnr"] == pytest.approx(si_snr(mix.expand_as(refs), refs, signal_dims=2).mean().item())
    assert out["one_to_one_sisnri"] == pytest.approx(out["one_to_one_sisnr"] - out["mixture_sisnr"])
    assert out["n_silent_refs"] == 0 and out["n_active_refs"] == 2


def test_separation_scores_matches_brute_force():
    g = torch.Generator().manual_seed(2)
    refs = torch.randn(3, 1, 257, generator=g)
    mix = refs.sum(0)
    est = refs[torch.tensor([0, 1, 2, 0, 1])] * torch.rand(5, 1, 1, generator=g) + 0.5 * torch.randn(5, 1, 257,
                                                                                                      generator=g)
    out = separation_scores(est, refs, mix)
    assert out["mixit_sisnr"] == pytest.approx(_brute_force_mixit(est.double(), refs.double()), abs=1e-6)
    pair = si_snr(est[None].double().expand(3, -1, -1, -1), refs[:, None].double().expand(-1, 5, -1, -1),
                  signal_dims=2)
    best = max(pair[[0, 1, 2], list(p)].mean().item() for p in itertools.permutations(range(5), 3))
    assert out["one_to_one_sisnr"] == pytest.approx(best, abs=1e-6)


def test_separation_scores_silent_reference_excluded():
    g = torch.Generator().manual_seed(3)
    refs = torch.randn(3, 2, 500, generator=g)
    refs[1] = 1e-5 * torch.randn(2, 500, generator=g)  # RMS ≈ 1e-5 < 1e-4
    est = torch.stack([refs[0], refs[2], torch.zeros(2, 500), torch.zeros(2, 500)])
    out = separation_scores(est, refs, refs.sum(0))
    assert out["n_silent_refs"] == 1 and out["n_active_refs"] == 2
    assert out["one_to_one_assignment"] == [0, None, 1]
    assert not out["per_reference"][1]["active"]
    assert set(out["mixit_assignment"]) <= {0, 2}
    assert out["one_to_one_sisnr"] > 100  # perfect for both active references


def test_separation_scores_errors():
    with pytest.raises(ValueError, match="silent"):
        separation_scores(torch.randn(2, 1, 10), torch.zeros(2, 1, 10), torch.zeros(1, 10))
    with pytest.raises(ValueError, match="more references"):
        separation_scores(torch.randn(2, 1, 10), torch.randn(3, 1, 10), torch.randn(1, 10))
    with pytest.raises(ValueError, match="share"):
        separation_scores(torch.randn(2, 1, 10), torch.randn(2, 1, 11), torch.randn(1, 10))
    with pytest.raises(ValueError, match="NaN"):
        separation_scores(torch.full((2, 1, 10), float("nan")), torch.randn(2, 1, 10), torch.randn(1, 10))
    with pytest.raises(ValueError, match="shape"):
        separation_scores(torch.randn(2, 10), torch.randn(2, 1, 10), torch.randn(1, 10))


# ------------------------------------------------------------------------------------------ mask metrics
def test_mask_metrics_disjoint_and_identical():
    m, c, f, l = 8, 2, 5, 7
    mag = torch.rand(c, f, l) + 0.1
    uniform = torch.full((m, c, f, l), 1.0 / m)
    assert mask_overlap(uniform, mag).item() == pytest.approx(m, rel=1e-5)
    assert effective_mask_count(uniform, mag).item() == pytest.approx(m, rel=1e-5)
    owner = torch.randint(0, m, (c, f, l))
    one_hot = torch.nn.functional.one_hot(owner, m).permute(3, 0, 1, 2).float()
    assert mask_overlap(one_hot, mag).item() == pytest.approx(1.0, rel=1e-6)


def test_effective_mask_count_hand_computed():
    mag = torch.ones(1, 1, 2)
    masks = torch.zeros(4, 1, 1, 2)
    masks[0, 0, 0, 0] = 1.0  # bin 0 -> output 0 (energy 1)
    masks[1, 0, 0, 1] = 1.0  # bin 1 -> output 1 (energy 1)
    assert effective_mask_count(masks, mag).item() == pytest.approx(2.0, rel=1e-6)
    mag = torch.tensor([[[math.sqrt(3.0), 1.0]]])  # energy shares 3/4, 1/4
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert effective_mask_count(masks, mag).item() == pytest.approx(expected, rel=1e-6)
    # bin-wise: one bin split 50/50 between two outputs (exp H = 2), weight 1; other bin disjoint, weight 3
    masks = torch.zeros(3, 1, 1, 2)
    masks[0, 0, 0, 0] = masks[1, 0, 0, 0] = 0.5
    masks[2, 0, 0, 1] = 1.0
    mag = torch.tensor([[[1.0, math.sqrt(3.0)]]])
    assert mask_overlap(masks, mag).item() == pytest.approx((2 * 1 + 1 * 3) / 4, rel=1e-6)


def test_mask_metrics_batched_matches_unbatched():
    masks = torch.softmax(torch.randn(3, 8, 2, 9, 11), dim=1)
    mag = torch.rand(3, 2, 9, 11)
    batched = mask_overlap(masks, mag)
    assert batched.shape == (3,)
    for b in range(3):
        assert batched[b].item() == pytest.approx(mask_overlap(masks[b], mag[b]).item(), rel=1e-6)
    neff = effective_mask_count(masks, mag)
    assert neff.shape == (3,) and bool(((neff >= 1) & (neff <= 8)).all())


def test_mask_statistics_add_up_over_blocks():
    masks = torch.softmax(torch.randn(8, 2, 9, 20), dim=0)
    mag = torch.rand(2, 9, 20)
    whole = mask_statistics(masks, mag)
    halves = [mask_statistics(masks[..., a:b], mag[..., a:b]) for a, b in ((0, 7), (7, 20))]
    for w, h1, h2 in zip(whole, *halves):
        torch.testing.assert_close(w, h1 + h2)
    assert float(effective_count(whole[0])) == pytest.approx(float(effective_mask_count(masks, mag)), rel=1e-6)
    assert float(whole[1] / whole[2]) == pytest.approx(float(mask_overlap(masks, mag)), rel=1e-6)
    with pytest.raises(ValueError, match="not all zero"):
        effective_count(torch.zeros(8))


def test_mask_metrics_errors():
    masks = torch.rand(8, 1, 4, 5)
    with pytest.raises(ValueError, match="mixture_mag must have shape"):
        mask_overlap(masks, torch.rand(1, 4, 6))
    with pytest.raises(ValueError, match="silent"):
        effective_mask_count(masks, torch.zeros(1, 4, 5))
    with pytest.raises(ValueError, match="non-negative"):
        mask_overlap(-masks, torch.rand(1, 4, 5))
    with pytest.raises(TypeError, match="real"):
        mask_overlap(masks, torch.rand(1, 4, 5, dtype=torch.complex64))
    with pytest.raises(ValueError, match="finite"):
        effective_mask_count(masks * float("nan"), torch.rand(1, 4, 5))
    with pytest.raises(ValueError, match=r"\(B, M, C, F, L\)"):
        mask_overlap(torch.rand(4, 5), torch.rand(5))


def test_one_to_one_sdr_is_not_scale_invariant():
    g = torch.Generator().manual_seed(3)
    refs = torch.randn(2, 2, 4000, generator=g, dtype=torch.float64)
    est = torch.zeros(4, 2, 4000, dtype=torch.float64)
    est[3], est[1] = 0.5 * refs[0], refs[1] + 0.1 * torch.randn(2, 4000, generator=g, dtype=torch.float64)
    scores = separation_scores(est, refs, refs.sum(0))
    sdr_half = 10 * math.log10(1 / 0.25)  # ‖s‖² / ‖s − s/2‖²: 6.02 dB, where SI-SNR is the eps bound
    noise = 10 * torch.log10(refs[1].pow(2).sum() / (est[1] - refs[1]).pow(2).sum())
    assert scores["one_to_one_sdr"] == pytest.approx((sdr_half + float(noise)) / 2, abs=1e-6)
    assert scores["one_to_one_sisnr"] > scores["one_to_one_sdr"]


def _tone(hz: float, rate: int, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(round(seconds * rate)) / rate
    return torch.sin(2 * torch.pi * hz * t)


def test_highpass_keeps_only_the_band_above_the_cutoff_and_is_linear():
    rate = 16000
    low, high = _tone(500, rate), 0.5 * _tone(6000, rate)
    out = highpass(torch.stack([low, high, low + high])[:, None], rate, 4000.0)  # (3, 1, T)
    assert out.shape == (3, 1, rate) and out.dtype == torch.float32
    inner = slice(rate // 10, -rate // 10)  # away from the edges, where the tones start and stop abruptly
    assert float(out[0, 0, inner].pow(2).mean()) < 1e-8 * float(low.pow(2).mean())  # the 500 Hz tone is gone
    torch.testing.assert_close(out[1, 0, inner], high[inner], atol=2e-3, rtol=0)  # the 6 kHz tone passes
    torch.testing.assert_close(out[2], out[0] + out[1], atol=1e-6, rtol=0)  # linear: sums commute
    for bad in (0.0, 8000.0, -5.0):
        with pytest.raises(ValueError, match="cutoff_hz"):
            highpass(low[None], rate, bad)


def test_high_band_scores_qualifying_segments_and_references():
    rate = 16000
    g = torch.Generator().manual_seed(0)
    a, b = 0.1 * torch.randn(2, 1, rate, generator=g)
    refs, mix = torch.stack([a, b]), a + b
    perfect = torch.zeros(8, 1, rate)
    perfect[3], perfect[5] = a, b
    scores = high_band_scores(perfect, refs, mix, rate, 4000.0)
    assert scores["band_qualifies"] and scores["band_refs"] == 2
    assert scores["band_shares"] == pytest.approx([0.5, 0.5], abs=0.02)  # white noise: equal shares
    assert scores["band_mixit_sisnri"] > 60 and scores["band_one_to_one_sisnri"] > 60
    # outputs that are the mixture / 8: MixIT-style sums four of them per song: no improvement
    even = high_band_scores(mix.expand(8, -1, -1) / 8, refs, mix, rate, 4000.0)
    assert even["band_mixit_sisnri"] == pytest.approx(0.0, abs=1e-6)
    # a reference with nothing above the cutoff takes no part; with one left the segment does not qualify
    low = highpass(a[None], rate, 50.0)[0] - highpass(a[None], rate, 3000.0)[0]
    one = high_band_scores(perfect, torch.stack([low, b]), low + b, rate, 4000.0)
    assert not one["band_qualifies"] and one["band_refs"] == 1 and one["band_shares"][0] < 1e-4
    assert one["band_mixit_sisnri"] is None and one["band_one_to_one_sisnri"] is None
    # three references, the third weak in the band (1 % of its energy): the means cover the two others only
    c = 0.1 * torch.randn(1, rate, generator=g) * 0.1
    three = torch.stack([a, b, c])
    est = torch.zeros(8, 1, rate)
    est[0], est[1], est[2] = a + 0.3 * c, b + 0.01 * a, 0.7 * c
    got = high_band_scores(est, three, three.sum(0), rate, 4000.0)
    assert got["band_refs"] == 2 and got["band_shares"][2] < 0.1
    per_ref = separation_scores(highpass(est, rate, 4000.0), highpass(three, rate, 4000.0),
                                highpass(three.sum(0), rate, 4000.0))["per_reference"]
    expect = np.mean([per_ref[j]["mixit_sisnr"] - per_ref[j]["mixture_sisnr"] for j in (0, 1)])
    assert got["band_mixit_sisnri"] == pytest.approx(expect, abs=1e-3)
    with pytest.raises(ValueError, match="min_share"):
        high_band_scores(perfect, refs, mix, rate, 4000.0, min_share=0.6)
