"""trackformer.data.audio: resampling quality (whole and streamed), partial reads, channel handling, writing
WAV/FLAC/MP3 (whole and streamed, rounded and clipped), PyAV for other formats, errors that name the file."""

import sys

import numpy as np
import pytest
import soundfile as sf

from trackformer.data.audio import (
    AudioFileError,
    AudioWriter,
    StreamResampler,
    audio_info,
    output_subtype,
    read_audio,
    resample,
    write_audio,
)


def _sweep(f0, f1, sr, seconds=2.0):
    t = np.arange(round(seconds * sr)) / sr
    return np.sin(2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / seconds * t * t)).astype(np.float32)


def _db(y, x):
    inner = slice(2000, -2000)  # away from the edges, where the sweep starts and stops abruptly
    return 10 * np.log10(np.mean(y[inner] ** 2) / np.mean(x ** 2))


@pytest.mark.parametrize("sr_in,sr_out", [(44100, 16000), (48000, 22050), (44100, 8000)])
def test_resample_suppresses_aliasing_and_keeps_passband(sr_in, sr_out):
    nyq = sr_out / 2
    above = _sweep(1.15 * nyq, 0.98 * sr_in / 2, sr_in)  # all of it would alias into the new band
    below = _sweep(50, 0.87 * nyq, sr_in)
    ya, yb = resample(above, sr_in, sr_out), resample(below, sr_in, sr_out)
    assert ya.dtype == np.float32 and len(ya) == int(np.ceil(len(above) * sr_out / sr_in))
    assert _db(ya, above) < -60.0  # stated bound: ≥ 60 dB suppression from 1.15 × the new Nyquist
    assert abs(_db(yb, below)) < 0.1  # pass band within 0.1 dB


def test_resample_upsampling_is_a_sine_to_a_sine():
    sr_in, sr_out, f = 16000, 44100, 1000.0
    x = np.sin(2 * np.pi * f * np.arange(16000) / sr_in).astype(np.float32)
    y = resample(x, sr_in, sr_out)
    ref = np.sin(2 * np.pi * f * np.arange(len(y)) / sr_out)
    assert np.abs(y[500:-500] - ref[500:-500]).max() < 3e-3  # pass-band ripple of the Kaiser filter


def test_resample_rejects_bad_rates():
    with pytest.raises(ValueError, match="sr_out"):
        resample(np.zeros(10, np.float32), 44100, 0)
    with pytest.raises(ValueError, match="sr_in"):
        resample(np.zeros(10, np.float32), 44100.0, 16000)


@pytest.mark.parametrize("sr_file,sr_out", [(48000, 44100), (44100, 44100), (22050, 16000)])
def test_partial_read_matches_full_file(tmp_path, sr_file, sr_out):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 20011)).astype(np.float32) * 0.1
    path = str(tmp_path / "a.wav")
    sf.write(path, x.T, sr_file, subtype="FLOAT")
    n = int(np.ceil(20011 * sr_out / sr_file))
    assert read_audio(path, sample_rate=sr_out).shape == (2, n)
    full = read_audio(path, sample_rate=sr_out, frames=n + 100)  # with the filter's ring-out past the end
    for start, frames in [(0, 777), (1234, 4099), (n - 100, 300), (n + 5, 10), (n + 200, 10)]:
        seg = read_audio(path, start=start, frames=frames, sample_rate=sr_out)
        assert seg.shape == (2, frames)
        ref = np.zeros((2, frames), np.float32)
        avail = full[:, start:start + frames]
        ref[:, :avail.shape[1]] = avail
        np.testing.assert_allclose(seg, ref, atol=2e-6)


def test_channels_mono_to_stereo_and_back(tmp_path):
    path = str(tmp_path / "m.flac")
    mono = (np.sin(np.arange(1000) / 7.0) * 0.5).astype(np.float32)
    sf.write(path, mono, 44100)
    st = read_audio(path, channels=2)
    assert st.shape == (2, 1000) and np.array_equal(st[0], st[1])
    np.testing.assert_allclose(st[0], mono, atol=1e-4)  # 16-bit FLAC
    np.testing.assert_array_equal(read_audio(path, channels=1), st[:1])
    with pytest.raises(ValueError, match="channels"):
        read_audio(path, channels=3)


def test_bad_files_raise_audio_file_error_naming_the_path(tmp_path):
    missing = str(tmp_path / "nope.wav")
    with pytest.raises(AudioFileError, match="nope.wav"):
        audio_info(missing)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(AudioFileError, match="corrupt.wav"):
        audio_info(str(corrupt))
    empty = str(tmp_path / "empty.wav")
    sf.write(empty, np.zeros((0, 2), np.float32), 44100)
    with pytest.raises(AudioFileError, match="empty"):
        audio_info(empty)
    six = str(tmp_path / "six.wav")
    sf.write(six, np.zeros((10, 6), np.float32), 44100)
    with pytest.raises(AudioFileError, match="6 channels"):
        audio_info(six)
    nan = str(tmp_path / "nan.wav")
    sf.write(nan, np.array([[0.1, 0.2], [np.nan, 0.0], [0.3, 0.1]], np.float32), 44100, subtype="FLOAT")
    with pytest.raises(AudioFileError, match="NaN"):
        read_audio(nan)
    assert read_audio(nan, start=2).shape == (2, 1)  # only the frames read are checked
    assert issubclass(AudioFileError, ValueError)


def test_write_audio_round_trip_and_shape_check(tmp_path):
    x = (np.random.default_rng(1).uniform(-0.9, 0.9, (2, 501))).astype(np.float32)
    path = str(tmp_path / "w.wav")
    write_audio(path, x, 16000)
    assert audio_info(path).frames == 501 and audio_info(path).sample_rate == 16000
    np.testing.assert_allclose(read_audio(path), x, atol=1 / 32767)
    assert [p.name for p in tmp_path.iterdir()] == ["w.wav"]  # no temp file left
    with pytest.raises(ValueError, match="shape"):
        write_audio(path, x.T, 16000)
    with pytest.raises(ValueError, match="start"):
        read_audio(path, start=-1)


@pytest.mark.parametrize("subtype,ext", [("PCM_16", "wav"), ("PCM_24", "flac"), ("PCM_32", "wav"), ("FLOAT", "wav")])
def test_integer_pcm_fast_path_matches_libsndfile(tmp_path, subtype, ext):
    x = np.random.default_rng(2).uniform(-0.99, 0.99, (3001, 2)).astype(np.float32)
    path = str(tmp_path / f"p.{ext}")
    sf.write(path, x, 44100, subtype=subtype)
    assert audio_info(path).subtype == subtype
    ref = sf.read(path, start=100, stop=2100, dtype="float32")[0].T
    np.testing.assert_allclose(read_audio(path, start=100, frames=2000), ref, rtol=0, atol=1e-7)
    mono = read_audio(path, start=100, frames=2000, channels=1)
    np.testing.assert_allclose(mono[0], ref.mean(0), atol=1e-7)


@pytest.mark.parametrize("sr_in,sr_out", [(44100, 16000), (16000, 44100), (8000, 11025), (48000, 44100)])
@pytest.mark.parametrize("block", [77, 4096, 100_000])
def test_stream_resampler_equals_the_whole_signal_resample(sr_in, sr_out, block):
    x = np.random.default_rng(3).standard_normal((3, 30011)).astype(np.float32)
    stream = StreamResampler(sr_in, sr_out)
    parts, held = [], []
    for i in range(0, x.shape[1], block):
        parts.append(stream.push(x[:, i:i + block]))
        held.append(stream.buffer.shape[-1])
    parts.append(stream.flush())
    np.testing.assert_allclose(np.concatenate(parts, axis=-1), resample(x, sr_in, sr_out), rtol=0, atol=1e-6)
    assert max(held) <= 2 * stream.margin + stream.down + 1  # only what the filter still needs, not the past
    with pytest.raises(ValueError, match="no input"):
        StreamResampler(sr_in, sr_out).flush()


@pytest.mark.parametrize("ext,sample_format,subtype", [
    ("wav", "int16", "PCM_16"), ("wav", "int24", "PCM_24"), ("wav", "float32", "FLOAT"),
    ("flac", "int16", "PCM_16"), ("flac", "int24", "PCM_24"), ("mp3", "int16", "MPEG_LAYER_III"),
])
def test_streamed_writer_in_every_output_format(tmp_path, ext, sample_format, subtype):
    assert output_subtype(ext, sample_format) == subtype
    x = (0.5 * np.sin(np.arange(2 * 44100) * 2 * np.pi * 440 / 44100)).astype(np.float32)[None].repeat(2, 0)
    path = str(tmp_path / f"out.{ext}")
    with AudioWriter(path, 44100, 2, subtype=subtype) as writer:
        for i in range(0, x.shape[1], 10_000):
            writer.write(x[:, i:i + 10_000])
    assert [p.name for p in tmp_path.iterdir()] == [f"out.{ext}"]
    info = sf.info(path)
    assert info.subtype == subtype and info.channels == 2 and info.samplerate == 44100
    y = read_audio(path)
    if ext == "mp3":  # lossy, and the decoder adds a delay: compare levels
        assert abs(np.sqrt(np.mean(y ** 2)) - np.sqrt(np.mean(x ** 2))) < 0.02
    else:
        step = {"int16": 2 ** -15, "int24": 2 ** -23, "float32": 0.0}[sample_format]
        assert np.abs(y - x).max() <= step / 2 + 1e-9  # rounded to the nearest step, not truncated


def test_output_format_errors():
    with pytest.raises(ValueError, match="FLAC cannot hold float32"):
        output_subtype("flac", "float32")
    with pytest.raises(ValueError, match="MP3 has no bit depth"):
        output_subtype("mp3", "int24")
    with pytest.raises(ValueError, match="cannot write .ogg files; output formats: wav, flac, mp3"):
        output_subtype("ogg")


def test_writer_clips_counts_and_leaves_no_partial_file(tmp_path):
    path = str(tmp_path / "loud.wav")
    assert write_audio(path, np.array([[0.5, 1.5, -2.0, 1.0]], np.float32), 8000) == 3
    np.testing.assert_allclose(read_audio(path)[0], [0.5, 1 - 2 ** -15, -1.0, 1 - 2 ** -15])
    assert write_audio(str(tmp_path / "f.wav"), np.array([[1.5]], np.float32), 8000, subtype="FLOAT") == 0
    with pytest.raises(RuntimeError, match="boom"):
        with AudioWriter(str(tmp_path / "partial.wav"), 8000, 1) as writer:
            writer.write(np.zeros((1, 100), np.float32))
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.wav", "loud.wav"]
    with pytest.raises(ValueError, match=r"must be \(1, T\)"):
        with AudioWriter(str(tmp_path / "x.wav"), 8000, 1) as writer:
            writer.write(np.zeros((2, 10), np.float32))
    with pytest.raises(ValueError, match="cannot write .*x.mp3"):
        AudioWriter(str(tmp_path / "x.mp3"), 96000, 2, subtype="MPEG_LAYER_III")  # MP3 has no 96 kHz


def _write_m4a(path, seconds=1.0, rate=44100):
    av = pytest.importorskip("av")
    t = np.arange(round(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.stack([tone, 0.5 * tone]), format="fltp", layout="stereo")
        frame.sample_rate = rate
        for packet in list(stream.encode(frame)) + list(stream.encode(None)):
            container.mux(packet)
    return tone


def test_pyav_reads_what_soundfile_cannot(tmp_path):
    path = tmp_path / "song.m4a"
    tone = _write_m4a(path)
    info = audio_info(str(path))
    assert info.decoder == "pyav" and info.sample_rate == 44100 and info.channels == 2
    assert abs(info.frames - len(tone)) < 4096  # AAC pads to whole frames
    x = read_audio(str(path))
    assert x.shape == (2, info.frames) and x.dtype == np.float32
    rms = np.sqrt(np.mean(x[:, 4096:-4096] ** 2, axis=1))
    np.testing.assert_allclose(rms, [0.3 / np.sqrt(2), 0.15 / np.sqrt(2)], rtol=0.05)
    seg = read_audio(str(path), start=1000, frames=500, sample_rate=16000, channels=1)
    np.testing.assert_allclose(seg, read_audio(str(path), sample_rate=16000, channels=1)[:, 1000:1500], atol=1e-5)
    not_media = tmp_path / "notes.m4a"
    not_media.write_bytes(b"not audio at all" * 100)
    with pytest.raises(AudioFileError, match="cannot read audio file .*notes.m4a: soundfile: .*; PyAV: "):
        audio_info(str(not_media))


def test_without_pyav_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError, as when it is not installed
    m4a = tmp_path / "song.m4a"
    m4a.write_bytes(b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 100)
    with pytest.raises(AudioFileError, match=r"song.m4a: .*soundfile does not read .m4a files: install PyAV "
                                             r"\(pip install av\)"):
        audio_info(str(m4a))
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(AudioFileError, match="cannot read audio file") as err:
        audio_info(str(corrupt))
    assert "PyAV" not in str(err.value)  # a broken WAV is not a missing decoder
