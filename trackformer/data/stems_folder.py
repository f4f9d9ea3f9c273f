"""A plain stems folder: one sub-folder per song, one audio file per stem (the file name is the stem name).

    <root>/<song>/<stem>.wav|flac|ogg|mp3|aiff

A file named ``mixture.*`` is not a stem (MUSDB-style folders ship one) and is ignored: the mixture is always the
sum of the stems. Hidden entries are ignored.
"""

import os

from trackformer.data.audio import AUDIO_EXTENSIONS, AudioFileError, audio_info
from trackformer.data.songs import FileSong, SongCollection, Stem


class StemsFolder(SongCollection):
    """Index of a stems folder; same interface as :class:`~trackformer.data.MoisesDB` (``songs``, ``skipped``,
    ``split``, ``summary``). A song with an unreadable stem file is skipped whole, with the file and reason."""

    def __init__(self, root: str, *, sample_rate: int = 44100, channels: int = 2, max_stems: int | None = 4):
        self._index_settings(root, "stems folder", sample_rate=sample_rate, channels=channels, max_stems=max_stems)
        self.root = root
        for entry in sorted(os.listdir(root)):
            folder = os.path.join(root, entry)
            if entry.startswith(".") or not os.path.isdir(folder):
                continue
            files = sorted(f for f in os.listdir(folder) if not f.startswith(".")
                           and os.path.splitext(f)[1].lower() in AUDIO_EXTENSIONS
                           and os.path.splitext(f)[0].lower() != "mixture")
            if not files:
                self._skip(folder, "no stem audio files")
                continue
            names = [os.path.splitext(f)[0] for f in files]
            if len(set(names)) < len(names):
                self._skip(folder, f"two files for the same stem name: {files}")
                continue
            try:
                stems = [Stem(os.path.splitext(f)[0], (audio_info(os.path.join(folder, f)),)) for f in files]
            except AudioFileError as e:
                self._skip(folder, str(e))
                continue
            if max_stems is not None and len(stems) > max_stems:
                self._skip(folder, f"{len(stems)} stems > max_stems={max_stems}", error=False)
                continue
            self.songs.append(FileSong(entry, stems, sample_rate=self.sample_rate, channels=self.channels,
                                       path=folder))
