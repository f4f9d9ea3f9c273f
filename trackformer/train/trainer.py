"""The training loop: MixIT training (:func:`fit`) and Audio-MAE pre-training (:func:`pretrain`).

One loop serves both stages; only the objective differs (:class:`Objective`, a module so that DDP averages the
gradients of whichever loss runs). A step: batch (x1, x2) (B, C, T) → mixture x1 + x2 → model → loss → backward
→ gradient clipping → AdamW → warm-up (+ optional cosine) schedule. Under ``torchrun`` the objective runs in
DistributedDataParallel and rank 0 alone writes the run folder:

  run_dir/config.yaml        the TrainConfig of the run
  run_dir/metrics.jsonl      one JSON object per log / validation event ({"kind": "train"|"valid", "step", ...})
  run_dir/tensorboard/       the same scalars for TensorBoard (when torch.utils.tensorboard imports)
  run_dir/checkpoints/last.pt  the latest checkpoint (see trackformer.train.checkpoint)

The songs come from :func:`~trackformer.train.songs.select_songs`, validation is
:func:`~trackformer.train.validation.validate`, the reporting :mod:`trackformer.train.logger`.

Exact resume: epoch e draws its examples with ``MixitPairs(..., seed=f(seed, e), deterministic=True)`` in index
order, so example i of epoch e is a function of (seed, e, i) alone and a resumed run restarts the epoch at the
example where it stopped (no data re-read). RNG states of every rank, optimizer, scheduler and grad scaler are
restored, and the feature redraws are seeded by step, so an interrupted-and-resumed run reproduces the
uninterrupted one.
"""

import contextlib
import ctypes
import dataclasses
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

from trackformer.data import MixedPairs, MixitPairs, make_loader
from trackformer.mixit import mixit_loss
from trackformer.mixit.loss import mixit_loss_of_masks
from trackformer.models import PerformerSeparator, diversity_loss, sparsity_loss
from trackformer.registry import CheckpointError, build_model, load_checkpoint
from trackformer.train import distributed as tdist
from trackformer.train.checkpoint import capture_rng, restore_rng, save_checkpoint
from trackformer.train.config import TrainConfig
from trackformer.train.logger import RunLogger, TrainWindow
from trackformer.train.songs import select_real_songs, select_songs
from trackformer.train.validation import validate

log = logging.getLogger("trackformer.train")

STAGES = ("mixit", "pretrain")
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def checkpoint_path(run_dir: str) -> str:
    """Where a run keeps its latest checkpoint."""
    return os.path.join(run_dir, "checkpoints", "last.pt")


def seed_everything(seed: int) -> None:
    """Seeds python ``random``, numpy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def keep_freed_memory() -> bool:
    """Makes glibc's malloc keep freed memory for reuse (mallopt M_MMAP_MAX = 0, M_TRIM_THRESHOLD = 2 GiB - 1).

    A CPU training step allocates and frees the same large tensors (the 8 masked spectrograms: 25 MB each at
    16 kHz mono, batch 4; over 100 MB at 44.1 kHz stereo) every step. By default glibc serves each from a fresh
    mmap and unmaps it when freed, so every step page-faults them in again (benchmarks/README.md measures it).
    The process then keeps its peak heap. Returns whether it was applied (False off glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # malloc.h
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


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
    The losses are computed in float32 outside autocast. For a PerformerSeparator without the sparsity term the
    MixIT loss is :func:`~trackformer.mixit.loss.mixit_loss_of_masks` (the same value, cheaper backward).
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
        references = torch.stack((x1, x2), dim=1).float()

        def float32():  # the losses run outside autocast
            return torch.autocast(mixture.device.type, enabled=False)

        if isinstance(self.model, PerformerSeparator) and cfg.sparsity_weight == 0:
            # the masks are remixed, not the 8 waveforms: the iSTFT runs backward on 2 signals (same loss)
            frame_masks, spec = self.model.frame_masks(mixture)
            masks, mag = frame_masks.permute(0, 2, 3, 4, 1), spec.abs()
            with float32():
                loss = mixit_loss_of_masks(frame_masks, lambda k: self.model.synthesize(k, spec, mixture.shape[-1]),
                                           references, snr_max=cfg.snr_max)
        else:
            if cfg.diversity_weight > 0:
                estimates, masks, mag = self.model(mixture, return_masks=True, return_magnitude=True)
            else:
                estimates = self.model(mixture)
            with float32():
                loss = mixit_loss(estimates.float(), references, snr_max=cfg.snr_max)
        with float32():
            parts = {"mixit": loss.detach()}
            if cfg.diversity_weight > 0:
                div = diversity_loss(masks, mag)
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


@dataclasses.dataclass
class _RunState:
    """What a checkpoint saves besides the step: the model (registry name, config, module), its optimizer, lr
    schedule and fp16 grad scaler (None otherwise), and the position in the data (epoch, its batches done)."""

    name: str
    spec: dict
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    epoch: int = 0
    batch_in_epoch: int = 0


class Trainer:
    """One run of one stage. ``Trainer(config, stage).run(resume=False)`` → path of the last checkpoint.

    After :meth:`run`, ``trainer.model`` is the trained (unwrapped) model, ``trainer.step`` the step count and
    ``trainer.metrics`` the last validation.
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

    # ------------------------------------------------------------------------------------------------ run
    def run(self, resume: bool = False) -> str:
        """Trains until max_steps / epochs / max_minutes / SIGTERM; returns the path of the last checkpoint."""
        self.dist = tdist.setup(self.config.device)
        try:
            return self._run(resume)
        finally:
            tdist.teardown(self.dist)

    def _run(self, resume: bool) -> str:
        cfg, dist_info = self.config, self.dist
        device = dist_info.device
        if cfg.amp == "fp16" and device.type != "cuda":  # bf16 autocast also runs on the CPU (no grad scaler)
            raise ValueError(f"amp='fp16' needs a CUDA device (this run uses {device}); set amp: bf16 or off")
        per_step = cfg.batch_size * dist_info.world_size
        self.steps_per_epoch = cfg.examples_per_epoch // per_step
        if self.steps_per_epoch < 1:
            raise ValueError(f"examples_per_epoch ({cfg.examples_per_epoch}) is smaller than one global batch "
                             f"(batch_size {cfg.batch_size} x {dist_info.world_size} process(es))")
        total = min(cfg.max_steps or math.inf, (cfg.epochs or math.inf) * self.steps_per_epoch)  # inf: time-bound

        if device.type == "cpu" and keep_freed_memory():
            log.info("malloc keeps freed memory (no page faults for the step's tensors)")
        seed_everything(cfg.seed)
        state = self._start(device, total, resume)
        self.model = state.model
        state.model.train()
        objective = self._objective(state.model, device)
        train_songs, valid_songs = select_songs(cfg)
        self.real_songs = select_real_songs(cfg)  # a music corpus mixed into the training pairs, or []
        valid_loader = self._valid_loader(valid_songs) if dist_info.is_main else None
        logger = RunLogger(cfg, self.stage, enabled=dist_info.is_main, resumed_step=self.step)
        progress = logger.progress(total, self.step)
        window = TrainWindow(device)
        deadline = None if cfg.max_minutes is None else time.monotonic() + 60 * cfg.max_minutes
        signals = _Stop()
        stopped = None  # why the run stops before ``total`` steps
        with signals.installed():
            while self.step < total and stopped is None:
                for batch in self._epoch_loader(train_songs, state.epoch, state.batch_in_epoch):
                    x1 = batch["x1"].to(device, non_blocking=True)
                    x2 = batch["x2"].to(device, non_blocking=True)
                    loss, parts, grad_norm = self._optimize(state, objective, x1, x2)
                    self.step += 1
                    state.batch_in_epoch += 1
                    if cfg.redraw_every and self.step % cfg.redraw_every == 0:
                        self._redraw(state.model)
                    window.add(loss, parts, grad_norm, x1.shape[0] * dist_info.world_size)
                    progress.update(1)
                    if self.step % cfg.log_every == 0 or self.step >= total:
                        record = window.flush(dist_info, allow_nonfinite=cfg.amp == "fp16", step=self.step)
                        record.update(lr=state.scheduler.get_last_lr()[0], epoch=state.epoch)
                        logger.train(self.step, record, progress)
                    if self.step % cfg.eval_every == 0 or self.step >= total:
                        self._validate(state.model, valid_loader, logger)
                    stopped = self._stop_reason(signals, deadline)
                    if stopped is not None or self.step >= total:
                        break
                    if self.step % cfg.checkpoint_every == 0:
                        self._save(state, "periodic", logger)
                if state.batch_in_epoch >= self.steps_per_epoch:
                    state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        if stopped is None:  # the step budget, whichever of max_steps and epochs comes first
            by_steps = cfg.max_steps is not None and self.step >= cfg.max_steps
            stopped = f"max_steps={cfg.max_steps}" if by_steps else f"epochs={cfg.epochs}"
            log.info("finished at step %d: %s reached", self.step, stopped)
        else:
            log.info("stopped at step %d by %s; continue with --resume", self.step, stopped)
        self.stop_reason = stopped
        path = self._save(state, stopped, logger)
        progress.close()
        logger.close()
        return path

    # ------------------------------------------------------------------------------------------------ steps
    def _autocast(self):
        """The mixed-precision context of the run (a no-op with amp off)."""
        if self.config.amp == "off":
            return contextlib.nullcontext()
        return torch.autocast(self.dist.device.type, dtype=_AMP_DTYPES[self.config.amp])

    def _optimize(self, state: _RunState, objective: nn.Module, x1: torch.Tensor, x2: torch.Tensor):
        """One optimizer step on the batch (x1, x2); returns (loss, loss parts, gradient norm or None)."""
        cfg = self.config
        with self._autocast():
            loss, parts = objective(x1, x2)
        if state.scaler is not None:
            state.scaler.scale(loss).backward()
            state.scaler.unscale_(state.optimizer)
        else:
            loss.backward()
        grad_norm = None
        if cfg.grad_clip > 0:
            params = [p for p in state.model.parameters() if p.requires_grad]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        if state.scaler is not None:
            state.scaler.step(state.optimizer)
            state.scaler.update()
        else:
            state.optimizer.step()
        state.optimizer.zero_grad(set_to_none=True)
        state.scheduler.step()
        return loss, parts, grad_norm

    def _redraw(self, model: nn.Module) -> None:
        """New random features, seeded by (seed, step): identical on every rank and on resume."""
        if not isinstance(model, PerformerSeparator):
            return
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(self.config.seed * 1_000_003 + self.step)
            model.redraw_features()

    def _stop_reason(self, signals: _Stop, deadline: float | None) -> str | None:
        """Why the run stops after this step (SIGTERM/SIGINT, max_minutes), agreed by every rank; None: go on.

        Under DDP the ranks agree once per log interval (one collective), not after every step."""
        if self.dist.distributed and self.step % self.config.log_every:
            return None
        out_of_time = deadline is not None and time.monotonic() > deadline
        if tdist.any_rank(self.dist, out_of_time or signals.reason is not None):
            return signals.reason or "max_minutes"
        return None

    @torch.no_grad()
    def _validate(self, model: nn.Module, loader, logger: RunLogger) -> None:
        """:func:`validate` on rank 0 (the others wait) into ``self.metrics``."""
        if loader is not None:
            was_training = model.training
            model.eval()
            try:
                with self._autocast():
                    self.metrics = validate(model, loader, self.stage, self.config)
            finally:
                model.train(was_training)
            logger.valid(self.step, self.metrics)
        tdist.barrier(self.dist)

    def _save(self, state: _RunState, reason: str, logger: RunLogger) -> str:
        """Writes the run's checkpoint (rank 0, with every rank's RNG state); returns its path."""
        cfg, dist_info = self.config, self.dist
        path = checkpoint_path(cfg.run_dir)
        rng = tdist.gather_objects(dist_info, capture_rng())
        if dist_info.is_main:
            save_checkpoint(path, dict(
                stage=self.stage, model=dict(name=state.name, config=state.spec, state=state.model.state_dict()),
                optimizer=state.optimizer.state_dict(), scheduler=state.scheduler.state_dict(),
                scaler=state.scaler.state_dict() if state.scaler is not None else None, rng=rng, step=self.step,
                epoch=state.epoch, examples_in_epoch=state.batch_in_epoch * cfg.batch_size * dist_info.world_size,
                world_size=dist_info.world_size, config=cfg.to_dict(), metrics=self.metrics, reason=reason))
            logger.event(dict(kind="checkpoint", step=self.step, reason=reason, path=path))
        tdist.barrier(dist_info)
        return path

    # ------------------------------------------------------------------------------------------------ data
    def _epoch_loader(self, songs, epoch: int, start_batch: int):
        """Loader of epoch ``epoch`` from its ``start_batch``-th (global) batch on; items fixed by (seed, epoch)."""
        cfg, world = self.config, self.dist.world_size
        per_step = cfg.batch_size * world
        common = dict(segment_seconds=cfg.segment_seconds, sample_rate=cfg.sample_rate, channels=cfg.channels,
                      examples_per_epoch=self.steps_per_epoch * per_step, seed=cfg.seed * 1_000_003 + epoch,
                      deterministic=True)
        dataset = MixitPairs(songs, stems_per_mixture=cfg.stems_per_mixture,
                             stem_gain_db=None if cfg.stem_gain_db is None else tuple(cfg.stem_gain_db), **common)
        if self.real_songs:  # real_fraction of the examples: two excerpts of real recordings (no stem augmentation)
            dataset = MixedPairs(MixitPairs(self.real_songs, **common), dataset, real_fraction=cfg.real_fraction,
                                 seed=common["seed"])
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

    # ------------------------------------------------------------------------------------------------ setup
    def _start(self, device: torch.device, total: float, resume: bool) -> _RunState:
        """The run's model, optimizer, schedule and scaler: restored from the run's checkpoint (``resume``), or
        fresh (the encoder from ``init_from`` when set)."""
        cfg = self.config
        name, spec = model_spec(cfg)
        model = build_model(name, spec).to(device)
        if self.stage == "pretrain" and not isinstance(model, PerformerSeparator):
            raise ValueError(f"model {name!r} has no Audio-MAE pre-training (pretrain_loss); use 'performer'")
        if cfg.diversity_weight > 0 and not model.has_masks:
            raise ValueError(f"diversity_weight needs a mask-based model ('performer'), not {name!r}")
        optimizer = self._optimizer(model, device)
        state = _RunState(name, spec, model, optimizer,
                          torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(cfg, total)),
                          torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None)
        path = checkpoint_path(cfg.run_dir)
        if resume and os.path.isfile(path):
            self._restore(state, load_checkpoint(path), path)  # on the CPU: RNG states must stay CPU tensors
            return state
        if resume:
            log.warning("resume requested but %s does not exist: starting a new run", path)
        elif os.path.isfile(path):
            log.warning("%s exists and will be overwritten by this new run (pass --resume to continue it)", path)
        if cfg.init_from:
            self._init_from(model, name, cfg.init_from)
        torch.manual_seed(cfg.seed + self.dist.rank)  # per-rank dropout streams, same init everywhere
        return state

    def _optimizer(self, model: nn.Module, device: torch.device):
        cfg = self.config
        decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=device.type == "cuda")

    def _objective(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The stage's loss module, wrapped in DDP under torchrun and compiled when ``config.compile``."""
        objective = Objective(model, self.stage, self.config)
        if self.dist.distributed:
            objective = nn.parallel.DistributedDataParallel(
                objective, device_ids=[device.index] if device.type == "cuda" else None, static_graph=True)
        return torch.compile(objective) if self.config.compile else objective

    def _init_from(self, model: nn.Module, name: str, path: str) -> None:
        """Initialises ``model`` from a checkpoint: a MixIT checkpoint (a trained separator, e.g. the shipped
        model) gives the whole model, for fine-tuning; an Audio-MAE one the encoder of a Performer."""
        payload = load_checkpoint(path)
        if payload["model"]["name"] != name:
            raise CheckpointError(f"init_from {path} holds a {payload['model']['name']!r} model, this run trains "
                                  f"{name!r}")
        state = payload["model"]["state"]
        whole = payload.get("stage") == "mixit" or not isinstance(model, PerformerSeparator)
        try:
            if whole:
                model.load_state_dict(state)
            else:
                model.load_encoder_state_dict(state)
        except (ValueError, RuntimeError) as err:
            raise CheckpointError(f"init_from {path} does not fit this model: {err}") from err
        log.info("initialised the %s %s from %s (%s checkpoint, step %d)", name, "model" if whole else "encoder",
                 path, payload.get("stage", "?"), payload["step"])

    def _restore(self, state: _RunState, payload: dict, path: str) -> None:
        """Loads a checkpoint of this run into the fresh ``state``; sets the step, metrics and data position."""
        cfg, dist_info = self.config, self.dist
        if payload["stage"] != self.stage:
            raise CheckpointError(f"{path} is a {payload['stage']!r} checkpoint; this run is {self.stage!r} "
                                  f"(to start MixIT training from a pre-trained encoder use init_from)")
        if payload["model"]["name"] != state.name or payload["model"]["config"] != state.spec:
            raise CheckpointError(f"{path} holds model {payload['model']['name']!r} {payload['model']['config']}, "
                                  f"but the config asks for {state.name!r} {state.spec}; use another run_dir or "
                                  "the same model")
        try:
            state.model.load_state_dict(payload["model"]["state"])
            state.optimizer.load_state_dict(payload["optimizer"])
            state.scheduler.load_state_dict(payload["scheduler"])
            if state.scaler is not None and payload.get("scaler"):
                state.scaler.load_state_dict(payload["scaler"])
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
        state.epoch, state.batch_in_epoch = int(payload["epoch"]), examples // per_step
        if state.batch_in_epoch >= self.steps_per_epoch:  # saved at the end of an epoch
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        log.info("resumed %s at step %d (epoch %d) from %s", self.stage, self.step, state.epoch, path)


def fit(config: TrainConfig, *, resume: bool = False) -> str:
    """MixIT training of ``config``; returns the path of the last checkpoint (run_dir/checkpoints/last.pt)."""
    return Trainer(config, "mixit").run(resume=resume)


def pretrain(config: TrainConfig, *, resume: bool = False) -> str:
    """Audio-MAE pre-training of ``config``'s encoder; returns the checkpoint path (use it as ``init_from``)."""
    return Trainer(config, "pretrain").run(resume=resume)
