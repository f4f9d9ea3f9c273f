"""The training loop: MixIT training (:func:`fit`) and Audio-MAE pre-training (:func:`pretrain`).

One loop serves both stages; only the objective differs (:class:`Objective`, a module so that DDP averages the
gradients of whichever loss runs). A step: batch (x1, x2) (B, C, T) → mixture x1 + x2 → model → loss → backward
→ gradient clipping → AdamW → warm-up (+ optional cosine) schedule. Under ``torchrun`` the objective runs in
DistributedDataParallel and rank 0 alone writes the run folder:

  run_dir/config.yaml        the TrainConfig of the run
  run_dir/metrics.jsonl      one JSON object per log / validation event ({"kind": "train"|"valid", "step", ...})
  run_dir/tensorboard/       the same scalars for TensorBoard (when torch.utils.tensorboard imports)
  run_dir/checkpoints/last.pt  the latest checkpoint (see trackformer.train.checkpoint)

Exact resume: epoch e draws its examples with ``MixitPairs(..., seed=f(seed, e), deterministic=True)`` in index
order, so example i of epoch e is a function of (seed, e, i) alone and a resumed run restarts the epoch at the
example where it stopped (no data re-read). RNG states of every rank, optimizer, scheduler and grad scaler are
restored, and the feature redraws are seeded by step, so an interrupted-and-resumed run reproduces the
uninterrupted one.
"""

import contextlib
import json
import logging
import math
import os
import random
import signal
import threading
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from trackformer.data import MixitPairs, MoisesDB, StemsFolder, SyntheticMusic, make_loader
from trackformer.data.moisesdb import MUSDB_GROUPS
from trackformer.metrics import effective_mask_count, mask_overlap, separation_scores
from trackformer.mixit import mixit_loss
from trackformer.models import diversity_loss, sparsity_loss
from trackformer.registry import CheckpointError, build_model, load_checkpoint
from trackformer.train import distributed as tdist
from trackformer.train.checkpoint import capture_rng, restore_rng, save_checkpoint
from trackformer.train.config import TrainConfig, save_config

log = logging.getLogger("trackformer.train")

STAGES = ("mixit", "pretrain")
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_VALID_SONGS_SYNTHETIC = 8


def checkpoint_path(run_dir: str) -> str:
    """Where a run keeps its latest checkpoint."""
    return os.path.join(run_dir, "checkpoints", "last.pt")


def seed_everything(seed: int) -> None:
    """Seeds python ``random``, numpy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def model_spec(config: TrainConfig) -> tuple[str, dict]:
    """(registry name, model config) of the run: ``model_config`` with sample_rate/channels filled in and checked."""
    spec = dict(config.model_config)
    filled = {"sample_rate": config.sample_rate}
    if config.model == "performer":
        filled["channels"] = config.channels
    for key, value in filled.items():
        if spec.setdefault(key, value) != value:
            raise ValueError(f"model_config.{key}={spec[key]!r} disagrees with TrainConfig.{key}={value!r}")
    return config.model, spec


def _lr_factor(config: TrainConfig, total_steps: float):
    """Multiplier of the base lr after ``step`` optimizer steps: linear warm-up, then constant or cosine to 0."""
    warmup = config.warmup_steps
    decay = config.decay_steps or total_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.lr_schedule == "constant" or decay <= warmup:
            return 1.0
        progress = min(1.0, (step - warmup) / (decay - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class Objective(nn.Module):
    """The loss of one stage as a module: ``forward(x1, x2)`` (B, C, T) each → (loss scalar, parts dict).

    stage "mixit": mixit_loss(model(x1 + x2), stack(x1, x2)) + diversity_weight · diversity_loss(masks, |X|)
    + sparsity_weight · sparsity_loss(estimates); stage "pretrain": model.pretrain_loss(x1 + x2, mae_mask_ratio).
    The losses are computed in float32 outside autocast.
    """

    def __init__(self, model: nn.Module, stage: str, config: TrainConfig):
        super().__init__()
        self.model, self.stage, self.config = model, stage, config

    def forward(self, x1: torch.Tensor, x2: torch.Tensor):
        cfg = self.config
        mixture = x1 + x2
        if self.stage == "pretrain":
            loss = self.model.pretrain_loss(mixture, mask_ratio=cfg.mae_mask_ratio)
            return loss, {"mae": loss.detach()}
        if cfg.diversity_weight > 0:
            estimates, masks = self.model(mixture, return_masks=True)
        else:
            estimates = self.model(mixture)
        with torch.autocast(mixture.device.type, enabled=False):
            loss = mixit_loss(estimates.float(), torch.stack((x1, x2), dim=1).float(), snr_max=cfg.snr_max)
            parts = {"mixit": loss.detach()}
            if cfg.diversity_weight > 0:
                div = diversity_loss(masks, self.model.spectrogram(mixture).abs())
                loss = loss + cfg.diversity_weight * div
                parts["diversity"] = div.detach()
            if cfg.sparsity_weight > 0:
                spa = sparsity_loss(estimates)
                loss = loss + cfg.sparsity_weight * spa
                parts["sparsity"] = spa.detach()
        return loss, parts


class _Stop:
    """Set by SIGTERM/SIGINT during training so the loop ends after the current step with a checkpoint."""

    def __init__(self):
        self.reason = None

    @contextlib.contextmanager
    def installed(self):
        """Handlers for SIGTERM/SIGINT while the block runs (only possible in the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

        def handler(signum, _frame):
            if self.reason is not None:  # a second signal: stop at once
                signal.signal(signum, previous[signum])
                raise KeyboardInterrupt
            self.reason = signal.Signals(signum).name

        for s in previous:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


class Trainer:
    """One run of one stage. ``Trainer(config, stage).run(resume=False)`` → path of the last checkpoint.

    After :meth:`run`, ``trainer.model`` is the trained (unwrapped) model and ``trainer.step`` the step count.
    """

    def __init__(self, config: TrainConfig, stage: str = "mixit"):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"expected a TrainConfig, got {type(config).__name__}")
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        config.validate()
        self.config, self.stage = config, stage
        self.model: nn.Module | None = None
        self.step = 0
        self.metrics: dict = {}

    # ------------------------------------------------------------------------------------------------ data
    def _songs(self):
        cfg = self.config
        if cfg.data == "synthetic":
            common = dict(seconds=cfg.synthetic_seconds, sample_rate=cfg.sample_rate, channels=cfg.channels)
            train = SyntheticMusic(cfg.synthetic_songs, seed=cfg.seed, **common).songs
            valid = SyntheticMusic(_VALID_SONGS_SYNTHETIC, seed=cfg.seed + 1, **common).songs
            return train, valid
        cls = MoisesDB if cfg.data == "moisesdb" else StemsFolder
        if not os.path.isdir(cfg.root):
            raise FileNotFoundError(f"data root {cfg.root!r} (data={cfg.data!r}) is not a folder")
        options = dict(sample_rate=cfg.sample_rate, channels=cfg.channels)
        collection = cls(cfg.root, max_stems=None, **options)  # MixIT trains on mixtures: every song counts
        train = collection.split("train")
        if len(train) < 2:
            raise ValueError(f"{cfg.root}: {len(train)} training song(s) found ({len(collection.songs)} in all, "
                             f"{len(collection.skipped)} skipped); MixIT needs at least 2")
        # Validation scores at most 4 references per song: a song's own stems where it has at most 4, its MUSDB
        # groups (vocals, drums, bass, other) where it has more (most real MoisesDB songs).
        valid = [song for song in collection.split("valid") if song.num_stems <= 4]
        many = {song.name for song in collection.split("valid") if song.num_stems > 4}
        if many and cls is MoisesDB:
            grouped = MoisesDB(cfg.root, max_stems=4, stem_groups=MUSDB_GROUPS, **options)
            valid += [song for song in grouped.songs if song.name in many]
        elif many:
            log.warning("%d validation song(s) with more than 4 stems are left out of validation", len(many))
        return train, valid

    def _epoch_loader(self, songs, epoch: int, start_batch: int):
        """Loader of epoch ``epoch`` from its ``start_batch``-th (global) batch on; items fixed by (seed, epoch)."""
        cfg, world = self.config, self.dist.world_size
        per_step = cfg.batch_size * world
        dataset = MixitPairs(songs, segment_seconds=cfg.segment_seconds, sample_rate=cfg.sample_rate,
                             channels=cfg.channels, examples_per_epoch=self.steps_per_epoch * per_step,
                             seed=cfg.seed * 1_000_003 + epoch, deterministic=True,
                             stems_per_mixture=cfg.stems_per_mixture,
                             stem_gain_db=None if cfg.stem_gain_db is None else tuple(cfg.stem_gain_db))
        if start_batch:
            dataset = Subset(dataset, range(start_batch * per_step, len(dataset)))
        return make_loader(dataset, batch_size=cfg.batch_size, workers=cfg.workers, shuffle=False, seed=cfg.seed,
                           distributed=self.dist.distributed, drop_last=True)

    def _valid_loader(self, songs):
        cfg = self.config
        if cfg.valid_examples == 0:
            return None
        if len(songs) < 2:
            log.warning("only %d validation song(s): validation is skipped", len(songs))
            return None
        dataset = MixitPairs(songs, segment_seconds=cfg.segment_seconds, sample_rate=cfg.sample_rate,
                             channels=cfg.channels, examples_per_epoch=cfg.valid_examples, seed=cfg.seed,
                             return_stems=True, deterministic=True)
        return make_loader(dataset, batch_size=cfg.batch_size, workers=min(cfg.workers, 2), shuffle=False,
                           seed=cfg.seed)

    # ------------------------------------------------------------------------------------------------ model
    def _build(self, device: torch.device):
        name, spec = model_spec(self.config)
        model = build_model(name, spec).to(device)
        if self.stage == "pretrain" and not hasattr(model, "pretrain_loss"):
            raise ValueError(f"model {name!r} has no Audio-MAE pre-training (pretrain_loss); use 'performer'")
        if self.config.diversity_weight > 0 and name != "performer":
            raise ValueError(f"diversity_weight needs a mask-based model ('performer'), not {name!r}")
        return name, spec, model

    def _init_from(self, model: nn.Module, name: str, path: str) -> None:
        """Initialises ``model`` from a (pre-training) checkpoint: the encoder if the model has one, else all."""
        payload = load_checkpoint(path)
        if payload["model"]["name"] != name:
            raise CheckpointError(f"init_from {path} holds a {payload['model']['name']!r} model, this run trains "
                                  f"{name!r}")
        state = payload["model"]["state"]
        try:
            if hasattr(model, "load_encoder_state_dict"):
                model.load_encoder_state_dict(state)
            else:
                model.load_state_dict(state)
        except (ValueError, RuntimeError) as err:
            raise CheckpointError(f"init_from {path} does not fit this model: {err}") from err
        log.info("initialised the %s encoder from %s (step %d)", name, path, payload["step"])

    def _optimizer(self, model: nn.Module, device: torch.device):
        cfg = self.config
        decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=device.type == "cuda")

    def _redraw(self, model: nn.Module) -> None:
        """New random features, seeded by (seed, step): identical on every rank and on resume."""
        if not hasattr(model, "redraw_features"):
            return
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(self.config.seed * 1_000_003 + self.step)
            model.redraw_features()

    # ------------------------------------------------------------------------------------------------ run
    def run(self, resume: bool = False) -> str:
        """Trains until max_steps / epochs / max_minutes / SIGTERM; returns the path of the last checkpoint."""
        cfg = self.config
        self.dist = tdist.setup(cfg.device)
        try:
            return self._run(resume)
        finally:
            tdist.teardown(self.dist)

    def _run(self, resume: bool) -> str:
        cfg, dist_info = self.config, self.dist
        device = dist_info.device
        self.step, self.metrics = 0, {}
        if cfg.amp != "off" and device.type != "cuda":
            raise ValueError(f"amp={cfg.amp!r} needs a CUDA device (this run uses {device}); set amp: off")
        per_step = cfg.batch_size * dist_info.world_size
        self.steps_per_epoch = cfg.examples_per_epoch // per_step
        if self.steps_per_epoch < 1:
            raise ValueError(f"examples_per_epoch ({cfg.examples_per_epoch}) is smaller than one global batch "
                             f"(batch_size {cfg.batch_size} x {dist_info.world_size} process(es))")
        total = min(cfg.max_steps or math.inf, (cfg.epochs or math.inf) * self.steps_per_epoch)  # inf: time-bound
        ckpt_file = checkpoint_path(cfg.run_dir)

        seed_everything(cfg.seed)
        name, spec, model = self._build(device)
        optimizer = self._optimizer(model, device)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(cfg, total))
        scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
        epoch, batch_in_epoch = 0, 0

        payload = None
        if resume:
            if os.path.isfile(ckpt_file):
                payload = load_checkpoint(ckpt_file)  # on the CPU: RNG states must stay CPU tensors
            else:
                log.warning("resume requested but %s does not exist: starting a new run", ckpt_file)
        elif os.path.isfile(ckpt_file):
            log.warning("%s exists and will be overwritten by this new run (pass resume=True to continue it)",
                        ckpt_file)
        if payload is not None:
            epoch, batch_in_epoch = self._restore(payload, ckpt_file, name, spec, model, optimizer, scheduler,
                                                  scaler)
        else:
            if cfg.init_from:
                self._init_from(model, name, cfg.init_from)
            torch.manual_seed(cfg.seed + dist_info.rank)  # per-rank dropout streams, same init everywhere
        self.model = model
        model.train()

        objective = Objective(model, self.stage, cfg)
        if dist_info.distributed:
            objective = nn.parallel.DistributedDataParallel(
                objective, device_ids=[device.index] if device.type == "cuda" else None, static_graph=True)
        if cfg.compile:
            objective = torch.compile(objective)

        train_songs, valid_songs = self._songs()
        valid_loader = self._valid_loader(valid_songs) if dist_info.is_main else None
        logger = _RunLogger(cfg, self.stage, enabled=dist_info.is_main, resumed_step=self.step)
        amp = (torch.autocast(device.type, dtype=_AMP_DTYPES[cfg.amp]) if cfg.amp != "off"
               else contextlib.nullcontext())
        params = [p for p in model.parameters() if p.requires_grad]

        def checkpoint(reason: str) -> None:
            rng = tdist.gather_objects(dist_info, capture_rng())
            if dist_info.is_main:
                save_checkpoint(ckpt_file, dict(
                    stage=self.stage, model=dict(name=name, config=spec, state=model.state_dict()),
                    optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                    scaler=scaler.state_dict() if scaler is not None else None, rng=rng, step=self.step,
                    epoch=epoch, examples_in_epoch=batch_in_epoch * per_step,
                    world_size=dist_info.world_size, config=cfg.to_dict(), metrics=self.metrics, reason=reason))
                logger.event(dict(kind="checkpoint", step=self.step, reason=reason, path=ckpt_file))
            tdist.barrier(dist_info)

        progress = logger.progress(total, self.step)
        window = _Window(device)
        started = time.monotonic()
        stop = _Stop()
        reason = "done"
        with stop.installed():
            while self.step < total and reason == "done":
                for batch in self._epoch_loader(train_songs, epoch, batch_in_epoch):
                    x1 = batch["x1"].to(device, non_blocking=True)
                    x2 = batch["x2"].to(device, non_blocking=True)
                    with amp:
                        loss, parts = objective(x1, x2)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.unscale_(optimizer)
                    else:
                        loss.backward()
                    grad_norm = (torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip) if cfg.grad_clip > 0
                                 else None)
                    if scaler is not None:
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    scheduler.step()
                    self.step += 1
                    batch_in_epoch += 1
                    if cfg.redraw_every and self.step % cfg.redraw_every == 0:
                        self._redraw(model)
                    window.add(loss, parts, grad_norm, x1.shape[0] * dist_info.world_size)
                    progress.update(1)

                    if self.step % cfg.log_every == 0 or self.step >= total:
                        record = window.flush(dist_info, allow_nonfinite=cfg.amp == "fp16", step=self.step)
                        record.update(lr=scheduler.get_last_lr()[0], epoch=epoch)
                        logger.train(self.step, record, progress)
                    if self.step % cfg.eval_every == 0 or self.step >= total:
                        self._validate(model, valid_loader, amp, logger)
                    out_of_time = cfg.max_minutes is not None and time.monotonic() - started > 60 * cfg.max_minutes
                    # one collective per log interval under DDP, so all ranks stop together without a per-step sync
                    if ((not dist_info.distributed or self.step % cfg.log_every == 0)
                            and tdist.any_rank(dist_info, out_of_time or stop.reason is not None)):
                        reason = stop.reason or "max_minutes"
                        break
                    if self.step >= total:
                        break
                    if self.step % cfg.checkpoint_every == 0:
                        checkpoint("periodic")
                if batch_in_epoch >= self.steps_per_epoch:
                    epoch, batch_in_epoch = epoch + 1, 0
        if reason != "done":
            log.info("stopping at step %d (%s); resume with resume=True / --resume", self.step, reason)
        checkpoint(reason)
        progress.close()
        logger.close()
        return ckpt_file

    def _restore(self, payload, path, name, spec, model, optimizer, scheduler, scaler) -> tuple[int, int]:
        """Loads a checkpoint of this run into the fresh objects; returns (epoch, batch_in_epoch)."""
        cfg, dist_info = self.config, self.dist
        if payload["stage"] != self.stage:
            raise CheckpointError(f"{path} is a {payload['stage']!r} checkpoint; this run is {self.stage!r} "
                                  f"(to start MixIT training from a pre-trained encoder use init_from)")
        if payload["model"]["name"] != name or payload["model"]["config"] != spec:
            raise CheckpointError(f"{path} holds model {payload['model']['name']!r} {payload['model']['config']}, "
                                  f"but the config asks for {name!r} {spec}; use another run_dir or the same model")
        try:
            model.load_state_dict(payload["model"]["state"])
            optimizer.load_state_dict(payload["optimizer"])
            scheduler.load_state_dict(payload["scheduler"])
            if scaler is not None and payload.get("scaler"):
                scaler.load_state_dict(payload["scaler"])
        except (KeyError, ValueError, TypeError, RuntimeError) as err:
            raise CheckpointError(f"{path}: model/optimizer/scheduler state does not fit this run: "
                                  f"{str(err).splitlines()[0]}") from err
        self.step = int(payload["step"])
        self.metrics = payload.get("metrics", {})
        per_step = cfg.batch_size * dist_info.world_size
        examples = int(payload["examples_in_epoch"])
        if examples % per_step or payload["world_size"] != dist_info.world_size:
            log.warning("%s was written with another batch size or world size: the data order after resume "
                        "is not the one an uninterrupted run would have seen", path)
        rng = payload["rng"]
        if len(rng) == dist_info.world_size:
            restore_rng(rng[dist_info.rank])
        else:
            torch.manual_seed(cfg.seed + dist_info.rank + self.step)
        epoch, batch = int(payload["epoch"]), examples // per_step
        if batch >= self.steps_per_epoch:  # saved at the end of an epoch
            epoch, batch = epoch + 1, 0
        log.info("resumed %s at step %d (epoch %d) from %s", self.stage, self.step, epoch, path)
        return epoch, batch

    @torch.no_grad()
    def _validate(self, model: nn.Module, loader, amp, logger) -> None:
        """Validation on rank 0 (the others wait): see :func:`evaluate`."""
        if loader is not None:
            was_training = model.training
            model.eval()
            try:
                with amp:
                    self.metrics = evaluate(model, loader, self.stage, self.config)
            finally:
                model.train(was_training)
            logger.valid(self.step, self.metrics)
        tdist.barrier(self.dist)


@torch.no_grad()
def evaluate(model: nn.Module, loader, stage: str, config: TrainConfig) -> dict:
    """Validation metrics over ``loader`` (MixitPairs with return_stems): means over the examples.

    Both stages: ``loss`` (the stage's training loss, MixIT in dB or MAE MSE). MixIT stage, also:
      mom_sisnri: MixIT-style SI-SNRi of the two songs recovered from their mixture x1 + x2 (outputs assigned
        to the songs, summed) — what MixIT optimises;
      song_one_to_one_sisnri / song_mixit_sisnri: SI-SNRi of each song's own stems when the model separates
        that song's mixture alone (one-to-one and MixIT-style, trackformer.metrics.separation_scores);
      n_eff, mask_overlap: effective mask count and mask overlap on x1 + x2 (mask models only).
    """
    device = next(model.parameters()).device
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}

    def add(key, value):
        sums[key] = sums.get(key, 0.0) + float(value)
        counts[key] = counts.get(key, 0) + 1

    generator = torch.Generator(device).manual_seed(config.seed)  # the same MAE frame masks at every validation
    has_masks = hasattr(model, "spectrogram")
    skipped = 0
    for batch in loader:
        x1, x2 = batch["x1"].to(device), batch["x2"].to(device)
        mixture = x1 + x2
        if stage == "pretrain":
            add("loss", model.pretrain_loss(mixture, mask_ratio=config.mae_mask_ratio, generator=generator))
            continue
        out = model(mixture, return_masks=True) if has_masks else model(mixture)
        estimates, masks = out if has_masks else (out, None)
        estimates = estimates.float()
        songs = torch.stack((x1, x2), dim=1).float()
        losses = mixit_loss(estimates, songs, snr_max=config.snr_max, reduction="none")
        if masks is not None:
            mag = model.spectrogram(mixture).abs()
            n_eff, overlap = effective_mask_count(masks, mag), mask_overlap(masks, mag)
        per_song = model(torch.cat((x1, x2))).float().chunk(2)  # each song's mixture separated on its own
        for b in range(x1.shape[0]):
            add("loss", losses[b])
            if masks is not None:
                add("n_eff", n_eff[b])
                add("mask_overlap", overlap[b])
            add("mom_sisnri", separation_scores(estimates[b], songs[b], mixture[b])["mixit_sisnri"])
            for i, x in enumerate((x1, x2)):
                k = int(batch[f"n_stems{i + 1}"][b])
                try:
                    scores = separation_scores(per_song[i][b], batch[f"stems{i + 1}"][b, :k], x[b])
                except ValueError:  # every stem silent in this segment: nothing to score
                    skipped += 1
                    continue
                add("song_one_to_one_sisnri", scores["one_to_one_sisnri"])
                add("song_mixit_sisnri", scores["mixit_sisnri"])
    metrics = {key: sums[key] / counts[key] for key in sums}
    if skipped:
        metrics["songs_skipped_silent"] = skipped
    return metrics


class _Window:
    """Training statistics accumulated on the device between two log events (one host sync per log)."""

    def __init__(self, device):
        self.device = device
        self.reset()

    def reset(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0
        self.nonfinite = 0
        self.examples = 0
        self.started = time.monotonic()

    def add(self, loss, parts, grad_norm, examples):
        values = {"loss": loss.detach().float(), **{k: v.float() for k, v in parts.items()}}
        if grad_norm is not None:
            values["grad_norm"] = grad_norm.detach().float()
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.steps += 1
        self.examples += examples

    def flush(self, dist_info, *, allow_nonfinite: bool, step: int) -> dict:
        keys = sorted(self.sums)
        stacked = tdist.mean_over_ranks(dist_info, torch.stack([self.sums[k] for k in keys]).to(self.device))
        values = (stacked / max(self.steps, 1)).tolist()
        record = dict(zip(keys, values))
        if not math.isfinite(record["loss"]) and not allow_nonfinite:
            raise FloatingPointError(f"training loss is not finite (mean {record['loss']}) in the {self.steps} "
                                     f"steps up to step {step}; lower lr, enable grad_clip, or check the data")
        elapsed = max(time.monotonic() - self.started, 1e-9)
        record["examples_per_s"] = self.examples / elapsed
        self.reset()
        return record


def _logged_step(line: str) -> float:
    """The step of one metrics.jsonl line; +inf for a line cut short by a crash (so it is dropped)."""
    try:
        return json.loads(line).get("step", 0)
    except ValueError:
        return math.inf


class _RunLogger:
    """metrics.jsonl, TensorBoard and the progress bar, on rank 0 only."""

    def __init__(self, config: TrainConfig, stage: str, *, enabled: bool, resumed_step: int):
        self.enabled, self.stage = enabled, stage
        self.writer = None
        if not enabled:
            return
        os.makedirs(config.run_dir, exist_ok=True)
        save_config(config, os.path.join(config.run_dir, "config.yaml"))
        self.path = os.path.join(config.run_dir, "metrics.jsonl")
        if os.path.exists(self.path):  # drop what an interrupted run logged after its last checkpoint
            with open(self.path) as f:
                keep = [line for line in f if _logged_step(line) <= resumed_step]
            with open(self.path, "w") as f:
                f.writelines(keep)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(os.path.join(config.run_dir, "tensorboard"), purge_step=resumed_step + 1)
        except ImportError:
            log.info("tensorboard is not installed: metrics go to metrics.jsonl only")

    def event(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(dict(record, stage=self.stage, time=time.time())) + "\n")

    def _scalars(self, prefix: str, step: int, record: dict) -> None:
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def train(self, step: int, record: dict, progress) -> None:
        if self.enabled:
            self.event(dict(kind="train", step=step, **record))
            self._scalars(f"{self.stage}/train", step, record)
            progress.set_postfix(loss=f"{record['loss']:.3f}", ex_s=f"{record['examples_per_s']:.1f}")

    def valid(self, step: int, metrics: dict) -> None:
        if self.enabled:
            self.event(dict(kind="valid", step=step, **metrics))
            self._scalars(f"{self.stage}/valid", step, metrics)
            log.info("step %d validation: %s", step, ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))

    def progress(self, total: float, initial: int):
        from tqdm.auto import tqdm

        return tqdm(total=None if math.isinf(total) else total, initial=initial, disable=not self.enabled,
                    desc=self.stage, unit="step", dynamic_ncols=True, mininterval=1.0)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def fit(config: TrainConfig, *, resume: bool = False) -> str:
    """MixIT training of ``config``; returns the path of the last checkpoint (run_dir/checkpoints/last.pt)."""
    return Trainer(config, "mixit").run(resume=resume)


def pretrain(config: TrainConfig, *, resume: bool = False) -> str:
    """Audio-MAE pre-training of ``config``'s encoder; returns the checkpoint path (use it as ``init_from``)."""
    return Trainer(config, "pretrain").run(resume=resume)
