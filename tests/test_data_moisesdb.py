"""MoisesDB and StemsFolder on a fabricated tree: layout, filtering, bad files, stems/mixture, split, CLI info."""

import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from trackformer.data import MoisesDB, StemsFolder
from trackformer.data.audio import add_audio, read_audio
from trackformer.data.cli import add_parser
from trackformer.data.moisesdb import MUSDB_GROUPS

SR = 44100


def _tone(n, f, sr=SR, channels=2, amp=0.3):
    t = np.arange(n) / sr
    x = amp * np.sin(2 * np.pi * f * t)
    return np.stack([x, 0.5 * x][:channels]).astype(np.float32)


def _song(root, uid, stems, *, json_text=None):
    """stems: {stemName: [(array (C, T), sr), ...]} → <root>/<uid>/data.json + <stem>/<track>.wav."""
    folder = os.path.join(root, uid)
    os.makedirs(folder)
    entries = []
    for name, tracks in stems.items():
        os.makedirs(os.path.join(folder, name))
        ts = []
        for i, (audio, sr) in enumerate(tracks):
            tid = f"{uid}-{name}-{i}"
            if audio is None:  # a corrupt file
                with open(os.path.join(folder, name, f"{tid}.wav"), "wb") as f:
                    f.write(b"not audio at all" * 50)
            else:
                sf.write(os.path.join(folder, name, f"{tid}.wav"), audio.T, sr, subtype="FLOAT")
            ts.append({"id": tid, "extension": "wav", "trackType": name, "has_bleed": False})
        entries.append({"stemName": name, "id": f"{uid}-{name}", "tracks": ts})
    with open(os.path.join(folder, "data.json"), "w") as f:
        f.write(json_text if json_text is not None else
                json.dumps({"artist": "a", "song": uid, "genre": "g", "stems": entries}))
    return folder


@pytest.fixture
def tree(tmp_path):
    """A MoisesDB tree under tmp/moisesdb_v0.1 with 3 good songs and 3 that must be left out."""
    root = tmp_path / "moisesdb_v0.1"
    root.mkdir()
    r = str(root)
    _song(r, "a-two-tracks", {"vocals": [(_tone(30000, 440), SR), (_tone(25000, 660), SR)],
                              "bass": [(_tone(30000, 55), SR)]})
    _song(r, "b-mono-48k", {"drums": [(_tone(20000, 100, channels=1), SR)],
                            "guitar": [(_tone(48000, 330, sr=48000), 48000)]})  # 1 s at 48 kHz: the longest stem
    _song(r, "c-corrupt", {"vocals": [(_tone(1000, 440), SR)], "bass": [(None, SR)]})
    _song(r, "d-malformed", {"vocals": [(_tone(1000, 440), SR)]}, json_text='{"stems": [ {"stemName": ')
    _song(r, "e-six-stems", {f"s{i}": [(_tone(1000, 100 * (i + 1)), SR)] for i in range(6)})
    _song(r, "f-three", {"piano": [(_tone(9000, 262), SR)], "bass": [(_tone(9000, 65), SR)],
                         "wind": [(_tone(9000, 523), SR)]})
    os.makedirs(os.path.join(r, "not-a-song"))  # no data.json: ignored
    return tmp_path


def test_index_filters_and_reports(tree):
    db = MoisesDB(str(tree))  # the parent of moisesdb_v0.1 works too
    assert db.root.endswith("moisesdb_v0.1")
    assert [s.name for s in db.songs] == ["a-two-tracks", "b-mono-48k", "f-three"]
    skipped = {os.path.basename(p): reason for p, reason in db.skipped}
    assert set(skipped) == {"c-corrupt", "d-malformed", "e-six-stems"}
    assert "c-corrupt-bass-0.wav" in skipped["c-corrupt"]
    assert "data.json" in skipped["d-malformed"]
    assert "6 stems" in skipped["e-six-stems"]
    assert [s.name for s in MoisesDB(str(tree / "moisesdb_v0.1")).songs] == [s.name for s in db.songs]
    assert "e-six-stems" in [s.name for s in MoisesDB(str(tree), max_stems=None).songs]
    summary = db.summary()
    assert summary["songs"] == 3 and summary["skipped"] == 3 and summary["stems_per_song"] == {2: 2, 3: 1}
    assert summary["seconds_max"] == pytest.approx(1.0, abs=1e-4)


def test_stems_are_summed_padded_resampled_and_mixture_is_their_sum(tree):
    db = MoisesDB(str(tree), sample_rate=SR, channels=2)
    a, b, f = db.songs
    assert a.stem_names == ["vocals", "bass"] and a.duration == pytest.approx(30000 / SR)
    stems = a.load_stems()
    assert stems.shape == (2, 2, 30000) and stems.dtype == torch.float32
    folder = os.path.join(db.root, "a-two-tracks", "vocals")
    t0 = read_audio(os.path.join(folder, "a-two-tracks-vocals-0.wav"))
    t1 = read_audio(os.path.join(folder, "a-two-tracks-vocals-1.wav"))
    np.testing.assert_allclose(stems[0, :, :25000].numpy(), (t0[:, :25000] + t1), atol=1e-6)
    np.testing.assert_allclose(stems[0, :, 25000:].numpy(), t0[:, 25000:], atol=1e-6)  # shorter track: padded
    torch.testing.assert_close(a.load_mixture(), stems.sum(0), rtol=0, atol=1e-6)
    # mono file duplicated to stereo, 48 kHz file resampled to 44.1 kHz, shorter stem zero-padded
    sb = b.load_stems()
    assert sb.shape == (2, 2, SR) and b.duration == pytest.approx(1.0)
    assert torch.equal(sb[0, 0], sb[0, 1]) and sb[0, :, 20000:].abs().max() == 0
    ref = _tone(SR, 330)
    assert (sb[1, :, 1000:-1000].numpy() - ref[:, 1000:-1000]).__abs__().max() < 2e-3
    # a segment equals the same span of the whole song; mono target averages the channels
    seg = b.load_stems(12345, 6789)
    torch.testing.assert_close(seg, sb[:, :, 12345:12345 + 6789], atol=1e-6, rtol=0)
    mono = MoisesDB(str(tree), channels=1).songs[0].load_mixture()
    torch.testing.assert_close(mono[0], stems.sum(0).mean(0), atol=1e-6, rtol=0)
    assert f.load_stems(8000, 5000).shape == (3, 2, 5000)  # past the end: zero-padded to the requested length


def test_stem_groups_fold_six_stems_into_four(tree):
    db = MoisesDB(str(tree), stem_groups={"low": ("s0", "s1"), "mid": ("s2",), "rest": ("*",), "none": ("x",)})
    six = next(s for s in db.songs if s.name == "e-six-stems")
    assert six.stem_names == ["low", "mid", "rest"]
    full = MoisesDB(str(tree), max_stems=None).songs
    ref = next(s for s in full if s.name == "e-six-stems").load_stems()
    x = six.load_stems()
    torch.testing.assert_close(x[0], ref[0] + ref[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(x[2], ref[3:].sum(0), rtol=0, atol=1e-6)
    torch.testing.assert_close(six.load_mixture(), ref.sum(0), rtol=0, atol=1e-6)
    a = next(s for s in MoisesDB(str(tree), stem_groups=MUSDB_GROUPS).songs if s.name == "a-two-tracks")
    assert a.stem_names == ["vocals", "bass"]


def test_tracks_summed_before_one_resample_equal_per_track_resampling(tmp_path):
    rng = np.random.default_rng(5)
    mono48, st48 = (rng.standard_normal((1, 30011)) * 0.1), (rng.standard_normal((2, 27001)) * 0.1)
    st44 = rng.standard_normal((2, 25000)) * 0.1
    folder = _song(str(tmp_path), "mixed", {"keys": [(mono48.astype(np.float32), 48000),
                                                     (st48.astype(np.float32), 48000)],
                                            "bass": [(st44.astype(np.float32), SR)]})
    for channels in (2, 1):
        song = MoisesDB(str(tmp_path), sample_rate=16000, channels=channels).songs[0]
        files = {name: [os.path.join(folder, name, f) for f in sorted(os.listdir(os.path.join(folder, name)))]
                 for name in ("keys", "bass")}
        for start, frames in [(0, None), (3333, 2000), (9000, 2000)]:
            ref = np.stack([sum(read_audio(f, start=start, frames=frames or song.num_frames, sample_rate=16000,
                                           channels=channels) for f in files[k]) for k in ("keys", "bass")])
            np.testing.assert_allclose(song.load_stems(start, frames or song.num_frames).numpy(), ref, atol=2e-6)
            np.testing.assert_allclose(song.load_mixture(start, frames or song.num_frames).numpy(), ref.sum(0),
                                       atol=2e-6)
    with pytest.raises(ValueError, match="one sample rate"):
        add_audio(np.zeros((2, 10), np.float32), [t for s in song.stems for t in s.tracks], 0, 16000)


def test_resampled_index_at_16k(tree):
    b = MoisesDB(str(tree), sample_rate=16000).songs[1]
    assert b.num_frames == 16000 and b.load_stems().shape == (2, 2, 16000)


def test_split_is_by_song_and_stable_when_songs_are_added(tree):
    r = str(tree / "moisesdb_v0.1")
    for i in range(20):
        _song(r, f"g{i:02d}", {"bass": [(_tone(500, 60), SR)]})
    db = MoisesDB(str(tree))
    train, valid = db.split("train", valid_fraction=0.3), db.split("valid", valid_fraction=0.3)
    names_t, names_v = {s.name for s in train}, {s.name for s in valid}
    assert not names_t & names_v and names_t | names_v == {s.name for s in db.songs}
    assert 0 < len(valid) < len(db.songs)
    assert {s.name for s in db.split("valid", valid_fraction=0.3)} == names_v  # deterministic
    assert {s.name for s in db.split("valid", valid_fraction=0.3, seed=1)} != names_v
    for i in range(20, 40):
        _song(r, f"g{i:02d}", {"bass": [(_tone(500, 60), SR)]})
    bigger = MoisesDB(str(tree))
    new_valid = {s.name for s in bigger.split("valid", valid_fraction=0.3)}
    assert new_valid & names_t == set() and names_v <= new_valid
    with pytest.raises(ValueError, match="train"):
        db.split("test")


def test_constructor_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        MoisesDB(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="sample_rate"):
        MoisesDB(str(tmp_path), sample_rate=0)
    with pytest.raises(ValueError, match="channels"):
        MoisesDB(str(tmp_path), channels=3)
    assert MoisesDB(str(tmp_path)).songs == []


def test_stems_folder(tmp_path):
    for song, n in (("s1", 3), ("s2", 2)):
        d = tmp_path / song
        d.mkdir()
        for k in range(n):
            sf.write(str(d / f"stem{k}.flac"), _tone(4000 + 100 * k, 200 * (k + 1)).T, SR)
        sf.write(str(d / "mixture.wav"), _tone(4000, 1).T, SR)  # not a stem
    (tmp_path / "s3").mkdir()
    (tmp_path / "s3" / "vocals.wav").write_bytes(b"garbage" * 100)
    (tmp_path / "s4").mkdir()  # no audio
    ds = StemsFolder(str(tmp_path))
    assert [s.name for s in ds.songs] == ["s1", "s2"]
    assert ds.songs[0].stem_names == ["stem0", "stem1", "stem2"]
    x = ds.songs[0].load_stems()
    assert x.shape == (3, 2, 4200)
    torch.testing.assert_close(ds.songs[0].load_mixture(), x.sum(0), rtol=0, atol=1e-6)
    assert {os.path.basename(p) for p, _ in ds.skipped} == {"s3", "s4"}
    assert [s.name for s in StemsFolder(str(tmp_path), max_stems=2).songs] == ["s2"]


def _cli(argv):
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_info(tree, capsys):
    assert _cli(["data", "info", str(tree)]) == 0
    out = capsys.readouterr().out
    assert "MoisesDB" in out and "4 songs" in out and "c-corrupt" in out and "malformed" in out
    assert _cli(["data", "info", str(tree), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["songs"] == 4 and summary["skipped"] == 2  # max_stems=None in info: the 6-stem song counts
    empty = tree / "empty"
    empty.mkdir()
    assert _cli(["data", "info", str(empty)]) == 1
    assert _cli(["data", "info", str(tree / "missing")]) == 2


def test_stems_folder_via_cli_info(tmp_path, capsys):
    d = tmp_path / "song"
    d.mkdir()
    sf.write(str(d / "bass.wav"), _tone(1000, 60).T, SR)
    assert _cli(["data", "info", str(tmp_path)]) == 0
    assert "StemsFolder" in capsys.readouterr().out
    shutil.rmtree(d)
