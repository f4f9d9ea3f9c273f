"""Models shipped with the package, and the slim inference checkpoints they are stored as.

    from trackformer import pretrained
    pretrained.checkpoint_path()            # .../trackformer/pretrained/default.pt
    model = pretrained.load("default", device="cpu")
    pretrained.export("runs/x/checkpoints/last.pt", "trackformer/pretrained/default.pt")

A shipped model is ``trackformer/pretrained/<name>.pt`` (a checkpoint :func:`trackformer.registry.load_model`
reads) with its model card ``<name>.md`` beside it. Everywhere a model is asked for (``Separator(model=...)``,
``trackformer separate --checkpoint``, ``trackformer evaluate --checkpoint``) a shipped name or a checkpoint path
is accepted.
"""

import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT = "default"


def shipped_names() -> list[str]:
    """Names of the models shipped in this install (``<name>.pt`` files in this folder), sorted."""
    return sorted(f[:-3] for f in os.listdir(PACKAGE_DIR) if f.endswith(".pt"))


def checkpoint_path(name: str = DEFAULT) -> str:
    """The checkpoint file of a shipped model ``name`` (``trackformer/pretrained/<name>.pt``), or ``name`` itself
    when it is the path of a file. FileNotFoundError for a path that does not exist, ValueError naming the shipped
    models for an unknown name."""
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"model must be a shipped model's name or a checkpoint path, got {type(name).__name__}")
    name = os.fspath(name)
    shipped = os.path.join(PACKAGE_DIR, f"{name}.pt")
    if name and os.path.basename(name) == name and os.path.isfile(shipped):
        return shipped
    if os.path.isfile(name):
        return name
    if os.path.splitext(name)[1] or os.sep in name or (os.altsep and os.altsep in name):
        raise FileNotFoundError(f"checkpoint not found: {name}")
    names = shipped_names()
    raise ValueError(f"no shipped model named {name!r}; this install ships "
                     f"{', '.join(repr(n) for n in names) if names else 'no model (no trackformer/pretrained/*.pt)'}"
                     "; pass the path of a checkpoint instead (e.g. runs/<run>/checkpoints/last.pt)")


def model_label(name: str = DEFAULT) -> str:
    """A short name for output folders: a shipped model's name, else the checkpoint's file name without
    extension, prefixed with its run folder for ``<run>/checkpoints/<file>.pt`` (``runs/a/checkpoints/last.pt``
    -> ``a-last``), so two runs' ``last.pt`` do not share a folder."""
    name = os.fspath(name)
    if os.path.basename(name) == name and not os.path.splitext(name)[1]:
        return name
    folder, file = os.path.split(os.path.abspath(name))
    stem = os.path.splitext(file)[0]
    if os.path.basename(folder) == "checkpoints":
        return f"{os.path.basename(os.path.dirname(folder))}-{stem}"
    return stem


def load(name: str = DEFAULT, device="cpu"):
    """The separator ``name`` (shipped name or checkpoint path) as an ``nn.Module`` in eval mode on ``device``
    ("cpu", "cuda", "cuda:N", "auto")."""
    from trackformer.checkpoint_io import load_separator, resolve_device

    return load_separator(checkpoint_path(name), resolve_device(str(device)))[0]


def model_card(name: str = DEFAULT) -> str | None:
    """Text of the shipped model's card ``<name>.md``, or None when there is none."""
    path = os.path.join(PACKAGE_DIR, f"{name}.md")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return f.read()


def describe(name: str = DEFAULT) -> str:
    """One paragraph on what the shipped model ``name`` is: the first paragraph of its model card (after the
    title), else facts read from its checkpoint, else a note that it is not installed."""
    card = model_card(name)
    if card:
        paragraphs = [" ".join(line.strip() for line in block.splitlines())
                      for block in card.split("\n\n") if block.strip() and not block.lstrip().startswith("#")]
        if paragraphs:
            return paragraphs[0]
    try:
        path = checkpoint_path(name)
    except (ValueError, FileNotFoundError):
        return f"No model named {name!r} is installed with this copy of trackformer; pass --checkpoint."
    from trackformer.registry import load_checkpoint

    payload = load_checkpoint(path)
    return _facts(payload)


def _facts(payload: dict) -> str:
    """What a checkpoint says about its training, in one sentence."""
    c = payload["config"]
    data = f" on {c['data']} data" + (f" ({c['root']})" if c.get("root") else "") if c.get("data") else ""
    layout = {1: " mono", 2: " stereo"}.get(c.get("channels"), "")
    return (f"{payload['model']['name']} model trained ({payload['stage']}){data} at {c.get('sample_rate')} Hz"
            f"{layout}, {c.get('segment_seconds')} s segments, {payload['step']} steps.")


def export(checkpoint: str, out_path: str) -> str:
    """Writes the slim inference checkpoint of ``checkpoint`` (a training checkpoint's path or a shipped name)
    to ``out_path``: the model (name, config, weights), the TrainConfig dict, stage, step and last validation
    metrics, without optimizer, scheduler, scaler and RNG states. Checks that it loads; returns ``out_path``."""
    import torch

    from trackformer.checkpoint_io import save_checkpoint
    from trackformer.registry import load_checkpoint, load_model

    source = checkpoint_path(checkpoint)
    if os.path.abspath(source) == os.path.abspath(out_path):
        raise ValueError(f"export would overwrite its input {source}; choose another output path")
    payload = load_checkpoint(source)
    model = payload["model"]
    state = {k: v.detach().to("cpu").clone() if isinstance(v, torch.Tensor) else v for k, v in model["state"].items()}
    save_checkpoint(out_path, dict(stage=payload["stage"], step=payload["step"], config=payload["config"],
                                   metrics=payload.get("metrics", {}),
                                   model=dict(name=model["name"], config=model["config"], state=state)))
    load_model(out_path)
    return out_path
