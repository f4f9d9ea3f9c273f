"""Data-parallel training: 2 CPU processes (gloo) end with identical replicas; only rank 0 writes the run folder."""

import os
import socket

import torch
import torch.multiprocessing as mp
from test_train import TINY_MODEL, tiny

from trackformer.registry import build_model, load_checkpoint
from trackformer.train import Trainer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, run_dir: str, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # dropout > 0: the ranks draw different masks, so equal weights need the gradient all-reduce
    config = tiny(run_dir, max_steps=3, redraw_every=2, model_config=dict(TINY_MODEL, dropout=0.1))
    trainer = Trainer(config, "mixit")
    trainer.run()
    torch.save(trainer.model.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))


def test_two_process_ddp_keeps_replicas_identical(tmp_path):
    run_dir, out_dir = tmp_path / "run", tmp_path / "out"
    out_dir.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(run_dir), str(out_dir)), nprocs=2, join=True)
    a = torch.load(out_dir / "rank0.pt", weights_only=True)
    b = torch.load(out_dir / "rank1.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"replicas differ in {key}"
    payload = load_checkpoint(str(run_dir / "checkpoints" / "last.pt"))
    assert payload["step"] == 3 and payload["world_size"] == 2 and len(payload["rng"]) == 2
    for key in a:
        assert torch.equal(payload["model"]["state"][key], a[key]), key
    torch.manual_seed(0)  # the trainer's seed: the initial weights
    initial = build_model("performer", dict(TINY_MODEL, sample_rate=8000, channels=1)).state_dict()
    assert not torch.allclose(a["input_proj.weight"], initial["input_proj.weight"])  # it trained
