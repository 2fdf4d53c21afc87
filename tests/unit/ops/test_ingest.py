"""`fms ingest` without a broker: files to fms.audio records."""
from __future__ import annotations

import numpy as np
import pytest

soundfile = pytest.importorskip("soundfile", reason="the audio extra (soundfile) is not installed")

from schemas.codec import decode, encode  # noqa: E402
from schemas.records import DEFAULT_LIMITS  # noqa: E402
from streams.ops.ingest import audio_files, chunk_frames, file_records, read_audio  # noqa: E402


def tone(rate: int, seconds: float, channels: int) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * (300 + 100 * c) * t) for c in range(channels)], axis=1)


@pytest.mark.parametrize("name,subtype,encoding", [
    ("a.wav", "PCM_16", "pcm_s16le"),
    ("b.wav", "PCM_24", "f32le"),
    ("c.wav", "FLOAT", "f32le"),
    ("d.flac", "PCM_16", "pcm_s16le"),
    ("e.ogg", "VORBIS", "f32le"),
])
def test_each_format_reads_with_its_channels_rate_and_the_encoding_that_keeps_it(tmp_path, name, subtype, encoding):
    path = tmp_path / name
    soundfile.write(path, tone(22050, 0.5, 2), 22050, subtype=subtype)
    samples, rate, enc = read_audio(path)
    assert (rate, enc, samples.shape[1]) == (22050, encoding, 2)
    assert abs(len(samples) - 11025) < 1200  # Vorbis may add or trim a few hundred frames


def test_more_than_two_channels_are_mixed_to_mono(tmp_path):
    soundfile.write(tmp_path / "surround.wav", tone(16000, 0.25, 6), 16000, subtype="PCM_16")
    samples, _, _ = read_audio(tmp_path / "surround.wav")
    assert samples.shape == (4000, 1)


def test_long_files_are_cut_within_the_time_limit_and_the_record_size_limit():
    size_bound = chunk_frames(16000, 1, "pcm_s16le", 30.0)
    assert 24 < size_bound / 16000 < 25  # 1 MiB of JSON holds ~24.5 s of 16 kHz mono once base64 adds a third
    assert (size_bound * 2 + 2) // 3 * 4 < DEFAULT_LIMITS.max_record_bytes
    assert chunk_frames(16000, 1, "pcm_s16le", 10.0) == 160000  # time-bound
    assert 2 < chunk_frames(44100, 2, "f32le", 30.0) / 44100 < 2.5  # stereo float: 8 bytes a frame

    samples = (tone(44100, 7.0, 2) * 32767).astype(np.int16)
    records = file_records(samples, 44100, "pcm_s16le", name="dir/long.wav", space="s", max_seconds=30.0, ts=10.0)
    assert [r.id for r in records] == ["dir/long.wav#0", "dir/long.wav#1"]
    assert sum(r.frames for r in records) == len(samples)
    assert records[1].ts == pytest.approx(10.0 + records[0].duration_s)
    for r in records:
        raw = encode(r)
        assert len(raw) <= DEFAULT_LIMITS.max_record_bytes
        assert decode("audio", raw).ok, "a reader with the default limits accepts every record"

    short = file_records(samples, 44100, "pcm_s16le", name="x", space="s", max_seconds=2.0, ts=0.0)
    assert max(r.duration_s for r in short) <= 2.0 and len(short) == 4


def test_a_file_the_contract_would_reject_raises_with_the_reason():
    from schemas.validation import ValidationError

    with pytest.raises(ValidationError, match="sample_rate"):
        file_records(tone(4000, 0.5, 1).astype(np.float32), 4000, "f32le", name="x", space="s", max_seconds=30, ts=0)
    with pytest.raises(ValueError, match="no audio"):
        file_records(np.zeros((0, 1), np.float32), 16000, "f32le", name="x", space="s", max_seconds=30, ts=0)


def test_folders_are_walked_in_order_and_ids_are_paths_below_the_named_folder(tmp_path):
    root = tmp_path / "take"
    (root / "sub").mkdir(parents=True)
    for rel in ("b.wav", "a.flac", "sub/c.ogg", "notes.txt"):
        (root / rel).write_bytes(b"")
    single = tmp_path / "single.wav"
    found = list(audio_files([root, single]))
    assert [name for _, name in found] == ["take/a.flac", "take/b.wav", "take/sub/c.ogg", "single.wav"]
