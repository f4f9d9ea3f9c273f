"""Which songs a run trains and validates on (the trainer's song-selection policy)."""

import logging
import os

from trackformer.data import MoisesDB, MusicCorpus, StemsFolder, SyntheticMusic
from trackformer.data.moisesdb import MUSDB_GROUPS
from trackformer.train.config import TrainConfig

log = logging.getLogger("trackformer.train")

VALID_SONGS_SYNTHETIC = 8
MAX_VALID_STEMS = 4  # validation scores at most this many references per song


def select_songs(config: TrainConfig) -> tuple[list, list]:
    """(training songs, validation songs) of ``config``'s data.

    synthetic: ``synthetic_songs`` generated songs for training and 8 others (seed + 1) for validation.
    moisesdb / stems: the collection's by-song train/valid split. Training uses every song (MixIT trains on
    mixtures, whatever their stem count); validation keeps songs with at most 4 stems as they are and, for
    MoisesDB, scores songs with more stems on their MUSDB groups (vocals, drums, bass, other), as most real
    MoisesDB songs need. A stems folder's validation songs with more than 4 stems are left out (with a warning).
    corpus: the corpus's train and valid songs (recordings: validation gives the MixIT loss only).
    """
    if config.data == "synthetic":
        common = dict(seconds=config.synthetic_seconds, sample_rate=config.sample_rate, channels=config.channels)
        train = SyntheticMusic(config.synthetic_songs, seed=config.seed, **common).songs
        valid = SyntheticMusic(VALID_SONGS_SYNTHETIC, seed=config.seed + 1, **common).songs
        return train, valid
    if not os.path.isdir(config.root):
        raise FileNotFoundError(f"data root {config.root!r} (data={config.data!r}) is not a folder")
    options = dict(sample_rate=config.sample_rate, channels=config.channels)
    if config.data == "corpus":
        corpus = _corpus(config.root, "root", config)
        return corpus.split("train"), corpus.split("valid")
    collection_class = MoisesDB if config.data == "moisesdb" else StemsFolder
    collection = collection_class(config.root, max_stems=None, **options)
    train = collection.split("train")
    if len(train) < 2:
        raise ValueError(f"{config.root}: {len(train)} training song(s) found ({len(collection.songs)} in all, "
                         f"{len(collection.skipped)} skipped); MixIT needs at least 2")
    valid = [song for song in collection.split("valid") if song.num_stems <= MAX_VALID_STEMS]
    many = {song.name for song in collection.split("valid") if song.num_stems > MAX_VALID_STEMS}
    if many and collection_class is MoisesDB:
        grouped = MoisesDB(config.root, max_stems=MAX_VALID_STEMS, stem_groups=MUSDB_GROUPS, **options)
        valid += [song for song in grouped.songs if song.name in many]
    elif many:
        log.warning("%d validation song(s) with more than %d stems are left out of validation", len(many),
                    MAX_VALID_STEMS)
    return train, valid


def select_real_songs(config: TrainConfig) -> list:
    """The training songs of ``config.real_root`` (a music corpus mixed into the stem data), or [] without one."""
    if config.real_root is None:
        return []
    if not os.path.isdir(config.real_root):
        raise FileNotFoundError(f"real_root {config.real_root!r} (a music corpus) is not a folder")
    songs = _corpus(config.real_root, "real_root", config).split("train")
    log.info("%.0f%% of the training pairs: %d real recordings (%.1f h) of %s", 100 * config.real_fraction, len(songs),
             sum(s.duration for s in songs) / 3600, config.real_root)
    return songs


def _corpus(root: str, field: str, config: TrainConfig) -> MusicCorpus:
    """The corpus at ``root``; ValueError if it has fewer than 2 training songs."""
    corpus = MusicCorpus(root, sample_rate=config.sample_rate, channels=config.channels)
    if len(corpus.split("train")) < 2:
        raise ValueError(f"{field} {root}: {len(corpus.split('train'))} training song(s) in the music corpus "
                         f"({len(corpus.songs)} in all, {len(corpus.skipped)} skipped); MixIT needs at least 2")
    return corpus
