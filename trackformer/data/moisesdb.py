"""MoisesDB (and anything written in its layout: rendered chorales, synthetic songs).

Layout (shared/DESIGN.md §4)::

    <root>[/moisesdb_v0.1]/<song-uuid>/data.json
    <root>[/moisesdb_v0.1]/<song-uuid>/<stemName>/<track-uuid>.<extension>
    data.json: {"artist", "song", "genre", "stems": [{"stemName", "id", "tracks": [{"id", "extension",
                "trackType", "has_bleed"}]}]}

A folder is a song only if it holds data.json. A stem with several tracks is their sum; the mixture is the sum of
the stems. Only file headers are read when indexing, so building the index is cheap.
"""

import json
import os
import shutil
import uuid

import numpy as np

from trackformer.data.audio import AudioFileError, audio_info, write_audio
from trackformer.data.songs import FileSong, SongCollection, Stem

SUBDIR = "moisesdb_v0.1"
# MUSDB-style grouping of MoisesDB's 11 top-level stems into 4 ("*": every stem no other group names)
MUSDB_GROUPS = {"vocals": ("vocals",), "drums": ("drums", "percussion"), "bass": ("bass",), "other": ("*",)}


class MoisesDB(SongCollection):
    """Index of a MoisesDB-layout tree.

    ``songs``: readable songs with 1..``max_stems`` stems (``max_stems=None``: no limit), sorted by folder name;
    each a :class:`FileSong` named by its folder (the track uuid) with ``meta`` = artist/song/genre.
    ``skipped``: [(path, reason)] for malformed data.json, missing/corrupt/empty audio (the whole song is left
    out: its mixture would be wrong) and songs over ``max_stems``.

    Most real MoisesDB songs have more than 4 stems; ``stem_groups`` (e.g. :data:`MUSDB_GROUPS`) sums stems into
    named groups first ({group: stem names}, ``"*"`` = the stems no group names; groups a song lacks are left
    out), so ``max_stems`` then counts groups.
    """

    def __init__(self, root: str, *, sample_rate: int = 44100, channels: int = 2, max_stems: int | None = 4,
                 stem_groups: dict[str, tuple[str, ...]] | None = None):
        self._index_settings(root, "MoisesDB", sample_rate=sample_rate, channels=channels, max_stems=max_stems)
        self.root = os.path.join(root, SUBDIR) if os.path.isdir(os.path.join(root, SUBDIR)) else root
        self.stem_groups = stem_groups
        for entry in sorted(os.listdir(self.root)):
            folder = os.path.join(self.root, entry)
            if entry.startswith(".") or not os.path.isfile(os.path.join(folder, "data.json")):
                continue
            try:
                song = self._index_song(folder)
            except (AudioFileError, ValueError) as e:
                self._skip(folder, str(e))
                continue
            if max_stems is not None and song.num_stems > max_stems:
                self._skip(folder, f"{song.num_stems} stems > max_stems={max_stems}", error=False)
                continue
            self.songs.append(song)

    def _index_song(self, folder: str) -> FileSong:
        meta_path = os.path.join(folder, "data.json")
        try:
            with open(meta_path, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"malformed data.json ({meta_path}): {e}") from e
        stems = []
        try:
            if not isinstance(meta.get("stems"), list):
                raise TypeError("'stems' is not a list")
            for s in meta["stems"]:
                name = str(s["stemName"])
                tracks = tuple(
                    audio_info(os.path.join(folder, name, f"{t['id']}.{t['extension']}")) for t in s["tracks"])
                if tracks:
                    stems.append(Stem(name, tracks))
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"malformed data.json ({meta_path}): missing or wrong field {e}") from e
        if not stems:
            raise ValueError(f"no stems with audio in {meta_path}")
        if self.stem_groups is not None:
            stems = group_stems(stems, self.stem_groups)
        info = {k: meta.get(k, "") for k in ("artist", "song", "genre")}
        return FileSong(os.path.basename(folder), stems, sample_rate=self.sample_rate, channels=self.channels,
                        path=folder, meta=info)


def group_stems(stems: list[Stem], groups: dict[str, tuple[str, ...]]) -> list[Stem]:
    """Stems summed into ``groups`` ({group: stem names}; ``"*"`` takes every stem no group names), in the
    groups' order; a group without tracks is dropped."""
    named = {n for members in groups.values() for n in members if n != "*"}
    out = []
    for group, members in groups.items():
        tracks = tuple(t for s in stems if s.name in members or ("*" in members and s.name not in named)
                       for t in s.tracks)
        if tracks:
            out.append(Stem(group, tracks))
    return out


def write_song(out_dir: str, song_id: str, stems: dict[str, np.ndarray], sample_rate: int, *,
               artist: str = "", song: str = "", genre: str = "", extra: dict | None = None,
               track_types: dict[str, str] | None = None, commit: bool = True) -> str:
    """Writes one song in the MoisesDB layout under ``out_dir/song_id`` (one 16-bit WAV track per stem, each
    stem (C, T) float in [-1, 1]) and returns its folder.

    Atomic: the song is written to a hidden ``.tmp-*`` folder and renamed, so an interrupted writer leaves no
    half song. ``commit=False`` returns the temp folder instead; :func:`commit_song` publishes it later.
    """
    final = os.path.join(out_dir, song_id)
    tmp = os.path.join(out_dir, f".tmp-{song_id}-{uuid.uuid4().hex[:8]}")
    os.makedirs(tmp)
    try:
        entries = []
        for name, audio in stems.items():
            track_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{song_id}/{name}"))
            os.makedirs(os.path.join(tmp, name))
            write_audio(os.path.join(tmp, name, f"{track_id}.wav"), audio, sample_rate)
            entries.append({"stemName": name, "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{song_id}/{name}/stem")),
                            "tracks": [{"id": track_id, "extension": "wav",
                                        "trackType": (track_types or {}).get(name, name), "has_bleed": False}]})
        meta = {"artist": artist, "song": song, "genre": genre, "stems": entries, **(extra or {})}
        with open(os.path.join(tmp, "data.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not commit:
        return tmp
    commit_song(tmp, final)
    return final


def commit_song(tmp: str, final: str) -> None:
    """Publishes a song folder written with ``write_song(commit=False)``, replacing any older copy."""
    if os.path.isdir(final):
        shutil.rmtree(final)
    os.rename(tmp, final)


def remove_stale_temp(out_dir: str) -> int:
    """Deletes ``.tmp-*`` folders an interrupted :func:`write_song` left in ``out_dir``; returns how many."""
    n = 0
    if os.path.isdir(out_dir):
        for entry in os.listdir(out_dir):
            if entry.startswith(".tmp-") and os.path.isdir(os.path.join(out_dir, entry)):
                shutil.rmtree(os.path.join(out_dir, entry), ignore_errors=True)
                n += 1
    return n
