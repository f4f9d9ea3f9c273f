"""TrainConfig: every setting of one training run, its presets, and YAML load/save/overrides.

One config describes one run (MixIT training or Audio-MAE pre-training); it is written to ``run_dir/config.yaml``
and stored in every checkpoint. Units: sample_rate in Hz, segment_seconds and synthetic_seconds in seconds,
max_minutes in minutes of wall time of one invocation's training loop (setup and data indexing excluded; the step
in progress is finished, then a checkpoint is written).
"""

import copy
import dataclasses
import math

import yaml

DATA_SOURCES = ("synthetic", "moisesdb", "stems", "corpus")
AMP_MODES = ("off", "bf16", "fp16")
LR_SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass
class TrainConfig:
    """Settings of one training run; see the module docstring and :func:`preset` for typical values.

    A run stops at ``max_steps`` optimizer steps, or after ``epochs`` epochs of ``examples_per_epoch`` examples,
    whichever comes first (at least one must be set), or when ``max_minutes`` of wall time are used up.
    ``valid_examples=0`` turns validation off. ``stems_per_mixture`` and ``stem_gain_db`` (``[lo, hi]`` dB) are the
    training data's stem augmentations (:class:`trackformer.data.MixitPairs`). ``data: corpus`` trains on a music
    corpus (``trackformer data index-music`` / ``fetch-debian-music``: recordings without stems) at ``root``;
    ``real_root`` (such a corpus) with ``real_fraction`` > 0 mixes real music into stem data instead: each training
    example's two MixIT mixtures are two real excerpts with probability ``real_fraction``, else a pair from ``data``
    as without it (validation stays on ``data``'s songs, which have stems). ``model_config`` keys are those of
    the model (``trackformer.registry.build_model``); ``sample_rate`` (and ``channels`` for the Performer) are filled in
    from this config and must agree with it when given.
    """

    model: str = "performer"
    model_config: dict = dataclasses.field(default_factory=dict)
    data: str = "synthetic"
    root: str | None = None
    synthetic_songs: int = 64
    synthetic_seconds: float = 20.0
    sample_rate: int = 44100
    channels: int = 2
    segment_seconds: float = 5.0
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    warmup_steps: int = 1000
    lr_schedule: str = "constant"
    decay_steps: int | None = None
    max_steps: int | None = 100_000
    epochs: int | None = None
    examples_per_epoch: int = 10_000
    valid_examples: int = 64
    max_minutes: float | None = None
    amp: str = "off"
    compile: bool = False
    diversity_weight: float = 0.0
    sparsity_weight: float = 0.0
    snr_max: float = 30.0
    mae_mask_ratio: float = 0.3
    redraw_every: int = 1000
    seed: int = 0
    workers: int = 2
    device: str = "auto"
    run_dir: str = "runs/default"
    log_every: int = 50
    eval_every: int = 1000
    checkpoint_every: int = 1000
    init_from: str | None = None
    stems_per_mixture: int | None = None
    stem_gain_db: list | None = None
    real_root: str | None = None
    real_fraction: float = 0.0

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raises TypeError/ValueError naming the first bad field."""
        def positive_int(name, allow_none=False, allow_zero=False):
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
                bound = ">= 0" if allow_zero else ">= 1"
                raise ValueError(f"TrainConfig.{name} must be an int {bound}"
                                 f"{' or None' if allow_none else ''}, got {value!r}")

        def number(name, lo=None, lo_open=False, allow_none=False):
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"TrainConfig.{name} must be a finite number, got {value!r}")
            if lo is not None and (value <= lo if lo_open else value < lo):
                raise ValueError(f"TrainConfig.{name} must be {'>' if lo_open else '>='} {lo}, got {value!r}")

        def choice(name, options):
            if getattr(self, name) not in options:
                raise ValueError(f"TrainConfig.{name} must be one of {list(options)}, got {getattr(self, name)!r}")

        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"TrainConfig.model must be a model name such as 'performer', got {self.model!r}")
        if not isinstance(self.model_config, dict):
            raise TypeError(f"TrainConfig.model_config must be a dict, got {type(self.model_config).__name__}")
        choice("data", DATA_SOURCES)
        if self.data != "synthetic" and not self.root:
            raise ValueError(f"TrainConfig.root (the dataset folder) is required for data={self.data!r}")
        for name in ("synthetic_songs", "sample_rate", "batch_size", "examples_per_epoch", "log_every", "eval_every",
                     "checkpoint_every"):
            positive_int(name)
        if self.channels not in (1, 2):
            raise ValueError(f"TrainConfig.channels must be 1 or 2, got {self.channels!r}")
        for name in ("warmup_steps", "redraw_every", "workers", "seed", "valid_examples"):
            positive_int(name, allow_zero=True)
        for name in ("max_steps", "epochs", "decay_steps", "stems_per_mixture"):
            positive_int(name, allow_none=True)
        gains = self.stem_gain_db
        if gains is not None and not (isinstance(gains, (list, tuple)) and len(gains) == 2
                                      and all(isinstance(g, (int, float)) and math.isfinite(g) for g in gains)
                                      and gains[0] <= gains[1]):
            raise ValueError(f"TrainConfig.stem_gain_db must be [lo, hi] in dB with lo <= hi, or None, got {gains!r}")
        number("real_fraction", lo=0)
        if self.real_fraction > 1:
            raise ValueError(f"TrainConfig.real_fraction must be in [0, 1], got {self.real_fraction!r}")
        if self.real_root is not None and not (isinstance(self.real_root, str) and self.real_root):
            raise ValueError(f"TrainConfig.real_root must be a corpus folder or None, got {self.real_root!r}")
        if (self.real_root is None) != (self.real_fraction == 0):
            raise ValueError("TrainConfig: set real_root (a music corpus) and real_fraction > 0 together, got "
                             f"real_root={self.real_root!r}, real_fraction={self.real_fraction!r}")
        if self.real_root is not None and self.data == "corpus":
            raise ValueError("TrainConfig: data=corpus already trains on real music only; real_root mixes a "
                             "corpus into stem data (synthetic, moisesdb or stems)")
        if self.max_steps is None and self.epochs is None and self.max_minutes is None:
            raise ValueError("TrainConfig: set max_steps, epochs or max_minutes; the run needs an end")
        if self.lr_schedule == "cosine" and self.max_steps is None and self.epochs is None and not self.decay_steps:
            raise ValueError("TrainConfig: a cosine schedule bounded only by max_minutes needs decay_steps")
        for name in ("segment_seconds", "synthetic_seconds", "lr"):
            number(name, lo=0, lo_open=True)
        for name in ("weight_decay", "grad_clip", "diversity_weight", "sparsity_weight", "snr_max"):
            number(name, lo=0)
        number("max_minutes", lo=0, lo_open=True, allow_none=True)
        number("mae_mask_ratio", lo=0, lo_open=True)
        if self.mae_mask_ratio >= 1:
            raise ValueError(f"TrainConfig.mae_mask_ratio must be in (0, 1), got {self.mae_mask_ratio!r}")
        if self.segment_seconds > self.synthetic_seconds and self.data == "synthetic":
            raise ValueError(f"TrainConfig.segment_seconds ({self.segment_seconds}) must not exceed "
                             f"synthetic_seconds ({self.synthetic_seconds})")
        choice("amp", AMP_MODES)
        choice("lr_schedule", LR_SCHEDULES)
        if not isinstance(self.compile, bool):
            raise ValueError(f"TrainConfig.compile must be true or false, got {self.compile!r}")
        for name in ("device", "run_dir"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"TrainConfig.{name} must be a non-empty string, got {getattr(self, name)!r}")
        for name in ("root", "init_from"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ValueError(f"TrainConfig.{name} must be a path string or None, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        """Plain dict of the fields (YAML/JSON-safe, a deep copy)."""
        return copy.deepcopy(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: dict, *, source: str = "config") -> "TrainConfig":
        """Inverse of :meth:`to_dict`; missing keys take defaults, unknown keys raise ValueError naming ``source``."""
        if not isinstance(values, dict):
            raise ValueError(f"{source}: expected a mapping of TrainConfig fields, got {type(values).__name__}")
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{source}: unknown TrainConfig keys {unknown}")
        values = copy.deepcopy(values)
        for f in dataclasses.fields(cls):
            # YAML 1.1 reads "1e-4" (no dot) as a string; accept it for float fields.
            if "float" in str(f.type) and isinstance(values.get(f.name), str):
                try:
                    values[f.name] = float(values[f.name])
                except ValueError:
                    raise ValueError(f"{source}: {f.name} must be a number, got {values[f.name]!r}") from None
        return cls(**values)

    def replace(self, **changes) -> "TrainConfig":
        """A validated copy with ``changes`` applied."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def segment_samples(self) -> int:
        """Samples per training segment: round(segment_seconds * sample_rate)."""
        return round(self.segment_seconds * self.sample_rate)


def _paper(segment_seconds: float) -> TrainConfig:
    """The paper's setting: MoisesDB at 44.1 kHz stereo, the default 12-layer Performer, batch 4, AdamW 1e-4."""
    return TrainConfig(model="performer", model_config={}, data="moisesdb", root="data/moisesdb",
                       sample_rate=44100, channels=2, segment_seconds=segment_seconds, batch_size=4, lr=1e-4,
                       weight_decay=0.01, grad_clip=5.0, warmup_steps=2000, max_steps=200_000,
                       examples_per_epoch=10_000, valid_examples=128, workers=4, log_every=50, eval_every=2000,
                       checkpoint_every=2000, run_dir=f"runs/paper-{segment_seconds:g}s")


def _tiny_cpu() -> TrainConfig:
    """A small Performer on 16 kHz mono synthetic music that learns something within minutes on a laptop CPU."""
    return TrainConfig(model="performer",
                       model_config=dict(n_fft=512, hop=128, d_model=64, n_layers=2, n_heads=2, nb_features=32,
                                         ffn=128, dropout=0.0),
                       data="synthetic", synthetic_songs=32, synthetic_seconds=12.0, sample_rate=16000, channels=1,
                       segment_seconds=2.0, batch_size=4, lr=1e-3, weight_decay=0.01, grad_clip=5.0,
                       warmup_steps=50, max_steps=3000, examples_per_epoch=800, valid_examples=16, workers=0,
                       log_every=10, eval_every=200, checkpoint_every=200, run_dir="runs/tiny-cpu")


def _default() -> TrainConfig:
    """The first stage of the shipped model (trackformer/pretrained/default.pt; then ``default-real``; its card):
    the tiny-cpu Performer with MixIT on generated multi-instrument songs (``trackformer data render-songs``,
    16 kHz), each MixIT mixture the sum of 1-2 stems of one song at random gains, cosine learning rate."""
    return _tiny_cpu().replace(data="moisesdb", root="data/songs16k", segment_seconds=3.0, max_steps=9000,
                               lr_schedule="cosine",
                               stems_per_mixture=2, stem_gain_db=[-6.0, 6.0], valid_examples=8, eval_every=100_000,
                               checkpoint_every=250, log_every=50, run_dir="runs/default")


def _default_real() -> TrainConfig:
    """The shipped model's fine-tuning stage: the ``default`` model (``init_from``) trained on, with real
    recordings mixed in (``trackformer data fetch-debian-music``, stored at 16 kHz mono): half of the MixIT
    examples are two excerpts of different real songs, the other half the rendered stem pairs of ``default``;
    lr 3e-4, cosine. The model card gives the stages and step counts of the shipped model."""
    return _default().replace(init_from="runs/default/checkpoints/last.pt", real_root="data/debmusic/corpus16k",
                              real_fraction=0.5, lr=3e-4, max_steps=5000, log_every=100, run_dir="runs/default-real")


_PRESETS = {
    "default": _default,
    "default-real": _default_real,
    "paper-3s": lambda: _paper(3.0),
    "paper-5s": lambda: _paper(5.0),
    "paper-10s": lambda: _paper(10.0),
    "paper-30s": lambda: _paper(30.0),
    "tiny-cpu": _tiny_cpu,
}
PRESETS = tuple(_PRESETS)


def preset(name: str) -> TrainConfig:
    """A fresh TrainConfig of preset ``name`` (one of :data:`PRESETS`)."""
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {list(PRESETS)}")
    return _PRESETS[name]()


def save_config(config: TrainConfig, path: str) -> None:
    """Writes ``config`` as YAML (keys in field order)."""
    with open(path, "w") as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)


def load_config(path: str) -> TrainConfig:
    """Reads a YAML file written by :func:`save_config` (or by hand); errors name the file."""
    try:
        with open(path) as f:
            values = yaml.safe_load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"config file {path} is not valid YAML: {err}") from None
    return TrainConfig.from_dict(values if values is not None else {}, source=path)


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """A copy of ``config`` with ``key=value`` overrides; values parse as YAML (``max_steps=null``, ``lr=3e-4``).

    ``model_config.KEY=value`` sets one key of the model config.
    """
    values = config.to_dict()
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like key=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ValueError(f"override {item!r}: value is not valid YAML: {err}") from None
        if key.startswith("model_config."):
            values["model_config"][key.split(".", 1)[1]] = value
        elif key in values:
            values[key] = value
        else:
            raise ValueError(f"override {item!r}: unknown TrainConfig key {key!r}")
    return TrainConfig.from_dict(values, source="overrides")
