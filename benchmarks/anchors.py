"""shared/ANCHORS.md as data: what users would pick instead of trackformer, measured on one NVIDIA H200.

Each :class:`Anchor` is one row of one ANCHORS.md table: the suite it belongs to (attention, mixit, training),
the baseline's name (``impl``, the same names the benchmark suites give their rows), the case it was measured at
(``case``: shape keys as the suites write them) and its numbers (``values``: metric -> number, ``None`` meaning
"out of memory"). Reports print these as context only; comparisons use the same baselines measured in the same
run on the same card (benchmarks/report.py). ``TARGETS`` are the goals ANCHORS.md sets for our numbers;
``PAPER`` is what the paper we reproduce reports.
"""

import dataclasses

CARD = "NVIDIA H200"
SOURCE = "shared/ANCHORS.md (NVIDIA H200, torch 2.11.0+cu130, median of 7 runs, CUDA events)"

# Table titles, as ANCHORS.md names them.
T_ATTN = "Attention, forward + backward, B = 4, H = 8, D = 64, non-causal"
T_ATTN_STRONG = "Attention, stronger anchors (torch.compile, forced SDPA backends), bf16, forward + backward"
T_MIXIT = "MixIT loss, forward + backward, B = 4, N = 2, 44.1 kHz, float32 (asteroid, Gram bmm)"
T_MIXIT_VEC = "MixIT loss, vectorised exact search, float32, forward + backward (B = 4, N = 2)"
T_CONVTASNET = "ConvTasNet training step (torchaudio default config, 8 sources), AdamW, float32"
T_SEPARATORS = "Off-the-shelf separators of our size, training step, bf16 autocast, batch 4 mono"


@dataclasses.dataclass(frozen=True)
class Anchor:
    """One measured baseline: ``values`` maps a metric (ms, peak_mib, fwd_ms, stats_ms) to a number or None (OOM)."""

    suite: str
    table: str
    impl: str
    case: dict
    values: dict


def _attention() -> list[Anchor]:
    rows = [  # L, dtype, sdpa ms, sdpa MiB, perf-pt ms, perf-pt MiB, sdpa fwd ms, perf-pt fwd ms
        (517, "bf16", 0.31, 12, 2.93, 91, 0.036, 0.815),
        (862, "bf16", 0.28, 20, 2.60, 151, 0.042, 0.816),
        (1723, "bf16", 0.41, 41, 2.52, 300, 0.096, 0.943),
        (5168, "bf16", 1.96, 123, 4.52, 893, 0.600, 2.097),
        (5168, "fp32", 22.01, 244, 4.95, 1056, 6.287, 2.194),
        (16384, "bf16", 17.03, 388, 12.98, 2820, 4.500, 5.803),
        (65536, "bf16", 272.28, 1552, 50.44, 11274, 75.395, 22.033),
        (65536, "fp32", 3574, 3096, 56.08, 13330, 1037, 24.698),
    ]
    out = []
    for length, dtype, s_ms, s_mib, p_ms, p_mib, s_fwd, p_fwd in rows:
        case = {"L": length, "dtype": dtype}
        out.append(Anchor("attention", T_ATTN, "sdpa", case, {"ms": s_ms, "peak_mib": s_mib, "fwd_ms": s_fwd}))
        out.append(Anchor("attention", T_ATTN, "performer-pytorch", case,
                          {"ms": p_ms, "peak_mib": p_mib, "fwd_ms": p_fwd}))
    strong = [  # L, compiled ms, compiled MiB, flash, cudnn, mem-efficient
        (517, 1.37, 41, 0.22, 0.33, 0.23),
        (5168, 1.57, 386, 3.01, 1.93, 7.41),
        (65536, 11.47, 4885, 406.6, 268.8, 1053),
    ]
    for length, c_ms, c_mib, flash, cudnn, eff in strong:
        case = {"L": length, "dtype": "bf16"}
        out.append(Anchor("attention", T_ATTN_STRONG, "performer-pytorch-compiled", case,
                          {"ms": c_ms, "peak_mib": c_mib}))
        out.append(Anchor("attention", T_ATTN_STRONG, "sdpa-flash", case, {"ms": flash}))
        out.append(Anchor("attention", T_ATTN_STRONG, "sdpa-cudnn", case, {"ms": cudnn}))
        out.append(Anchor("attention", T_ATTN_STRONG, "sdpa-efficient", case, {"ms": eff}))
    return out


def _mixit() -> list[Anchor]:
    out = []
    for seg, m, a_ms, a_mib, gram_ms, in_mib in [
        (3, 4, 7.7, 89, 0.65, 12), (3, 8, 122, 1083, 1.11, 20), (10, 8, 136, 3608, 6.50, 67),
        (30, 4, 13.3, 888, 11.1, 121), (30, 8, 307, 10837, 19.5, 202),
    ]:
        case = {"segment_s": seg, "M": m}
        out.append(Anchor("mixit", T_MIXIT, "asteroid", case, {"ms": a_ms, "peak_mib": a_mib, "input_mib": in_mib}))
        out.append(Anchor("mixit", T_MIXIT, "gram-bmm", case, {"ms": gram_ms}))
    for seg, m, b_ms, b_mib, s_ms, s_mib, stats_ms in [
        (3, 8, 2.13, 20, 2.12, 33, 0.28), (3, 16, 2.56, 44, 1.78, 66, 0.33), (30, 8, 20.7, 202, 2.42, 324, 1.52),
        (30, 12, 14.5, 283, 3.08, 485, 1.94), (30, 16, 24.8, 363, 3.74, 647, 2.41),
    ]:
        case = {"segment_s": seg, "M": m}
        out.append(Anchor("mixit", T_MIXIT_VEC, "vectorised-bmm", case, {"ms": b_ms, "peak_mib": b_mib}))
        out.append(Anchor("mixit", T_MIXIT_VEC, "vectorised-splitk", case,
                          {"ms": s_ms, "peak_mib": s_mib, "stats_ms": stats_ms}))
    return out


def _training() -> list[Anchor]:
    out = []
    for rate, seg, b4, b1 in [  # (ms, MiB) at batch 4 and batch 1; None = out of memory
        (16000, 3, (161, 8687), (79, 2193)), (16000, 5, (265, 14489), (129, 3673)),
        (16000, 10, (521, 28990), (390, 7369)), (16000, 30, (1540, 86955), (1232, 21857)),
        (44100, 3, (431, 24088), (306, 5972)), (44100, 10, (1415, 79880), (1133, 20003)),
        (44100, 30, (None, None), (3344, 60064)),
    ]:
        for batch, (ms, mib) in ((4, b4), (1, b1)):
            out.append(Anchor("training", T_CONVTASNET, "convtasnet",
                              {"rate": rate, "segment_s": seg, "batch": batch},
                              {"ms": ms, "peak_mib": mib}))
    for rate, seg, perf, sdpa in [
        (16000, 3, (52.9, 335), (22.3, 200)), (16000, 10, (52.9, 1113), (23.6, 707)),
        (16000, 30, (53.4, 3325), (26.0, 2134)), (44100, 3, (51.4, 929), (20.6, 581)),
        (44100, 10, (57.3, 3026), (25.4, 1978)), (44100, 30, (80.5, 9081), (65.8, 5903)),
    ]:
        case = {"rate": rate, "segment_s": seg, "batch": 4}
        out.append(Anchor("training", T_SEPARATORS, "performer-pytorch-separator", case,
                          {"ms": perf[0], "peak_mib": perf[1]}))
        out.append(Anchor("training", T_SEPARATORS, "sdpa-transformer-separator", case,
                          {"ms": sdpa[0], "peak_mib": sdpa[1]}))
    return out


ANCHORS: tuple[Anchor, ...] = tuple(_attention() + _mixit() + _training())


@dataclasses.dataclass(frozen=True)
class Target:
    """A goal ANCHORS.md sets for one of our numbers: ``metric`` <= ``limit`` on the rows matching ``case``."""

    suite: str
    case: dict
    metric: str
    limit: float
    text: str


TARGETS: tuple[Target, ...] = (
    Target("mixit", {"segment_s": 30, "M": 8}, "ms", 0.5, "MixIT fwd+bwd <= 0.5 ms at 30 s, M = 8"),
    Target("mixit", {"segment_s": 30, "M": 16}, "ms", 1.0, "MixIT fwd+bwd <= 1 ms at 30 s, M = 16"),
    Target("mixit", {"segment_s": 3, "M": 8}, "ms", 0.15, "MixIT fwd+bwd <= 0.15 ms at 3 s"),
    Target("training", {"rate": 16000}, "ms", 20.0, "training step <= 20 ms at 16 kHz (batch 4)"),
    Target("training", {"rate": 44100, "segment_s": 30}, "ms", 33.0, "training step <= 33 ms at 44.1 kHz / 30 s"),
    Target("training", {"rate": 44100, "segment_s": 30}, "peak_mib", 3072.0,
           "training step <= 3 GB at 44.1 kHz / 30 s"),
)

# ANCHORS.md, last table: what the paper reports on MoisesDB (SI-SNR in dB; None = out of memory).
PAPER = {
    "source": "the paper (as quoted in shared/ANCHORS.md), MoisesDB, unsupervised MixIT",
    "sisnr_db": {"performer": {3: 1.66, 5: 2.00, 10: 2.33, 30: 3.52},
                 "convtasnet": {3: -9.11, 5: -8.52, 10: -9.73, 30: None}},
    "epoch_speedup": "Performer 18-26 % faster per epoch than ConvTasNet",
}


def anchors_for(suite: str, impl: str | None = None) -> list[Anchor]:
    """The anchors of ``suite`` (and of baseline ``impl`` when given), in ANCHORS.md order."""
    return [a for a in ANCHORS if a.suite == suite and (impl is None or a.impl == impl)]
