"""Validation during training: :func:`validate` scores a model on held-out MixIT pairs that carry their stems."""

import torch
from torch import nn

from trackformer.metrics import SILENT_RMS, effective_mask_count, mask_overlap, separation_scores
from trackformer.mixit import mixit_loss
from trackformer.train.config import TrainConfig


class _Means:
    """Running means of named scalars."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, key: str, value) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.counts[key] = self.counts.get(key, 0) + 1

    def result(self) -> dict:
        return {key: self.sums[key] / self.counts[key] for key in self.sums}


@torch.no_grad()
def validate(model: nn.Module, loader, stage: str, config: TrainConfig) -> dict:
    """Validation metrics over ``loader`` (MixitPairs with return_stems): means over the examples.

    Both stages: ``loss`` (the stage's training loss, MixIT in dB or MAE MSE). MixIT stage, also:
      mom_sisnri: MixIT-style SI-SNRi of the two songs recovered from their mixture x1 + x2 (outputs assigned
        to the songs, summed) — what MixIT optimises; over the pairs where both songs are audible;
      song_one_to_one_sisnri / song_mixit_sisnri: SI-SNRi of each song's own stems when the model separates
        that song's mixture alone (trackformer.metrics.separation_scores), over the song segments with at least
        2 active stems — with one, the mixture is the stem and SI-SNRi says nothing;
      song_single_stem_sisnr: SI-SNR of the best single output for the song segments with one active stem (the
        FUSS convention: does the model keep a lone source in one output);
      song_segments_multi_stem / song_segments_single_stem / songs_skipped_silent: how many segments each row
        averages, and those with no active stem at all;
      n_eff, mask_overlap: effective mask count and mask overlap on x1 + x2 (models with masks only).
    """
    device = next(model.parameters()).device
    means = _Means()
    counts = dict(song_segments_multi_stem=0, song_segments_single_stem=0, songs_skipped_silent=0)
    generator = torch.Generator(device).manual_seed(config.seed)  # the same MAE frame masks at every validation
    for batch in loader:
        x1, x2 = batch["x1"].to(device), batch["x2"].to(device)
        mixture = x1 + x2
        if stage == "pretrain":
            means.add("loss", model.pretrain_loss(mixture, mask_ratio=config.mae_mask_ratio, generator=generator))
            continue
        if model.has_masks:
            estimates, masks, mag = model(mixture, return_masks=True, return_magnitude=True)
            for value in effective_mask_count(masks, mag):
                means.add("n_eff", value)
            for value in mask_overlap(masks, mag):
                means.add("mask_overlap", value)
        else:
            estimates = model(mixture)
        estimates = estimates.float()
        songs = torch.stack((x1, x2), dim=1).float()
        for value in mixit_loss(estimates, songs, snr_max=config.snr_max, reduction="none"):
            means.add("loss", value)
        per_song = model(torch.cat((x1, x2))).float().chunk(2)  # each song's mixture separated on its own
        for b in range(x1.shape[0]):
            pair = _scores(estimates[b], songs[b], mixture[b])
            if pair is not None and pair["n_active_refs"] >= 2:
                means.add("mom_sisnri", pair["mixit_sisnri"])
            for i, song in enumerate((x1, x2)):
                k = int(batch[f"n_stems{i + 1}"][b])
                scores = _scores(per_song[i][b], batch[f"stems{i + 1}"][b, :k], song[b])
                if scores is None:
                    counts["songs_skipped_silent"] += 1
                elif scores["n_active_refs"] >= 2:
                    counts["song_segments_multi_stem"] += 1
                    means.add("song_one_to_one_sisnri", scores["one_to_one_sisnri"])
                    means.add("song_mixit_sisnri", scores["mixit_sisnri"])
                else:
                    counts["song_segments_single_stem"] += 1
                    means.add("song_single_stem_sisnr", scores["one_to_one_sisnr"])
    metrics = means.result()
    if stage != "pretrain":
        metrics.update(counts)
    return metrics


def _scores(estimates: torch.Tensor, references: torch.Tensor, mixture: torch.Tensor) -> dict | None:
    """:func:`separation_scores`, or None when every reference is silent in this segment (nothing to score)."""
    if bool((references.double().pow(2).mean(dim=(1, 2)).sqrt() < SILENT_RMS).all()):
        return None
    return separation_scores(estimates, references, mixture)
