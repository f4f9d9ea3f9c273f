"""What a run reports: :class:`RunLogger` (metrics.jsonl, TensorBoard, the progress bar; rank 0 only),
:class:`LimitProgress` (the bar, counting toward whichever limit will stop the run) and :class:`TrainWindow`
(training statistics accumulated on the device between two log events)."""

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
        self.max_minutes = config.max_minutes
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

    def progress(self, total: float, initial: int) -> "LimitProgress":
        """The run's bar from step ``initial``: toward ``total`` steps (inf: no step budget) or the config's
        ``max_minutes``, whichever will stop the run first (:class:`LimitProgress`)."""
        return LimitProgress(total, initial, self.max_minutes, enabled=self.enabled, desc=self.stage)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class LimitProgress:
    """A tqdm bar that counts toward the limit that will actually stop the run: ``total`` steps, or the time
    limit of ``minutes`` (from the bar's creation, as the trainer's deadline) when, at the pace so far, the time
    runs out first (or there is no step budget). Counting time, the bar fills with the minutes used and says
    ``time limit, 02:13 of 06:00, 03:47 left, step 812/9000``. The choice is revisited at every
    update once 3 steps have set a pace, and flips only when the other limit's projected end is more than 5 %
    away. ``update`` / ``set_postfix`` / ``close`` as tqdm's; ``clock`` is for tests.
    """

    TIME_FORMAT = "{l_bar}{bar}| time limit{postfix}"  # tqdm puts ", " before the postfix

    def __init__(self, total: float, initial: int, minutes: float | None, *, enabled: bool = True,
                 desc: str = "train", file=None, clock=time.monotonic):
        from tqdm.auto import tqdm

        self.total, self.initial, self.step = total, initial, initial
        self.limit_s = None if minutes is None else 60.0 * minutes
        self.clock = clock
        self.started = clock()
        self.postfix: dict = {}
        self.by_time = self.limit_s is not None and math.isinf(total)
        self.bar = tqdm(total=self._bar_total(), initial=self._bar_n(0.0), disable=not enabled, desc=desc,
                        unit="step", dynamic_ncols=True, mininterval=1.0, file=file,
                        bar_format=self.TIME_FORMAT if self.by_time else None)
        self._show(0.0)

    def _bar_total(self):
        if self.by_time:
            return round(self.limit_s)
        return None if math.isinf(self.total) else self.total

    def _bar_n(self, elapsed: float) -> int:
        return min(round(elapsed), round(self.limit_s)) if self.by_time else self.step

    def _time_binds(self, elapsed: float) -> bool:
        """Whether the time limit will stop the run before the step budget, at the pace so far."""
        if self.limit_s is None:
            return False
        if math.isinf(self.total):
            return True
        done = self.step - self.initial
        if done < 3 or elapsed <= 0:
            return self.by_time
        steps_left_in_time = done / elapsed * max(self.limit_s - elapsed, 0.0)
        ratio = steps_left_in_time / max(self.total - self.step, 1)
        return ratio < (1.05 if self.by_time else 0.95)  # hysteresis against flipping back and forth

    def _show(self, elapsed: float) -> None:
        """The postfix: in time mode the time used, the limit, the time left and the step, then the caller's."""
        values = ", ".join(f"{k}={v}" for k, v in self.postfix.items())
        if self.by_time:
            fmt = self.bar.format_interval
            step = self.step if math.isinf(self.total) else f"{self.step}/{self.total}"
            used = min(elapsed, self.limit_s)
            text = (f"{fmt(used)} of {fmt(self.limit_s)}, {fmt(self.limit_s - used)} left, "
                    f"step {step}" + (f", {values}" if values else ""))
        else:
            text = values
        self.bar.set_postfix_str(text, refresh=False)

    def update(self, n: int = 1) -> None:
        self.step += n
        elapsed = self.clock() - self.started
        by_time = self._time_binds(elapsed)
        if by_time != self.by_time:  # the other limit will stop the run: count toward it from now on
            self.by_time = by_time
            self.bar.bar_format = self.TIME_FORMAT if by_time else None
            self.bar.reset(total=self._bar_total())
        self._show(elapsed)
        self.bar.update(self._bar_n(elapsed) - self.bar.n)

    def set_postfix(self, **values) -> None:
        self.postfix.update(values)
        self._show(self.clock() - self.started)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
