"""`fms ingest`: audio files to fms.audio records, with a progress bar and a summary.

Each file becomes one or more records, in file order. Encoding: 8- and 16-bit PCM go as pcm_s16le
(lossless, half the bytes); everything else (24/32-bit PCM, float, Vorbis, Opus, ...) as f32le.
Mono and stereo stay as they are; more channels are averaged to mono, since the contract carries
one or two. Sample rates are kept: the extractor resamples.

Long files are cut into consecutive records, because each record must fit two limits: the maximum
audio length (FMS_MAX_AUDIO_S, default 30 s, what the extractor accepts) and the record size a
reader accepts (1 MiB of JSON, i.e. about 786 KB of audio once base64 adds its third: 24 s of
16 kHz mono 16-bit, 4.4 s of 44.1 kHz stereo 16-bit). Records do not overlap, so a sound cut by
a record boundary is split between them.

Record ids are ``<path>#<chunk>``, where the path is the file's path below the folder given on the
command line (or its name, for a file given directly), so re-ingesting the same tree gives the same
ids. Every record is checked against the schema before it is sent; a file that cannot be read or
whose records the contract would reject is reported by name with the reason, and the rest go on.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from schemas.codec import encode
from schemas.records import AUDIO_ENCODINGS, Audio, DEFAULT_LIMITS, ValidationLimits
from streams.core.audio import bounded_ident
from streams.ops.publish import publish
from streams.service.settings import Settings
from streams.service.topics import ensure_topics

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga")
_INT16_SUBTYPES = {"PCM_16", "PCM_S8", "PCM_U8"}
# Room for the JSON around the base64 data: field names, ids of up to 128 characters, ts.
_JSON_OVERHEAD = 1024


@dataclass
class IngestSummary:
    files_read: int = 0
    seconds: float = 0.0
    records: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"files: {self.files_read} read, {len(self.failed)} failed; "
                 f"audio: {self.seconds:.1f} s; records: {self.records}"]
        lines += [f"  failed: {path}: {reason}" for path, reason in self.failed]
        return "\n".join(lines)


def audio_files(paths: Iterable[Path]) -> Iterator[tuple[Path, str]]:
    """(file, name for ids) for every audio file named or found below a named folder, sorted per folder."""
    for path in paths:
        if path.is_dir():
            for found in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES):
                yield found, found.relative_to(path.parent).as_posix()
        else:
            yield path, path.name


def chunk_frames(sample_rate: int, channels: int, encoding: str, max_seconds: float,
                 max_record_bytes: int = DEFAULT_LIMITS.max_record_bytes) -> int:
    """Frames per record: within `max_seconds` and, base64 included, within the record size limit."""
    frame_bytes = AUDIO_ENCODINGS[encoding].itemsize * channels
    by_size = (max_record_bytes - _JSON_OVERHEAD) * 3 // 4 // frame_bytes
    by_time = int(max_seconds * sample_rate)
    return max(1, min(by_size, by_time))


def read_audio(path: Path) -> tuple[np.ndarray, int, str]:
    """(frames x channels samples, sample rate, encoding): int16 for low-depth PCM, float32 otherwise."""
    import soundfile

    info = soundfile.info(str(path))
    encoding = "pcm_s16le" if info.subtype in _INT16_SUBTYPES else "f32le"
    data, rate = soundfile.read(str(path), dtype="int16" if encoding == "pcm_s16le" else "float32", always_2d=True)
    if data.shape[1] > 2:
        data = data.mean(axis=1, keepdims=True).astype(data.dtype)
    return data, rate, encoding


def file_records(samples: np.ndarray, sample_rate: int, encoding: str, *, name: str, space: str,
                 max_seconds: float, ts: float, limits: ValidationLimits = DEFAULT_LIMITS) -> list[Audio]:
    """The records of one file; raises ValidationError (the schema's reasons) if any would be rejected."""
    if len(samples) == 0:
        raise ValueError("the file holds no audio")
    channels = samples.shape[1]
    step = chunk_frames(sample_rate, channels, encoding, max_seconds, limits.max_record_bytes)
    dtype = AUDIO_ENCODINGS[encoding]
    check = ValidationLimits(max_dim=None, max_audio_seconds=max_seconds,
                             min_sample_rate=limits.min_sample_rate, max_sample_rate=limits.max_sample_rate)
    records = []
    for n, start in enumerate(range(0, len(samples), step)):
        chunk = samples[start:start + step]
        record = Audio(id=bounded_ident(name, f"#{n}"), space=space, sample_rate=sample_rate, channels=channels,
                       encoding=encoding, data=np.ascontiguousarray(chunk).astype(dtype, copy=False).tobytes(),
                       ts=ts + start / sample_rate)
        encode(record, limits=check)
        records.append(record)
    return records


async def ingest(settings: Settings, paths: list[Path], *, space: str, max_seconds: float,
                 progress: bool = True) -> IngestSummary:
    from tqdm import tqdm

    from schemas.validation import ValidationError

    summary = IngestSummary()
    files = list(audio_files(paths))
    bar = tqdm(files, unit="file", disable=not progress, desc="ingest", file=sys.stderr)

    def records() -> Iterator[Audio]:
        now = time.time()
        for path, name in bar:
            try:
                samples, rate, encoding = read_audio(path)
                recs = file_records(samples, rate, encoding, name=name, space=space,
                                    max_seconds=max_seconds, ts=now)
            except (RuntimeError, OSError, ValueError, ValidationError) as exc:
                # soundfile raises LibsndfileError (a RuntimeError) for unreadable or unknown formats.
                reason = str(exc).strip() or type(exc).__name__
                summary.failed.append((path, reason))
                bar.write(f"cannot ingest {path}: {reason}", file=sys.stderr)
                continue
            summary.files_read += 1
            summary.seconds += len(samples) / rate
            summary.records += len(recs)
            bar.set_postfix(audio_s=round(summary.seconds, 1), records=summary.records)
            yield from recs

    await ensure_topics(settings)
    await publish(settings, settings.topic("audio"), records())
    bar.close()
    return summary
