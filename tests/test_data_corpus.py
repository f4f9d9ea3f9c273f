"""Music corpora (trackformer.data.corpus) and Debian's game music (trackformer.data.debian): indexing any folder
of audio files, silence, splits, idempotent re-runs, MusicCorpus songs, segment draws inside non-silent spans,
real/rendered mixing, copyright parsing, refusals and a fetch from a locally built .deb. Tiny generated audio
only, written to tmp_path."""

import argparse
import json
import os
import shutil
import subprocess
import zipfile

import numpy as np
import pytest
import soundfile as sf

from trackformer.data import MixedPairs, MixitPairs, MusicCorpus, Song, debian, index_music
from trackformer.data import corpus as corpus_module
from trackformer.data.cli import add_parser
from trackformer.data.corpus import nonsilent_spans
from trackformer.data.songs import split_of

SR = 8000


def tone(seconds, freq=440.0, sr=SR, amp=0.3, channels=2):
    t = np.arange(round(seconds * sr)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, 1) if channels == 2 else x


def music_folder(root):
    """a/one.ogg (4 s: 1 s tone, 2 s silence, 1 s tone), b/two.wav (3 s mono 16 kHz), b/three.flac, a silent
    file, a corrupt file, a link to one.ogg, a text file."""
    os.makedirs(root / "a")
    os.makedirs(root / "b")
    one = tone(4.0)
    one[SR:3 * SR] = 0
    sf.write(root / "a" / "one.ogg", one, SR)
    sf.write(root / "b" / "two.wav", tone(3.0, 300, sr=16000, channels=1), 16000)
    sf.write(root / "b" / "three.flac", tone(2.0, 500)[:-123], SR)  # not a whole number of 0.1 s windows
    sf.write(root / "b" / "quiet.wav", np.zeros((SR, 2), np.float32), SR)
    (root / "b" / "broken.mp3").write_bytes(b"\x00junk" * 50)
    (root / "b" / "notes.txt").write_text("not audio")
    os.symlink(root / "a" / "one.ogg", root / "b" / "link.ogg")
    return root


def test_nonsilent_spans_bridge_short_gaps_and_drop_clicks():
    x = np.zeros((1, 10 * SR), np.float32)
    x[:, :2 * SR] = 0.1  # 0-2 s
    x[:, int(2.5 * SR):4 * SR] = 0.1  # a 0.5 s gap: bridged
    x[:, 6 * SR:int(6.2 * SR)] = 0.1  # a 0.2 s click: dropped
    x[:, 8 * SR:] = 0.1  # 8-10 s after a 4 s gap
    assert nonsilent_spans(x, SR) == [(0, 4 * SR), (8 * SR, 10 * SR)]
    assert nonsilent_spans(x * 1e-3, SR) == []  # -80 dBFS is silence at the default -60 dBFS
    assert nonsilent_spans(x * 1e-3, SR, silence_db=-90)[0] == (0, 4 * SR)
    assert nonsilent_spans(x[:, :-333], SR)[-1] == (8 * SR, 10 * SR - 333)  # a last, partial window


@pytest.mark.parametrize("src_rate, channels", [(SR, 2), (16000, 1), (11025, 2)])
def test_decoded_blocks_equal_a_whole_file_read(tmp_path, src_rate, channels):
    """Files are decoded block by block (any length in bounded memory); the blocks equal read_audio's whole-file
    decode, resampled and channel-converted."""
    from trackformer.data import audio_info, read_audio
    from trackformer.data.corpus import decoded_blocks

    rng = np.random.default_rng(0)
    sf.write(tmp_path / "x.wav", (0.3 * rng.standard_normal((5 * src_rate + 17, 2))).astype(np.float32), src_rate,
             subtype="FLOAT")
    info = audio_info(str(tmp_path / "x.wav"))
    blocks = list(decoded_blocks(info, SR, channels, block_frames=3001))
    assert len(blocks) > 10
    whole = read_audio(info.path, sample_rate=SR, channels=channels)
    np.testing.assert_allclose(np.concatenate(blocks, axis=1), whole, atol=2e-5)


def test_index_music_songs_spans_splits_copies_and_skips(tmp_path):
    folder = music_folder(tmp_path / "music")
    index = index_music(str(folder), str(tmp_path / "out"), sample_rate=SR, channels=2, progress=False)
    with open(tmp_path / "out" / "index.json") as f:
        assert json.load(f) == index
    songs = {s["name"]: s for s in index["songs"]}
    assert set(songs) == {"a/one.ogg", "b/two.wav", "b/three.flac"}  # the link is the same file as one.ogg
    skipped = {s["path"]: s["reason"] for s in index["skipped"]}
    assert set(skipped) == {"b/quiet.wav", "b/broken.mp3"}
    assert "silent" in skipped["b/quiet.wav"] and "broken.mp3" in skipped["b/broken.mp3"]
    one = songs["a/one.ogg"]
    assert one["duration"] == pytest.approx(4.0, abs=0.01) and one["source_rate"] == SR
    assert len(one["spans"]) == 2 and one["spans"][0][0] == 0.0 and one["spans"][1][1] == pytest.approx(4.0, abs=0.01)
    assert 0.9 <= one["spans"][0][1] <= 1.2 and 2.8 <= one["spans"][1][0] <= 3.1  # the 2 s of silence are out
    assert one["rms_dbfs"] == pytest.approx(20 * np.log10(0.3 / np.sqrt(2)), abs=0.5)
    assert one["peak_dbfs"] == pytest.approx(20 * np.log10(0.3), abs=0.5)
    two = songs["b/two.wav"]
    assert (two["source_rate"], two["source_channels"]) == (16000, 1)
    copy = sf.info(str(tmp_path / "out" / two["audio"]))
    assert (copy.samplerate, copy.channels, copy.frames, copy.subtype) == (SR, 2, 3 * SR, "PCM_16")
    for name, song in songs.items():
        assert song["split"] == split_of(name, valid_fraction=0.1, test_fraction=0.1)


def test_index_music_is_idempotent_and_follows_changes(tmp_path, monkeypatch):
    folder = music_folder(tmp_path / "music")
    out = str(tmp_path / "out")
    first = index_music(str(folder), out, sample_rate=SR, progress=False)
    calls = []
    analyse = corpus_module._analyse
    monkeypatch.setattr(corpus_module, "_analyse", lambda source, name, *a, **k: calls.append(name) or
                        analyse(source, name, *a, **k))
    again = index_music(str(folder), out, sample_rate=SR, progress=False)
    assert calls == ["b/broken.mp3", "b/quiet.wav"]  # only the failures are tried again
    assert again["songs"] == first["songs"]
    sf.write(folder / "b" / "three.flac", tone(5.0, 500), SR)  # changed: decoded again
    old_copy = os.path.join(out, first["songs"][0]["audio"])
    os.unlink(folder / "a" / "one.ogg")  # gone (and its link dangles): leaves the index, its copy is deleted
    calls.clear()
    third = index_music(str(folder), out, sample_rate=SR, progress=False)
    assert "b/three.flac" in calls and {s["name"] for s in third["songs"]} == {"b/two.wav", "b/three.flac"}
    assert next(s for s in third["songs"] if s["name"] == "b/three.flac")["duration"] == pytest.approx(5.0)
    assert not os.path.exists(old_copy)
    with pytest.raises(ValueError, match="sample_rate: 8000 there, 16000 asked"):
        index_music(str(folder), out, sample_rate=16000, progress=False)


def test_index_music_bad_input(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no audio")
    with pytest.raises(ValueError, match="no audio files under"):
        index_music(str(tmp_path / "empty"), str(tmp_path / "out"), progress=False)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        index_music(str(tmp_path / "missing"), str(tmp_path / "out"), progress=False)
    for bad, match in ((dict(sample_format="int8"), "sample_format"), (dict(silence_db=3), "silence_db"),
                       (dict(channels=3), "channels"), (dict(sample_rate=0), "sample_rate")):
        with pytest.raises(ValueError, match=match):
            index_music(str(tmp_path / "empty"), str(tmp_path / "out"), progress=False, **bad)
    (tmp_path / "notacorpus").mkdir()
    (tmp_path / "notacorpus" / "index.json").write_text("{\"something\": 1}")
    with pytest.raises(FileNotFoundError, match="holds no index.json"):
        MusicCorpus(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="not a trackformer music-corpus index"):
        MusicCorpus(str(tmp_path / "notacorpus"))


def test_music_corpus_songs_splits_and_rates(tmp_path):
    folder = tmp_path / "music"
    folder.mkdir()
    for i in range(20):
        sf.write(folder / f"song{i:02d}.wav", tone(1.0 + i / 10, 200 + 20 * i), SR)
    index_music(str(folder), str(tmp_path / "out"), sample_rate=SR, sample_format="float32", progress=False)
    corpus = MusicCorpus(str(tmp_path / "out"), sample_rate=SR, channels=2)
    assert len(corpus) == 20 and all(s.stem_names == ["mixture"] for s in corpus)
    parts = {p: {s.name for s in corpus.split(p)} for p in ("train", "valid", "test")}
    assert sum(map(len, parts.values())) == 20 and not (parts["train"] & parts["valid"]) and parts["train"]
    for part, names in parts.items():
        assert all(split_of(n, valid_fraction=0.1, test_fraction=0.1) == part for n in names)
    song = next(s for s in corpus if s.name == "song05.wav")
    assert song.spans == [(0, song.num_frames)] and song.num_frames == round(1.5 * SR)
    np.testing.assert_allclose(song.load_mixture(100, 400).numpy(), tone(1.5, 300)[100:500].T, atol=1e-4)
    assert song.load_stems().shape == (1, 2, song.num_frames)
    mono = MusicCorpus(str(tmp_path / "out"), sample_rate=4000, channels=1)  # converted on read
    low = next(s for s in mono if s.name == "song05.wav")
    assert low.num_frames == round(1.5 * 4000) and low.spans == [(0, low.num_frames)]
    assert low.load_mixture(0, 4000).shape == (1, 4000)
    summary = corpus.summary()
    assert summary["songs"] == 20 and sum(summary["split_songs"].values()) == 20
    assert summary["nonsilent_hours"] == pytest.approx(summary["hours"], rel=0.05)
    os.unlink(tmp_path / "out" / corpus.index["songs"][0]["audio"])
    assert len(MusicCorpus(str(tmp_path / "out"), sample_rate=SR).skipped) == 1


class SpanSong(Song):
    """Stereo ones inside ``spans`` (frames), zeros elsewhere."""

    def __init__(self, name, frames, spans):
        self.name, self.frames, self.spans, self.on = name, frames, spans, spans
        self.stem_names, self.sample_rate, self.channels = ["mixture"], SR, 2

    @property
    def num_frames(self):
        return self.frames

    def _load(self, start, frames):
        idx = np.arange(start, start + frames)
        inside = np.zeros(frames, bool)
        for a, b in self.on:
            inside |= (idx >= a) & (idx < b)
        return np.broadcast_to(inside.astype(np.float32), (1, 2, frames)).copy()


def test_segments_of_corpus_songs_stay_inside_nonsilent_spans():
    # mostly silence: a segment drawn anywhere would usually be silent, and min_rms=0 accepts any draw
    songs = [SpanSong("a", 60 * SR, [(10 * SR, 12 * SR), (40 * SR, 40 * SR + SR // 2)]),
             SpanSong("b", 30 * SR, [(5 * SR, 30 * SR)])]
    ds = MixitPairs(songs, segment_seconds=1.0, sample_rate=SR, examples_per_epoch=200, seed=0, min_rms=0.0,
                    deterministic=True)
    assert list(ds.lengths) == [2 * SR + SR // 2, 25 * SR]  # weights: the non-silent frames
    short_span = 0
    for i in range(len(ds)):
        for x in (ds[i]["x1"].numpy(), ds[i]["x2"].numpy()):
            assert x[:, 0].min() == 1.0  # every segment starts inside a span
            short_span += bool(x.min() == 0.0)  # only the 0.5 s span leaves the segment's end in silence
    assert 0 < short_span < 60
    with pytest.raises(ValueError, match="spans must be a non-empty list"):
        MixitPairs([SpanSong("c", SR, []), songs[0]], segment_seconds=0.5, sample_rate=SR)
    with pytest.raises(ValueError, match="spans must be"):
        MixitPairs([SpanSong("c", SR, [(0, 2 * SR)]), songs[0]], segment_seconds=0.5, sample_rate=SR)


def test_mixed_pairs_take_real_examples_with_the_given_probability():
    real = [SpanSong(f"r{i}", 4 * SR, [(0, 4 * SR)]) for i in range(3)]
    rendered = [SpanSong(f"s{i}", 4 * SR, [(0, 4 * SR)]) for i in range(3)]
    for s in rendered:
        s.spans = None  # stem-level songs: no spans
    kw = dict(segment_seconds=0.25, sample_rate=SR, examples_per_epoch=400, seed=1, deterministic=True)
    a, b = MixitPairs(real, **kw), MixitPairs(rendered, **kw)
    mixed = MixedPairs(a, b, real_fraction=0.3, seed=5)
    flags = [mixed.is_real(i) for i in range(len(mixed))]
    assert 0.22 < np.mean(flags) < 0.38 and flags == [mixed.is_real(i) for i in range(len(mixed))]
    for i in (flags.index(True), flags.index(False)):
        assert np.array_equal(mixed[i]["x1"].numpy(), (a if flags[i] else b)[i]["x1"].numpy())
    assert not any(MixedPairs(a, b, real_fraction=0.0).is_real(i) for i in range(50))
    assert all(MixedPairs(a, b, real_fraction=1.0).is_real(i) for i in range(50))
    with pytest.raises(ValueError, match="real_fraction"):
        MixedPairs(a, b, real_fraction=1.5)
    with pytest.raises(ValueError, match="same length"):
        MixedPairs(a, MixitPairs(rendered, **{**kw, "examples_per_epoch": 3}), real_fraction=0.5)


# ------------------------------------------------------------------------------------------------ Debian
DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: tiny

Files: *
Copyright: someone
License: GPL-2+

Files: debian/*
License: GPL-2+

Files:
 base/music/special.ogg
 base/music/other.ogg
Copyright: a composer
License: CC-BY-SA-3.0

License: CC-BY-SA-3.0
 The license text.
"""

PLAIN = """This package was debianized by someone.

This program is free software; you can redistribute it and/or modify it under the terms of the GNU General
Public License as published by the Free Software Foundation; either version 2
of the License, or (at your option) any later version.

The fonts are under the MIT license.
"""


def test_copyright_licenses_per_file():
    info = debian.parse_copyright(DEP5)
    assert info["machine_readable"] and info["licenses"] == ["GPL-2+", "CC-BY-SA-3.0"]
    assert debian.license_for("usr/share/games/x/base/music/special.ogg", info) == (
        "CC-BY-SA-3.0", "copyright Files: base/music/special.ogg")
    assert debian.license_for("usr/share/games/x/base/music/plain.ogg", info)[0] == "GPL-2+"
    assert debian.license_for(debian.package_path("usr/share/x/base/0music.pk3.d/music/other.ogg"), info)[0] \
        == "CC-BY-SA-3.0"  # the archive's members sit where the archive is: base/music/other.ogg
    assert debian.package_path("usr/share/x/base/0music.pk3.d/music/other.ogg") == "usr/share/x/base/music/other.ogg"
    plain = debian.parse_copyright(PLAIN)
    assert not plain["machine_readable"] and plain["licenses"] == ["GPL-2+"]
    assert debian.license_for("usr/share/music/a.ogg", plain) == ("GPL-2+", "copyright text (not machine-readable)")
    no_files = debian.parse_copyright(DEP5.replace("Files: *\n", "Files: src/*\n"))
    assert debian.license_for("usr/share/music/a.ogg", no_files)[0] == "GPL-2+ or CC-BY-SA-3.0"


@pytest.mark.parametrize("pkg", ["fretsonfire-songs-muldjord", "fretsonfire-songs-sectoid", "stepmania-songs",
                                 "performous-songs", "python3-music21"])
def test_reserved_packages_are_refused(pkg, tmp_path):
    with pytest.raises(ValueError, match="reserved for independent evaluation"):
        debian.fetch_debian_music(str(tmp_path), packages=["wesnoth-1.16-music", pkg])
    assert not os.listdir(tmp_path)  # refused before anything is fetched


def test_missing_apt_get_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "fetch-debian-music", str(tmp_path / "cache"), "--packages", "ufoai-music"])
    assert args.func(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "apt-get is not available" in err and "render-songs" in err


def _build_deb(tmp_path, pkg):
    """A tiny .deb: two songs in a music folder, a sound effect, a .pk3 with one song, a DEP-5 copyright."""
    root = tmp_path / "build" / pkg
    music = root / "usr/share/games/tiny/base/music"
    music.mkdir(parents=True)
    sf.write(music / "special.ogg", tone(2.0, 330), SR)
    sf.write(music / "plain.ogg", tone(3.0, 440), SR)
    (root / "usr/share/games/tiny/sounds").mkdir()
    sf.write(root / "usr/share/games/tiny/sounds/click.ogg", tone(0.5, 1000), SR)  # not music
    sf.write(tmp_path / "member.ogg", tone(1.5, 550), SR)
    with zipfile.ZipFile(root / "usr/share/games/tiny/base/0music.pk3", "w") as z:
        z.write(tmp_path / "member.ogg", "music/other.ogg")
        z.writestr("maps/readme.txt", "not audio")
    (root / "usr/share/doc" / pkg).mkdir(parents=True)
    (root / "usr/share/doc" / pkg / "copyright").write_text(DEP5)
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN/control").write_text(f"Package: {pkg}\nVersion: 1.0-1\nArchitecture: all\n"
                                         "Maintainer: nobody <nobody@example.org>\nDescription: test music\n")
    debs = tmp_path / "debs"
    debs.mkdir()
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(debs / f"{pkg}_1.0-1_all.deb")],
                   check=True, capture_output=True)
    return debs


@pytest.mark.skipif(shutil.which("dpkg-deb") is None or shutil.which("dpkg") is None, reason="needs dpkg")
def test_fetch_debian_music_from_local_debs(tmp_path, capsys):
    debs = _build_deb(tmp_path, "tiny-music")
    cache = tmp_path / "cache"
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "fetch-debian-music", str(cache), "--packages", "tiny-music", "--debs",
                              str(debs), "--sample-rate", str(SR), "--no-progress"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "tiny-music: 3 files" in out and "3 songs" in out
    with open(cache / "manifest.json") as f:
        manifest = json.load(f)
    files = {f["package_path"]: f for f in manifest["files"]}
    assert set(files) == {"usr/share/games/tiny/base/music/special.ogg", "usr/share/games/tiny/base/music/plain.ogg",
                          "usr/share/games/tiny/base/music/other.ogg"}  # no sound effect, the .pk3's song
    assert files["usr/share/games/tiny/base/music/special.ogg"]["license"] == "CC-BY-SA-3.0"
    assert files["usr/share/games/tiny/base/music/plain.ogg"]["license"] == "GPL-2+"
    assert files["usr/share/games/tiny/base/music/other.ogg"]["license"] == "CC-BY-SA-3.0"
    assert all(f["split"] in ("train", "valid", "test") and f["duration"] > 1 for f in files.values())
    assert manifest["packages"]["tiny-music"]["hours"] == pytest.approx(6.5 / 3600, rel=0.01)
    corpus = MusicCorpus(str(cache / "corpus"), sample_rate=SR)
    assert len(corpus) == 3 and {s.meta["package"] for s in corpus} == {"tiny-music"}
    assert args.func(args) == 0  # again: nothing is downloaded, unpacked or decoded a second time


def test_index_music_cli_exit_codes(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    (tmp_path / "empty").mkdir()
    args = parser.parse_args(["data", "index-music", str(tmp_path / "empty"), str(tmp_path / "out")])
    assert args.func(args) == 2 and "no audio files under" in capsys.readouterr().err
    folder = music_folder(tmp_path / "music")
    args = parser.parse_args(["data", "index-music", str(folder), str(tmp_path / "out"), "--sample-rate", "8000",
                              "--no-progress"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "3 songs" in out and "2 skipped" in out and "skipped b/quiet.wav: silent" in out
    args = parser.parse_args(["data", "info", str(tmp_path / "out"), "--json"])
    assert args.func(args) == 0 and json.loads(capsys.readouterr().out)["layout"] == "MusicCorpus"


def test_audio_folder_reads_every_recording_as_one_stem_song(tmp_path):
    """AudioFolder: no index; each file a one-stem song named by its relative path, converted on read; a file
    that is not audio is listed in ``skipped`` with its reason."""
    rng = np.random.default_rng(3)
    (tmp_path / "a").mkdir()
    stereo = (0.1 * rng.standard_normal((16000, 2))).astype(np.float32)
    sf.write(str(tmp_path / "a" / "one.wav"), stereo, 16000)
    sf.write(str(tmp_path / "two.ogg"), stereo[:8000, 0], 16000)
    (tmp_path / "broken.wav").write_bytes(b"not audio")
    folder = corpus_module.AudioFolder(str(tmp_path), sample_rate=8000, channels=1)
    assert sorted(s.name for s in folder.songs) == ["a/one.wav", "two.ogg"]
    assert [os.path.basename(p) for p, _ in folder.skipped] == ["broken.wav"]
    song = next(s for s in folder.songs if s.name == "a/one.wav")
    assert song.stem_names == ["mixture"] and song.num_frames == 8000
    mono = song.load_mixture()
    assert mono.shape == (1, 8000) and np.isfinite(mono.numpy()).all()
