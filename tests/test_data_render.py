"""render_chorales: 4 equal-length stems that do not clip, MoisesDB reads them, idempotent, atomic, tool lookup."""

import json
import os
import shutil

import numpy as np
import pytest

from trackformer.data import MoisesDB, find_fluidsynth, find_soundfont, render_chorales
from trackformer.data.render import (
    HELD_OUT_SOUNDFONTS,
    INSTRUMENTS,
    PARTS,
    SOUNDFONT_NAMES,
    TRAINING_SOUNDFONTS,
    hold_fermatas,
    list_chorales,
)

pytest.importorskip("music21", reason="music21 is not installed (pip install 'trackformer[render]')")
pytest.importorskip("pretty_midi", reason="pretty-midi is not installed (pip install 'trackformer[render]')")
needs_fluidsynth = pytest.mark.skipif(shutil.which("fluidsynth") is None,
                                      reason="fluidsynth is not installed (apt-get install fluidsynth)")
pytest.importorskip("tinysoundfont", reason="tinysoundfont is not installed (pip install --no-deps tinysoundfont)")
SR = 22050  # half the default rate: the same code path, half the rendering time


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("chorales"))
    summary = render_chorales(out, n=2, sample_rate=SR, seed=0, workers=1, progress=False)
    return out, summary


def test_two_chorales_render_to_moisesdb_layout(rendered):
    out, summary = rendered
    assert summary["rendered"] == 2 and summary["existing"] == 0 and summary["audio_seconds"] > 20
    db = MoisesDB(out, sample_rate=SR)
    assert len(db) == 2 and db.skipped == []
    fermatas = []
    assert not [e for e in os.listdir(out) if e.startswith(".tmp-")]
    for song in db:
        assert song.stem_names == list(PARTS) and song.meta["artist"] == "J. S. Bach"
        infos = [t for s in song.stems for t in s.tracks]
        assert len({t.frames for t in infos}) == 1 and {t.sample_rate for t in infos} == {SR}  # equal length
        x = song.load_stems().numpy()
        assert x.shape[:2] == (4, 2)
        mix_peak = np.abs(x.sum(0)).max()
        assert 0.7 < mix_peak <= 0.81  # normalised to 0.8: never clips
        assert (np.sqrt((x ** 2).mean(axis=(1, 2))) > 1e-3).all()  # every part sounds
        with open(os.path.join(song.path, "data.json")) as f:
            render = json.load(f)["render"]
        programs = [render["programs"][v] for v in PARTS]
        assert all(p in INSTRUMENTS[v] for v, p in zip(PARTS, programs))
        assert len({p // 8 for p in programs}) == 4  # four different GM families
        assert 56 <= render["bpm"] <= 96 and -5 <= render["transpose"] <= 5
        assert render["backend"] == "tinysoundfont"
        fermatas.append(render["fermatas"])
    assert max(fermatas) > 0  # bwv2.6 has fermatas at its phrase ends


def test_rerun_is_idempotent_and_workers_do_not_change_the_selection(rendered):
    out, _ = rendered
    before = {e: os.path.getmtime(os.path.join(out, e, "data.json")) for e in os.listdir(out)}
    os.makedirs(os.path.join(out, ".tmp-leftover-of-a-crash"))
    again = render_chorales(out, n=3, sample_rate=SR, seed=0, workers=2, progress=False)
    assert again["rendered"] == 1 and again["existing"] == 2
    after = {e: os.path.getmtime(os.path.join(out, e, "data.json")) for e in os.listdir(out)}
    assert len(after) == 3 and {e: after[e] for e in before} == before  # old songs untouched, no leftovers
    sequential = [s.meta["song"] for s in MoisesDB(out)]
    assert sorted(sequential) == sorted(os.path.basename(p)[:-4] for p in list_chorales()[:3])
    with pytest.raises(ValueError, match="seed=0 at 22050 Hz"):  # one rendering per chorale and folder
        render_chorales(out, n=1, sample_rate=44100, workers=1, progress=False)


def test_cli_render_chorales(rendered, capsys):
    import argparse

    from trackformer.data.cli import add_parser

    out, _ = rendered
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", "render-chorales", out, "--n", "2", "--sample-rate", str(SR), "--workers", "1"])
    assert args.func(args) == 0 and "2 already there" in capsys.readouterr().out
    args = parser.parse_args(["data", "render-chorales", out, "--n", "1", "--soundfont", "/missing.sf2"])
    assert args.func(args) == 2 and "missing.sf2" in capsys.readouterr().err


@needs_fluidsynth
def test_fluidsynth_backend_renders_the_same_performance(tmp_path, rendered):
    out, _ = rendered
    summary = render_chorales(str(tmp_path), n=1, sample_rate=SR, seed=0, workers=1, backend="fluidsynth",
                              progress=False)
    assert summary["rendered"] == 1
    (fs_song,) = MoisesDB(str(tmp_path), sample_rate=SR).songs
    (tsf_song,) = [s for s in MoisesDB(out, sample_rate=SR).songs if s.meta["song"] == fs_song.meta["song"]]
    renders = []
    for song in (fs_song, tsf_song):
        with open(os.path.join(song.path, "data.json")) as f:
            renders.append(json.load(f)["render"])
    assert [r["backend"] for r in renders] == ["fluidsynth", "tinysoundfont"]
    # same notes, tempo and instruments; the two synthesisers differ only in sound and release tails
    for key in ("bpm", "transpose", "programs", "pans"):
        assert renders[0][key] == renders[1][key]
    assert abs(fs_song.num_frames - tsf_song.num_frames) < 3 * SR  # fluidsynth renders reverb tails longer
    with pytest.raises(ValueError, match="backend"):
        render_chorales(str(tmp_path), n=1, backend="timidity")


def test_fermata_hold_warps_time():
    ends = [4.0, 8.0]
    assert [hold_fermatas(q, ends, 1.0) for q in (0.0, 3.0, 4.0, 6.0, 8.0, 9.0)] == [0.0, 3.0, 5.0, 7.0, 10.0, 11.0]
    # a note from 3 to 4 (under the first fermata) lasts 2 quarters; the next, from 4 to 5, is shifted, not held
    assert hold_fermatas(4.0, ends, 1.0) - hold_fermatas(3.0, ends, 1.0) == 2.0
    assert hold_fermatas(5.0, ends, 1.0) - hold_fermatas(4.0, ends, 1.0) == 1.0


def test_chorale_list_and_tools():
    paths = list_chorales()
    assert len(paths) > 350 and os.path.basename(paths[0]).startswith("bwv1.")
    assert find_soundfont().endswith(".sf2")
    with pytest.raises(FileNotFoundError, match="nope.sf2"):
        find_soundfont("/nope.sf2")
    with pytest.raises(RuntimeError, match="not found"):
        find_fluidsynth("/no/such/fluidsynth")
    with pytest.raises(ValueError, match="n must be"):
        render_chorales("/tmp/unused", n=-1)
    with pytest.raises(ValueError, match="seed"):
        render_chorales("/tmp/unused", n=1, seed=-1)


def test_missing_fluidsynth_says_what_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install fluidsynth"):
        find_fluidsynth()


def test_soundfont_names_say_what_to_install_and_keep_musescore_out_of_training(monkeypatch):
    assert set(TRAINING_SOUNDFONTS) | set(HELD_OUT_SOUNDFONTS) == set(SOUNDFONT_NAMES)
    assert "musescore" in HELD_OUT_SOUNDFONTS and not set(TRAINING_SOUNDFONTS) & set(HELD_OUT_SOUNDFONTS)
    for name, (_, candidates) in SOUNDFONT_NAMES.items():
        found = [c for c in candidates() if os.path.isfile(c)]
        if found:
            assert find_soundfont(name) == found[0] == find_soundfont(name.upper())
        else:
            with pytest.raises(FileNotFoundError, match=f"{name}.*not installed: .*install"):
                find_soundfont(name)
    monkeypatch.setattr(os.path, "isfile", lambda p: False)
    for name in ("fluidr3mono", "csound", "opl3"):
        with pytest.raises(FileNotFoundError, match=f"apt-get install {name}-"):
            find_soundfont(name)
