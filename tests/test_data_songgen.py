"""Generated songs: TinySoundFont rendering of note lists, song plans, the MoisesDB-layout writer and its CLI."""

import hashlib
import importlib.metadata
import json
import os

import numpy as np
import pytest

from trackformer import cli
from trackformer.data import MoisesDB
from trackformer.data.effects import stem_kind
from trackformer.data.render import find_soundfont
from trackformer.data.songgen import ROLES, plan_song, render_song, render_songs, song_seed

pytest.importorskip("tinysoundfont", reason="tinysoundfont is not installed (pip install --no-deps tinysoundfont)")
pytest.importorskip("pretty_midi", reason="pretty-midi (ships TimGM6mb.sf2) is not installed")
from trackformer.data.sfsynth import Note, render_part  # noqa: E402

SR = 16000


@pytest.fixture(scope="module")
def soundfont():
    return find_soundfont("timgm6mb")


def test_render_part_is_sample_exact_panned_and_silent_between_notes(soundfont):
    notes = [Note(0.1, 0.3, 60, 100), Note(0.5, 0.6, 67, 90)]
    audio = render_part(notes, soundfont=soundfont, program=0, sample_rate=SR, tail=0.5)
    assert audio.shape == (2, round(0.6 * SR) + SR // 2) and audio.dtype == np.float32
    assert np.abs(audio[:, : round(0.1 * SR)]).max() == 0  # nothing before the first onset
    assert np.abs(audio[:, round(0.1 * SR): round(0.2 * SR)]).max() > 1e-3
    left = render_part(notes, soundfont=soundfont, program=0, sample_rate=SR, pan=-1.0, length=SR)
    assert left.shape == (2, SR) and np.abs(left[1]).max() < 1e-6 < np.abs(left[0]).max()
    # the cached synthesiser carries nothing over from the previous part
    again = render_part(notes, soundfont=soundfont, program=0, sample_rate=SR, tail=0.5)
    np.testing.assert_array_equal(again, audio)
    drums = render_part([Note(0.0, 0.1, 36, 120)], soundfont=soundfont, program=0, drums=True, sample_rate=SR)
    assert np.abs(drums).max() > 1e-2
    with pytest.raises(FileNotFoundError, match="soundfont not found"):
        render_part(notes, soundfont="missing.sf2", program=0)
    with pytest.raises(ValueError, match="pan"):
        render_part(notes, soundfont=soundfont, program=0, pan=2.0)


def test_plans_are_seeded_varied_and_bounded():
    plans = [plan_song(seed, seconds=10.0) for seed in range(40)]
    assert plan_song(3, seconds=10.0) == plans[3]
    counts = [len(p["parts"]) for p in plans]
    assert min(counts) >= 2 and max(counts) <= 6 and len(set(counts)) >= 3
    assert len({p["bpm"] for p in plans}) == 40 and len({p["key"] for p in plans}) >= 6
    assert {part.role for p in plans for part in p["parts"]} == set(ROLES)
    for p in plans:
        for part in p["parts"]:
            assert part.notes and all(0 <= n.start < n.end and 0 <= n.pitch <= 127 and 1 <= n.velocity <= 127
                                      for n in part.notes)
            assert (part.program is None) == (part.role == "drums")
    assert max(len(plan_song(s, seconds=10.0, max_stems=4)["parts"]) for s in range(40)) == 4
    with pytest.raises(ValueError, match="max_stems"):
        plan_song(0, max_stems=1)


def test_split_seeds_are_disjoint():
    train = {song_seed("train", i, s) for i in range(300) for s in range(3)}
    test = {song_seed("test", i, s) for i in range(300) for s in range(3)}
    assert not train & test and len(train) == 900
    with pytest.raises(ValueError, match="split"):
        song_seed("valid", 0, 0)


def test_render_song_levels_and_peak(soundfont):
    stems, meta = render_song(song_seed("train", 0, 0), soundfont=soundfont, sample_rate=SR, seconds=4.0)
    assert 2 <= len(stems) <= 6 and set(stems) == set(meta["parts"])
    assert {a.shape for a in stems.values()} == {(2, 4 * SR)}
    assert np.abs(sum(stems.values())).max() == pytest.approx(0.8, rel=1e-5)  # the mixture never clips


def test_render_songs_writes_moisesdb_layout_idempotently(tmp_path, soundfont, capsys):
    out = str(tmp_path / "songs")
    summary = render_songs(out, n=3, soundfont=soundfont, sample_rate=SR, seconds=3.0, progress=False)
    assert summary["rendered"] + len(summary["skipped"]) == 3 and summary["rendered"] >= 2
    db = MoisesDB(out, sample_rate=SR, max_stems=None)
    assert [s.name for s in db.songs] == sorted(f"train-0-{i:04d}" for i in range(3)
                                                if f"train-0-{i:04d}" not in dict(summary["skipped"]))
    song = db.songs[0]
    np.testing.assert_allclose(song.load_mixture().numpy(), song.load_stems().sum(0).numpy(), atol=1e-6)
    with open(os.path.join(out, song.name, "data.json")) as f:
        render = json.load(f)["render"]
    assert render["split"] == "train" and render["soundfont"] == os.path.basename(soundfont)
    again = render_songs(out, n=3, soundfont=soundfont, sample_rate=SR, seconds=3.0, progress=False)
    assert again["rendered"] == 0 and again["existing"] == summary["rendered"]
    with pytest.raises(ValueError, match="rendered with"):
        render_songs(out, n=1, soundfont=soundfont, sample_rate=22050, seconds=3.0, progress=False)
    rc = cli.main(["data", "render-songs", str(tmp_path / "test"), "--n", "2", "--split", "test", "--max-stems",
                   "3", "--seconds", "2", "--sample-rate", str(SR), "--soundfont", "timgm6mb"])
    assert rc == 0 and "rendered" in capsys.readouterr().out
    assert all(s.name.startswith("test-0-") and s.num_stems <= 3
               for s in MoisesDB(str(tmp_path / "test"), sample_rate=SR, max_stems=None).songs)
    assert cli.main(["data", "render-songs", str(tmp_path / "x"), "--n", "1", "--soundfont", "nope.sf2"]) == 2


# sha256 of song train/0/0 (2 s at 16 kHz, TimGM6mb of pretty-midi) rendered before effects existed, with
# tinysoundfont 0.3.7: the default (effects off) must keep rendering every seed exactly as before
DEFAULT_RENDER = ("0.3.7", "43dade4362dfbf62964fdf03f887553cf3e87142e41612f8199401551e53bb1f")


def _digest(stems, meta) -> str:
    h = hashlib.sha256()
    for role in sorted(stems):
        h.update(role.encode())
        h.update(np.ascontiguousarray(stems[role], np.float32).tobytes())
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()


def test_default_render_is_unchanged_by_the_effects_option(soundfont):
    seed = song_seed("train", 0, 0)
    default = _digest(*render_song(seed, soundfont=soundfont, sample_rate=SR, seconds=2.0))
    assert _digest(*render_song(seed, soundfont=soundfont, sample_rate=SR, seconds=2.0, effects=False)) == default
    version, digest = DEFAULT_RENDER
    if importlib.metadata.version("tinysoundfont") != version:
        pytest.skip(f"the pinned render digest is for tinysoundfont {version}")
    assert default == digest


def test_effects_change_the_stems_not_the_song(soundfont):
    seed = song_seed("train", 0, 0)
    dry, dry_meta = render_song(seed, soundfont=soundfont, sample_rate=SR, seconds=3.0)
    wet, meta = render_song(seed, soundfont=soundfont, sample_rate=SR, seconds=3.0, effects=True)
    again, again_meta = render_song(seed, soundfont=soundfont, sample_rate=SR, seconds=3.0, effects=True)
    assert set(wet) == set(dry) and {a.shape for a in wet.values()} == {(2, 3 * SR)}
    assert again_meta == meta and meta["effects"] is True and "effects" not in dry_meta and "bus" not in dry_meta
    assert [s["ratio"] for s in meta["bus"]["steps"]][-1] == 20  # ends in a limiter
    for role in wet:
        np.testing.assert_array_equal(again[role], wet[role])  # seeded: bit-identical
        assert np.isfinite(wet[role]).all()
        part = meta["parts"][role]
        assert part["effects"]["kind"] == stem_kind(role, part["program"]) and part["effects"]["steps"]
        assert {k: v for k, v in part.items() if k != "effects"} == dry_meta["parts"][role]  # the same plan
    assert np.abs(sum(wet.values())).max() == pytest.approx(0.8, rel=1e-5)  # the mixture still never clips

    def rms(stems):
        return np.array([np.sqrt(np.mean(np.square(stems[r], dtype=np.float64))) for r in sorted(stems)])

    # the drawn levels are kept up to what the shared bus compression does to stems of different envelopes
    np.testing.assert_allclose(rms(wet) / rms(wet)[0], rms(dry) / rms(dry)[0], rtol=0.5)
    scale = rms(dry)[0] / rms(wet)[0]  # the whole song's gain differs: compare the sounds at one gain
    assert all(np.abs(wet[r] * scale - dry[r]).max() > 0.05 * np.abs(dry[r]).max() for r in wet)
    json.dumps(meta)  # the chains are plain data for data.json

    def crest(stems):
        mix = sum(stems.values())
        return np.abs(mix).max() / np.sqrt(np.mean(np.square(mix, dtype=np.float64)))

    crests = [crest(render_song(song_seed("train", i, 0), soundfont=soundfont, sample_rate=SR, seconds=3.0,
                                effects=fx)[0]) for i in range(1, 4) for fx in (False, True)]
    assert np.median(crests[1::2]) < 0.8 * np.median(crests[::2])  # mixed and mastered: less peaky than the sum


def test_render_songs_with_effects_records_them_and_keeps_folders_apart(tmp_path, soundfont):
    out = str(tmp_path / "fx")
    summary = render_songs(out, n=1, soundfont=soundfont, sample_rate=SR, seconds=2.0, effects=True, progress=False)
    assert summary["rendered"] == 1
    with open(os.path.join(out, "train-0-0000", "data.json")) as f:
        render = json.load(f)["render"]
    assert render["effects"] is True and all("effects" in p for p in render["parts"].values())
    assert render_songs(out, n=1, soundfont=soundfont, sample_rate=SR, seconds=2.0, effects=True,
                        progress=False)["existing"] == 1
    with pytest.raises(ValueError, match="effects on"):
        render_songs(out, n=1, soundfont=soundfont, sample_rate=SR, seconds=2.0, progress=False)
    # the CLI flag reaches render_songs
    assert cli.main(["data", "render-songs", str(tmp_path / "cli"), "--n", "1", "--seconds", "2", "--sample-rate",
                     str(SR), "--effects"]) == 0
    with open(os.path.join(tmp_path, "cli", "train-0-0000", "data.json")) as f:
        assert json.load(f)["render"]["effects"] is True
