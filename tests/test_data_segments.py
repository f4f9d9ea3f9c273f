"""MixitPairs and make_loader: lengths, different songs, determinism, energy-awareness, bad files, batching."""

import logging
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from trackformer.data import MixitPairs, MoisesDB, Song, SyntheticMusic, make_loader, write_song


class TagSong(Song):
    """Stems filled with the constant ``tag`` (a song identifies itself in every sample), silent outside
    [quiet_until, end)."""

    def __init__(self, tag, frames, *, stems=2, sample_rate=8000, channels=2, quiet_until=0):
        self.name, self.tag, self.frames, self.quiet_until = f"tag{tag}", tag, frames, quiet_until
        self.stem_names = [f"s{k}" for k in range(stems)]
        self.sample_rate, self.channels = sample_rate, channels
        self.loads = []

    @property
    def num_frames(self):
        return self.frames

    def _load(self, start, frames):
        self.loads.append((start, frames))
        out = np.zeros((len(self.stem_names), self.channels, frames), np.float32)
        idx = np.arange(start, start + frames)
        out[..., (idx >= self.quiet_until) & (idx < self.frames)] = self.tag / 100
        return out


def _songs(n=6, frames=40000, **kw):
    return [TagSong(i + 1, frames + 1000 * i, **kw) for i in range(n)]


@pytest.mark.parametrize("seconds", [3, 5, 10, 30, 2.75])
def test_segment_length_rate_and_different_songs(seconds):
    songs = _songs(frames=8000 * 31)
    ds = MixitPairs(songs, segment_seconds=seconds, sample_rate=8000, examples_per_epoch=12, seed=3)
    for i in range(len(ds)):
        item = ds[i]
        assert set(item) == {"x1", "x2"}
        assert item["x1"].shape == item["x2"].shape == (2, round(seconds * 8000))
        assert item["x1"].dtype == torch.float32
        x1, x2 = item["x1"].numpy(), item["x2"].numpy()  # numpy: torch's threads crawl on a loaded 2-core box
        assert (x1 == x1[0, 0]).all() and (x2 == x2[0, 0]).all()  # one song each
        assert x1[0, 0] != x2[0, 0]  # from different songs


def test_stems_outputs_and_padding():
    songs = [TagSong(1, 20000, stems=3), TagSong(2, 20000, stems=1), TagSong(3, 20000, stems=4)]
    ds = MixitPairs(songs, segment_seconds=1.5, sample_rate=8000, examples_per_epoch=20, seed=0, return_stems=True,
                    random_gain_db=(-12, 0))
    seen = set()
    for i in range(len(ds)):
        it = ds[i]
        for j in (1, 2):
            stems, k = it[f"stems{j}"], it[f"n_stems{j}"]
            assert stems.shape == (4, 2, 12000) and isinstance(k, int)
            assert torch.equal(stems.sum(0), it[f"x{j}"])  # exactly the mixture
            assert stems[k:].abs().sum() == 0 and (stems[:k].abs().amin(dim=(1, 2)) > 0).all()
            seen.add(k)
            tag = {3: 0.01, 1: 0.02, 4: 0.03}[k]  # the song with k stems has constant stems = its tag
            assert 10 ** (-12 / 20) * tag - 1e-7 <= stems[0, 0, 0].item() <= tag + 1e-7  # gain in [-12, 0] dB
    assert seen == {1, 3, 4}


def test_mixture_fast_path_matches_the_sum_of_stems(tmp_path):
    """Without return_stems, file songs sum every track into one buffer; the items must match the stems path."""
    for song in SyntheticMusic(3, seconds=2, sample_rate=8000, seed=4):
        write_song(str(tmp_path), song.name, dict(zip(song.stem_names, song.load_stems().numpy())), 8000)
    songs = MoisesDB(str(tmp_path), sample_rate=8000).songs
    kw = dict(segment_seconds=0.7, sample_rate=8000, examples_per_epoch=4, seed=2, deterministic=True,
              random_gain_db=(-6, 0))
    fast, full = MixitPairs(songs, **kw), MixitPairs(songs, return_stems=True, **kw)
    for i in range(4):
        a, b = fast[i], full[i]
        for key in ("x1", "x2"):
            np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=0, atol=1e-6)


def test_deterministic_items_are_the_same_every_epoch_and_random_ones_are_not():
    songs = _songs()
    val = MixitPairs(songs, segment_seconds=0.5, sample_rate=8000, examples_per_epoch=8, seed=1, deterministic=True)
    first = [val[i] for i in range(8)]
    torch.manual_seed(123)  # the global RNG does not matter in deterministic mode
    again = [val[i] for i in range(8)]
    for a, b in zip(first, again):
        assert torch.equal(a["x1"], b["x1"]) and torch.equal(a["x2"], b["x2"])
    train = MixitPairs(songs, segment_seconds=0.5, sample_rate=8000, examples_per_epoch=8, seed=1)
    e1 = [train[i]["x1"] for i in range(8)]
    e2 = [train[i]["x1"] for i in range(8)]
    assert any(not torch.equal(a, b) for a, b in zip(e1, e2))
    for s in songs:  # starts vary too, not just songs
        assert len({start for start, _ in s.loads}) > 1


def test_energy_aware_skips_silence_and_never_hangs(caplog):
    # songs silent except their last 4000 frames: a random 0.25 s segment is usually silent
    songs = [TagSong(i + 1, 40000, quiet_until=36000) for i in range(4)]
    ds = MixitPairs(songs, segment_seconds=0.25, sample_rate=8000, examples_per_epoch=30, seed=0, min_rms=1e-3,
                    max_tries=40)
    loud = sum(float(ds[i]["x1"].square().mean().sqrt()) >= 1e-3 for i in range(30))
    assert loud >= 27  # a few may still fall back after 40 tries; without the check about 12 % would be loud
    silent = [TagSong(i + 1, 40000, quiet_until=40000) for i in range(3)]
    ds = MixitPairs(silent, segment_seconds=0.25, sample_rate=8000, examples_per_epoch=2, seed=0, max_tries=5)
    with caplog.at_level(logging.INFO, logger="trackformer.data"):
        item = ds[0]
    assert item["x1"].abs().max() == 0 and "min_rms" in caplog.text
    assert sum(len(s.loads) for s in silent) == 10  # bounded: 5 tries per segment


def test_bad_file_during_loading_is_dropped_and_logged(tmp_path, caplog):
    root = tmp_path / "db"
    for i in range(3):
        d = root / f"song{i}" / "bass"
        d.mkdir(parents=True)
        sf.write(str(d / "t.wav"), np.full((16000, 2), 0.1 * (i + 1), np.float32), 8000, subtype="FLOAT")
        (root / f"song{i}" / "data.json").write_text(
            '{"stems": [{"stemName": "bass", "tracks": [{"id": "t", "extension": "wav"}]}]}')
    db = MoisesDB(str(root), sample_rate=8000)
    assert len(db.songs) == 3
    (root / "song1" / "bass" / "t.wav").write_bytes(b"corrupted after indexing" * 100)
    ds = MixitPairs(db.songs, segment_seconds=0.5, sample_rate=8000, examples_per_epoch=20, seed=0)
    with caplog.at_level(logging.WARNING, logger="trackformer.data"):
        items = [ds[i] for i in range(20)]
    assert ds.bad == {1} and "song1" in caplog.text and "t.wav" in caplog.text
    for it in items:
        assert {round(it["x1"][0, 0].item(), 4), round(it["x2"][0, 0].item(), 4)} == {0.1, 0.3}
    os.remove(root / "song0" / "bass" / "t.wav")
    ds = MixitPairs(db.songs, segment_seconds=0.5, sample_rate=8000, examples_per_epoch=2, seed=0)
    with pytest.raises(RuntimeError, match="no usable song"):
        ds[0]


def test_non_finite_song_is_dropped_not_looped_on(caplog):
    class NanSong(TagSong):
        def _load(self, start, frames):
            return np.full((2, self.channels, frames), np.nan, np.float32)

    songs = [TagSong(1, 40000), NanSong(2, 40000), TagSong(3, 40000)]
    ds = MixitPairs(songs, segment_seconds=0.5, sample_rate=8000, examples_per_epoch=10, seed=0)
    with caplog.at_level(logging.WARNING, logger="trackformer.data"):
        items = [ds[i] for i in range(10)]
    assert ds.bad == {1} and "tag2" in caplog.text
    assert all(np.isfinite(it["x1"].numpy()).all() and np.isfinite(it["x2"].numpy()).all() for it in items)


def test_input_validation():
    songs = _songs(2)
    with pytest.raises(ValueError, match="at least 2 songs"):
        MixitPairs(songs[:1], segment_seconds=1, sample_rate=8000)
    with pytest.raises(ValueError, match="Hz"):
        MixitPairs(songs, segment_seconds=1, sample_rate=16000)
    with pytest.raises(ValueError, match="segment_seconds"):
        MixitPairs(songs, segment_seconds=0, sample_rate=8000)
    with pytest.raises(ValueError, match="seed"):
        MixitPairs(songs, segment_seconds=1, sample_rate=8000, seed=-1)
    with pytest.raises(ValueError, match="random_gain_db"):
        MixitPairs(songs, segment_seconds=1, sample_rate=8000, random_gain_db=(0, -6))
    with pytest.raises(ValueError, match="max_stems"):
        MixitPairs([TagSong(1, 100, stems=5), TagSong(2, 100)], segment_seconds=1, sample_rate=8000,
                   return_stems=True)
    ds = MixitPairs(songs, segment_seconds=1, sample_rate=8000, examples_per_epoch=3)
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(ds, batch_size=0)


def test_loader_two_workers_batches_and_epochs():
    music = SyntheticMusic(5, seconds=3, sample_rate=8000, seed=0)
    ds = MixitPairs(music.songs, segment_seconds=1.0, sample_rate=8000, examples_per_epoch=10, seed=0,
                    return_stems=True)
    loader = make_loader(ds, batch_size=4, workers=2, seed=0)
    epochs = []
    for _ in range(2):
        batches = list(loader)
        assert [b["x1"].shape[0] for b in batches] == [4, 4, 2]
        b = batches[0]
        assert b["x1"].shape == b["x2"].shape == (4, 2, 8000) and b["x1"].dtype == torch.float32
        assert b["stems1"].shape == (4, 4, 2, 8000) and b["n_stems1"].tolist() == [4] * 4
        epochs.append(torch.cat([b["x1"] for b in batches]))
    assert not torch.equal(epochs[0], epochs[1])  # fresh draws each epoch
    # same seed, fresh loader → the same first epoch (reproducible training)
    torch.testing.assert_close(torch.cat([b["x1"] for b in make_loader(ds, batch_size=4, workers=2, seed=0)]),
                               epochs[0], rtol=0, atol=0)


def test_distributed_loader_shards(tmp_path):
    import torch.distributed as dist

    if not dist.is_initialized():
        with pytest.raises(ValueError, match="init_process_group"):
            make_loader(MixitPairs(_songs(2), segment_seconds=0.1, sample_rate=8000), distributed=True)
    owner = not dist.is_initialized()  # another test may hold the default group; then use it as it is
    if owner:
        dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        ds = MixitPairs(_songs(3), segment_seconds=0.1, sample_rate=8000, examples_per_epoch=6, deterministic=True)
        loader = make_loader(ds, batch_size=2, workers=0, distributed=True, shuffle=False)
        assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)
        assert sum(b["x1"].shape[0] for b in loader) == 6 // dist.get_world_size()
        assert all(b["x1"].shape[1:] == (2, 800) for b in loader)
    finally:
        if owner:
            dist.destroy_process_group()


def test_stem_subsets_and_gains_augment_only_what_is_summed():
    songs = SyntheticMusic(4, seconds=4.0, sample_rate=8000, channels=1).songs
    plain = MixitPairs(songs, segment_seconds=1.0, sample_rate=8000, channels=1, examples_per_epoch=20,
                       return_stems=True, deterministic=True)
    subset = MixitPairs(songs, segment_seconds=1.0, sample_rate=8000, channels=1, examples_per_epoch=20,
                        return_stems=True, deterministic=True, stems_per_mixture=2, stem_gain_db=(-6.0, 6.0))
    counts = []
    for i in range(20):
        item = subset[i]
        for j in (1, 2):
            k = item[f"n_stems{j}"]
            counts.append(k)
            torch.testing.assert_close(item[f"stems{j}"][:k].sum(0), item[f"x{j}"])  # x is the sum of its stems
            assert not item[f"stems{j}"][k:].any()
    assert set(counts) == {1, 2} and max(plain[i]["n_stems1"] for i in range(20)) == 4
    with pytest.raises(ValueError, match="stems_per_mixture"):
        MixitPairs(songs, segment_seconds=1.0, sample_rate=8000, channels=1, stems_per_mixture=0)
    with pytest.raises(ValueError, match="stem_gain_db"):
        MixitPairs(songs, segment_seconds=1.0, sample_rate=8000, channels=1, stem_gain_db=(3.0, -3.0))
