"""The trackformer command line: --help everywhere (fast, without torch), separate end to end with the shipped
model or a checkpoint, output formats and names, evaluate's output folders, and one actionable line per error."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from test_separate import RATE, tiny_performer, write_checkpoint
from torch import nn

import trackformer.checkpoint_io
import trackformer.data
import trackformer.evaluate
import trackformer.pretrained
from trackformer import cli


def run_cli(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", tiny_performer(), segment_seconds=0.5)


def write_wav(path, audio, rate=RATE, subtype="FLOAT"):
    sf.write(path, np.asarray(audio, dtype=np.float32).T, rate, subtype=subtype)
    return str(path)


def test_help_for_every_subcommand(capsys):
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert {"separate", "evaluate", "export", "train", "pretrain", "data", "bench", "demo"} <= set(commands)
    for name in [None, *commands]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["--help"] if name is None else [name, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: trackformer") and (name is None or name in out)


def test_python_dash_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "trackformer", "separate", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "--chunk-seconds" in done.stdout


def test_top_level_help_imports_neither_torch_nor_the_data_stack():
    code = ("import sys\nfrom trackformer import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'scipy', 'numpy', 'trackformer.data') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "COMMAND" in done.stdout, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_separate_help_says_unlabelled_and_what_the_model_learned_from(capsys, monkeypatch, tmp_path, checkpoint):
    monkeypatch.setattr(trackformer.pretrained, "PACKAGE_DIR", str(tmp_path))
    (tmp_path / "default.md").write_text("# The default model\n\nA Performer trained with MixIT on rendered\n"
                                         "chorales at 16 kHz.\n\n## Scores\n\nmore\n")
    with pytest.raises(SystemExit):
        cli.main(["separate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "UNLABELLED" in out and "unsupervised" in out
    assert "A Performer trained with MixIT on rendered chorales at 16 kHz." in out and "more" not in out
    (tmp_path / "default.md").unlink()  # no card: the facts come from the checkpoint
    os.link(checkpoint, tmp_path / "default.pt")
    with pytest.raises(SystemExit):
        cli.main(["separate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert f"performer model trained (mixit) on synthetic data at {RATE} Hz stereo, 0.5 s segments, 1 steps" in out


def test_separate_end_to_end(tmp_path, capsys, checkpoint):
    audio = 0.1 * np.random.default_rng(1).standard_normal((1, 11025))  # 1 s mono at 11.025 kHz
    song = write_wav(tmp_path / "song.wav", audio, rate=11025)
    rc, out, err = run_cli(capsys, "separate", song, "-o", str(tmp_path / "out"), "--checkpoint", checkpoint,
                           "--device", "cpu", "-q")
    assert rc == 0, err
    assert "8 sources" in out and "effective mask count" in out
    folder = tmp_path / "out" / "tiny" / "song"  # <output>/<model>/<track>
    stems = []
    for i in range(1, 9):
        data, rate = sf.read(folder / f"source_{i}.wav", always_2d=True)
        assert rate == 11025 and data.shape == (11025, 1)
        stems.append(data)
    residual = np.sum(stems, axis=0)[:, 0] - audio[0]
    assert 10 * np.log10(np.sum(residual ** 2) / np.sum(audio ** 2)) < -60
    assert (folder / "masks.png").is_file() and (folder / "separation.json").is_file()


HIDE_MATPLOTLIB = """
import sys


class HideMatplotlib:  # as if the `plots` extra were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "matplotlib":
            raise ModuleNotFoundError(f"No module named {name!r}")


sys.meta_path.insert(0, HideMatplotlib())
from trackformer import cli

sys.exit(cli.main(sys.argv[1:]))
"""


def test_separate_without_matplotlib_writes_everything_but_the_picture(tmp_path, checkpoint):
    rng = np.random.default_rng(3)
    songs = [write_wav(tmp_path / f"song{i}.wav", 0.1 * rng.standard_normal((2, 6000))) for i in range(2)]
    done = subprocess.run([sys.executable, "-c", HIDE_MATPLOTLIB, "separate", *songs, "-o", str(tmp_path / "out"),
                           "--checkpoint", checkpoint, "--device", "cpu", "-q"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    hint = [line for line in done.stderr.splitlines() if "matplotlib" in line]
    assert len(hint) == 1 and "pip install 'trackformer[plots]'" in hint[0] and "--no-plot" in hint[0], done.stderr
    for i, song in enumerate(songs):
        folder = tmp_path / "out" / "tiny" / f"song{i}"
        total = sum(sf.read(folder / f"source_{k}.wav", always_2d=True)[0] for k in range(1, 9))
        assert np.abs(total - sf.read(song, always_2d=True)[0]).max() < 8 / 2 ** 15  # 8 int16 roundings
        record = json.loads((folder / "separation.json").read_text())
        assert record["picture"] is None and "trackformer[plots]" in record["picture_skipped"]
        assert record["effective_mask_count"] > 0 and not (folder / "masks.png").exists()
    assert done.stdout.count("8 sources") == 2


def test_separate_uses_the_shipped_model_by_default(tmp_path, capsys, checkpoint, monkeypatch):
    song = write_wav(tmp_path / "song.wav", 0.1 * np.random.default_rng(2).standard_normal((2, 4000)))
    monkeypatch.setattr(trackformer.pretrained, "PACKAGE_DIR", str(tmp_path / "pretrained"))
    (tmp_path / "pretrained").mkdir()
    rc, _, err = run_cli(capsys, "separate", song, "-o", str(tmp_path / "out"), "--device", "cpu", "-q")
    assert rc == 1 and "no shipped model named 'default'" in err and "pass the path of a checkpoint" in err
    os.link(checkpoint, tmp_path / "pretrained" / "default.pt")
    os.link(checkpoint, tmp_path / "pretrained" / "small.pt")
    rc, _, err = run_cli(capsys, "separate", song, "-o", str(tmp_path / "out"), "--device", "cpu", "-q")
    assert rc == 0, err
    assert (tmp_path / "out" / "default" / "song" / "source_8.wav").is_file()
    rc, out, err = run_cli(capsys, "separate", song, "-o", str(tmp_path / "out"), "--checkpoint", "small", "-q",
                           "--no-plot", "--device", "cpu")
    assert rc == 0 and (tmp_path / "out" / "small" / "song" / "source_8.wav").is_file()
    assert "mask statistics skipped with --no-plot" in out
    assert not (tmp_path / "out" / "small" / "song" / "masks.png").exists()
    rc, _, err = run_cli(capsys, "separate", song, "--checkpoint", "big", "--device", "cpu")
    assert rc == 1 and "no shipped model named 'big'; this install ships 'default', 'small'" in err


@pytest.mark.parametrize("flags,ext,subtype", [
    ([], "wav", "PCM_16"), (["--int24"], "wav", "PCM_24"), (["--float32"], "wav", "FLOAT"),
    (["--flac"], "flac", "PCM_16"), (["--flac", "--int24"], "flac", "PCM_24"), (["--mp3"], "mp3", "MPEG_LAYER_III"),
])
def test_separate_output_formats(tmp_path, capsys, checkpoint, flags, ext, subtype):
    song = write_wav(tmp_path / "song.wav", 0.1 * np.random.default_rng(3).standard_normal((2, 4000)))
    rc, _, err = run_cli(capsys, "separate", song, "-o", str(tmp_path), "--checkpoint", checkpoint, "--no-plot",
                         "--device", "cpu", "-q", "--filename", "{track}-{stem}.{ext}", *flags)
    assert rc == 0, err
    info = sf.info(tmp_path / "tiny" / f"song-source_1.{ext}")
    assert info.subtype == subtype and info.samplerate == RATE


def test_separate_flag_errors_name_the_flags(tmp_path, capsys, checkpoint):
    song = write_wav(tmp_path / "song.wav", 0.1 * np.ones((2, 4000)))
    common = [song, "-o", str(tmp_path), "--checkpoint", checkpoint, "--device", "cpu", "-q"]
    for flags, message in [(["--flac", "--float32"], "--flac with --float32: FLAC cannot hold float32"),
                           (["--mp3", "--int24"], "--mp3 with --int24: MP3 has no bit depth"),
                           (["--overlap", "0.6"], "--overlap is a fraction of the window in (0, 0.5]"),
                           (["--chunk-seconds", "-1"], "--chunk-seconds must be a positive number"),
                           (["--filename", "{track}.{ext}"], "gives every stem the same file; include {stem}")]:
        rc, _, err = run_cli(capsys, "separate", *common, *flags)
        assert rc == 1 and message in err and "Traceback" not in err, (flags, err)
    with pytest.raises(SystemExit):  # argparse: the two bit depths exclude each other
        cli.main(["separate", *common, "--int24", "--float32"])
    assert "not allowed with argument" in capsys.readouterr().err


def _bad_checkpoints(tmp_path, checkpoint):
    payload = torch.load(checkpoint, weights_only=True)
    other_version = tmp_path / "v99.pt"
    torch.save(dict(payload, format_version=99), other_version)
    other_model = tmp_path / "other.pt"
    torch.save(dict(payload, model=dict(payload["model"], name="demucs")), other_model)
    not_ours = tmp_path / "random.pt"
    torch.save({"weights": torch.zeros(3)}, not_ours)
    pretrain = write_checkpoint(tmp_path / "mae.pt", tiny_performer(), stage="pretrain")
    return [(str(other_version), "format version 99"), (str(other_model), "cannot build"),
            (str(not_ours), "not a trackformer checkpoint"), (pretrain, "pre-training checkpoint"),
            (str(tmp_path / "missing.pt"), "checkpoint not found")]


class OutOfMemory(nn.Module):
    sample_rate = RATE

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_errors_are_one_actionable_line(tmp_path, capsys, checkpoint, monkeypatch):
    good = write_wav(tmp_path / "good.wav", 0.1 * np.ones((2, 4000)))
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really audio")
    cases = [
        ([str(tmp_path / "nope.wav")], checkpoint, "audio file not found"),
        ([str(corrupt)], checkpoint, "cannot read audio file"),
        ([write_wav(tmp_path / "empty.wav", np.zeros((1, 0)))], checkpoint, "empty"),
        ([write_wav(tmp_path / "silent.wav", np.zeros((2, 4000)))], checkpoint, "silent"),
        ([write_wav(tmp_path / "nan.wav", np.full((1, 4000), np.nan))], checkpoint, "NaN"),
    ]
    cases += [([good], ckpt, message) for ckpt, message in _bad_checkpoints(tmp_path, checkpoint)]
    for songs, ckpt, message in cases:
        rc, _, err = run_cli(capsys, "separate", *songs, "-o", str(tmp_path / "out"), "--checkpoint", ckpt,
                             "--device", "cpu", "-q")
        assert rc == 1, (message, err)
        assert message in err and "Traceback" not in err and err.strip().count("\n") == 0, (message, err)

    (tmp_path / "again").mkdir()
    same_name = write_wav(tmp_path / "again" / "good.wav", 0.1 * np.ones((2, 4000)))
    rc, _, err = run_cli(capsys, "separate", good, same_name, "--checkpoint", checkpoint, "-o", str(tmp_path))
    assert rc == 1 and "several inputs would write to" in err and "{track}" in err

    monkeypatch.setattr(trackformer.checkpoint_io, "load_separator", lambda path, device: (OutOfMemory(), {}))
    rc, _, err = run_cli(capsys, "separate", good, "-o", str(tmp_path / "out"), "--checkpoint", checkpoint,
                         "--chunk-seconds", "0.5", "--device", "cpu", "-q")
    assert rc == 1 and "CUDA out of memory; try a smaller --chunk-seconds" in err and "Traceback" not in err


def test_debug_shows_the_exception(tmp_path, checkpoint):
    with pytest.raises(ValueError, match="audio file not found"):
        cli.main(["--debug", "separate", str(tmp_path / "nope.wav"), "--checkpoint", checkpoint])
    with pytest.raises(ValueError, match="audio file not found"):
        cli.main(["separate", str(tmp_path / "nope.wav"), "--checkpoint", checkpoint, "--debug"])


def test_cuda_requested_without_cuda(tmp_path, capsys, checkpoint):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    good = write_wav(tmp_path / "good.wav", 0.1 * np.ones((2, 4000)))
    rc, _, err = run_cli(capsys, "separate", good, "--checkpoint", checkpoint, "--device", "cuda")
    assert rc == 1 and "CUDA is not available" in err


def test_zero_chunk_seconds_is_an_error_not_the_default(tmp_path, capsys, checkpoint):
    good = write_wav(tmp_path / "good.wav", 0.1 * np.ones((2, 4000)))
    rc, _, err = run_cli(capsys, "separate", good, "-o", str(tmp_path / "out"), "--checkpoint", checkpoint,
                         "--chunk-seconds", "0", "--device", "cpu", "-q")
    assert rc == 1 and "--chunk-seconds" in err and "Traceback" not in err


def test_evaluate_folders_are_named_after_the_run_and_never_shared(tmp_path, capsys, checkpoint, monkeypatch):
    calls = []

    def fake_run_evaluation(ckpt, data, **kwargs):
        calls.append((ckpt, data, kwargs["out_dir"]))
        return dict(summary={}, segments=[], songs=0, skipped_silent=0, songs_skipped=0, seconds=0.0,
                    json=os.path.join(kwargs["out_dir"], "x.json"), plot="x.png", mode="segments",
                    sample_rate=44100, model_sample_rate=16000)

    monkeypatch.setattr(trackformer.evaluate, "run_evaluation", fake_run_evaluation)
    monkeypatch.setattr(trackformer.evaluate, "format_table", lambda summary, **kwargs: "table")
    runs = tmp_path / "runs"
    for run in ("a", "b"):
        (runs / run / "checkpoints").mkdir(parents=True)
        os.link(checkpoint, runs / run / "checkpoints" / "last.pt")
    out = tmp_path / "eval"
    a, b = str(runs / "a" / "checkpoints" / "last.pt"), str(runs / "b" / "checkpoints" / "last.pt")
    for argv in (["evaluate", a, "DATA"], ["evaluate", "DATA", "--checkpoint", b], ["evaluate", a, "DATA"]):
        rc, stdout, err = run_cli(capsys, *argv, "-o", str(out), "-q")
        assert rc == 0 and "table" in stdout, err
    assert [c[2] for c in calls] == [str(out / "a-last"), str(out / "b-last"), str(out / "a-last")]
    # a different checkpoint whose label is taken gets a folder of its own
    (tmp_path / "c" / "checkpoints").mkdir(parents=True)
    clone = tmp_path / "c" / "checkpoints" / "last.pt"
    os.link(checkpoint, clone)
    assert cli.evaluation_dir(str(out), str(clone), "a-last") == str(out / "a-last-2")
    assert cli.evaluation_dir(str(out), a, "a-last") == str(out / "a-last")
    monkeypatch.setattr(trackformer.pretrained, "PACKAGE_DIR", str(tmp_path))  # no shipped model here
    rc, _, err = run_cli(capsys, "evaluate", "DATA", "-o", str(out))
    assert rc == 1 and "no shipped model named 'default'" in err
    rc, _, err = run_cli(capsys, "evaluate", a, "DATA", "--checkpoint", b)
    assert rc == 1 and "give the checkpoint once" in err


def test_export(tmp_path, capsys, checkpoint):
    out = tmp_path / "slim.pt"
    rc, stdout, err = run_cli(capsys, "export", checkpoint, str(out))
    assert rc == 0 and "MiB inference checkpoint" in stdout, err
    assert set(torch.load(out, weights_only=True)) >= {"model", "config", "step", "stage"}
    rc, _, err = run_cli(capsys, "export", str(tmp_path / "missing.pt"), str(out))
    assert rc == 1 and "checkpoint not found" in err


def test_bench(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "benchmarks_script", lambda: str(tmp_path / "benchmarks" / "run_all.py"))
    rc, _, err = run_cli(capsys, "bench", "--quick")
    assert rc == 1 and "needs a source checkout" in err
    script = tmp_path / "benchmarks" / "run_all.py"
    script.parent.mkdir()
    record = tmp_path / "argv.txt"
    script.write_text(f"import sys\nopen({str(record)!r}, 'w').write(' '.join(sys.argv[1:]))\nsys.exit(3)\n")
    rc, _, _ = run_cli(capsys, "bench", "--quick", "--device", "cpu", "--out-dir", "x")
    assert rc == 3 and record.read_text() == "--device cpu --quick --out-dir x"
    assert os.path.isfile(cli.benchmarks_script())


@pytest.mark.slow
def test_demo_end_to_end_with_synthetic_fallback(tmp_path, capsys, monkeypatch):
    """The whole demo with a 3-second training budget, as on a machine without a soundfont (≈ 40 s): the shipped
    model first, beside the baselines, then the short run (its bar counting the time limit) beside it."""

    def no_soundfont(path=None):
        raise FileNotFoundError("soundfont 'timgm6mb' is not installed")

    monkeypatch.setattr(trackformer.data, "find_soundfont", no_soundfont)
    out = tmp_path / "demo"
    rc, stdout, err = run_cli(capsys, "demo", "-o", str(out), "--minutes", "0.05", "--songs", "4", "--device", "cpu")
    assert rc == 0, err
    assert "synthetic music instead" in stdout
    shipped, trained = stdout.index("[demo]   shipped model"), stdout.index("[demo]   trained here (0.05 min)")
    assert stdout.index("8-band split") < stdout.index("oracle IRM") < stdout.index("training a") < trained
    assert shipped < stdout.index("8-band split") and stdout.count("shipped model  ") == 2  # both tables
    assert "time limit, " in err and "of 00:03" in err and "/3000" not in err.split("time limit")[-1][:40]
    assert (out / "model.pt").is_file()
    assert (out / "separated" / "trained" / "heldout_mix" / "masks.png").is_file()
    assert (out / "separated" / "shipped" / "heldout_mix" / "source_8.wav").is_file()
    record = json.loads((out / "demo.json").read_text())
    for scores in (record["trained"]["scores"], record["shipped"]["scores"],
                   *record["shipped"]["baselines"].values()):
        assert scores["n_active_refs"] >= 1 and np.isfinite(scores["one_to_one_sisnri"])
    assert set(record["shipped"]["baselines"]) == {"mixture", "bands", "irm"}
    baselines = record["shipped"]["baselines"]
    assert baselines["irm"]["mixit_sisnri"] > baselines["mixture"]["mixit_sisnri"]


@pytest.mark.slow
def test_demo_end_to_end_on_generated_songs(tmp_path, capsys):
    """The demo as on a fresh machine: generated songs rendered with TinySoundFont, the shipped recipe."""
    pytest.importorskip("tinysoundfont")
    out = tmp_path / "demo"
    rc, stdout, err = run_cli(capsys, "demo", "-o", str(out), "--minutes", "0.05", "--songs", "4", "--device", "cpu")
    assert rc == 0, err
    assert "4 generated songs rendered" in stdout and "synthetic" not in stdout
    config = yaml.safe_load((out / "run" / "config.yaml").read_text())
    assert config["stems_per_mixture"] == 2 and config["data"] == "moisesdb"
    assert f"--checkpoint {out / 'model.pt'}" in stdout


def test_separate_reads_m4a_through_pyav(tmp_path, capsys, checkpoint):
    from test_data_audio import _write_m4a  # skips without PyAV

    song = tmp_path / "track.m4a"
    _write_m4a(song, seconds=0.5)
    rc, out, err = run_cli(capsys, "separate", str(song), "-o", str(tmp_path), "--checkpoint", checkpoint,
                           "--no-plot", "--device", "cpu", "-q")
    assert rc == 0, err
    info = sf.info(tmp_path / "tiny" / "track" / "source_1.wav")
    assert info.samplerate == 44100 and info.channels == 2
