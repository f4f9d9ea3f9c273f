"""Data for trackformer: songs (MoisesDB, stems folders, rendered chorales, synthetic music, music corpora of
recordings without stems) and MixIT batches.

    from trackformer.data import MoisesDB, StemsFolder, SyntheticMusic, MusicCorpus, MixitPairs, make_loader

Every source yields :class:`Song` objects (``load_stems() -> (K, C, T)``, ``load_mixture() -> (C, T)``, the
mixture being the sum of the stems); :class:`MixitPairs` turns a list of songs into training pairs.
"""

from trackformer.data.audio import AudioFileError, AudioInfo, audio_info, read_audio, resample, write_audio
from trackformer.data.corpus import MusicCorpus, index_music
from trackformer.data.moisesdb import MUSDB_GROUPS, MoisesDB, write_song
from trackformer.data.render import find_fluidsynth, find_soundfont, list_chorales, render_chorales
from trackformer.data.segments import MixedPairs, MixitPairs, make_loader
from trackformer.data.songs import FileSong, Song, SongCollection
from trackformer.data.stems_folder import StemsFolder
from trackformer.data.synth import STEMS as SYNTH_STEMS
from trackformer.data.synth import SyntheticMusic, SynthSong

__all__ = [
    "AudioFileError", "AudioInfo", "FileSong", "MUSDB_GROUPS", "MixedPairs", "MixitPairs", "MoisesDB",
    "MusicCorpus", "SYNTH_STEMS", "Song",
    "SongCollection", "StemsFolder", "SynthSong", "SyntheticMusic", "audio_info", "find_fluidsynth",
    "find_soundfont", "index_music", "list_chorales", "make_loader", "read_audio", "render_chorales", "resample",
    "write_audio", "write_song",
]
