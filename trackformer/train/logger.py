"""What a run reports: :class:`RunLogger` (metrics.jsonl, TensorBoard, the progress bar; rank 0 only) and
:class:`TrainWindow` (training statistics accumulated on the device between two log events)."""

import json
import logging
import math
import os
import time

import torch

from trackformer.train import distributed as tdist
from trackformer.train.config import TrainConfig, save_config

log = logging.getLogger("trackformer.train")


class TrainWindow:
    """Sums of the step losses, gradient norms and examples since the last :meth:`flush` (one host sync per log)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0
        self.examples = 0
        self.started = time.monotonic()

    def add(self, loss: torch.Tensor, parts: dict, grad_norm: torch.Tensor | None, examples: int) -> None:
        values = {"loss": loss.detach().float(), **{k: v.float() for k, v in parts.items()}}
        if grad_norm is not None:
            values["grad_norm"] = grad_norm.detach().float()
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.steps += 1
        self.examples += examples

    def flush(self, dist_info: tdist.DistInfo, *, allow_nonfinite: bool, step: int) -> dict:
        """Means over the window (and over ranks) plus examples_per_s; FloatingPointError for a non-finite loss
        unless ``allow_nonfinite`` (fp16, whose grad scaler skips such steps)."""
        keys = sorted(self.sums)
        stacked = tdist.mean_over_ranks(dist_info, torch.stack([self.sums[k] for k in keys]).to(self.device))
        record = dict(zip(keys, (stacked / max(self.steps, 1)).tolist()))
        if not math.isfinite(record["loss"]) and not allow_nonfinite:
            raise FloatingPointError(f"training loss is not finite (mean {record['loss']}) in the {self.steps} "
                                     f"steps up to step {step}; lower lr, enable grad_clip, or check the data")
        record["examples_per_s"] = self.examples / max(time.monotonic() - self.started, 1e-9)
        self.reset()
        return record


def _logged_step(line: str) -> float:
    """The step of one metrics.jsonl line; +inf for a line cut short by a crash (so it is dropped)."""
    try:
        return json.loads(line).get("step", 0)
    except ValueError:
        return math.inf


class RunLogger:
    """run_dir/config.yaml, run_dir/metrics.jsonl (one JSON object per event), TensorBoard scalars (when
    torch.utils.tensorboard imports) and the tqdm progress bar; everything is a no-op unless ``enabled``.

    A resumed run first drops what the interrupted one logged after ``resumed_step`` (its last checkpoint).
    """

    def __init__(self, config: TrainConfig, stage: str, *, enabled: bool, resumed_step: int):
        self.enabled, self.stage = enabled, stage
        self.writer = None
        if not enabled:
            return
        os.makedirs(config.run_dir, exist_ok=True)
        save_config(config, os.path.join(config.run_dir, "config.yaml"))
        self.path = os.path.join(config.run_dir, "metrics.jsonl")
        if os.path.exists(self.path):
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
        """A tqdm bar of ``total`` steps (no total for a time-bound run), starting at ``initial``."""
        from tqdm.auto import tqdm

        return tqdm(total=None if math.isinf(total) else total, initial=initial, disable=not self.enabled,
                    desc=self.stage, unit="step", dynamic_ncols=True, mininterval=1.0)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
