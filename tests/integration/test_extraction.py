"""The extraction stage end to end through a real broker: fms.audio -> extraction worker ->
fms.audio-features -> pattern-memory worker -> fms.recognitions, with a tiny wav2vec2 loaded from disk."""
from __future__ import annotations

import asyncio
import base64
import json
import socket
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

pytest.importorskip("torch", reason="the audio extra (torch, transformers) is not installed")

from schemas.codec import decode, encode  # noqa: E402
from schemas.records import Audio  # noqa: E402
from streams.ops.publish import read_topic  # noqa: E402
from streams.service.settings import Settings  # noqa: E402
from streams.service.topics import ensure_topics  # noqa: E402
from streams.ops.worker_process import WorkerProcess  # noqa: E402
from tests.kafka_broker import produce, unique_name  # noqa: E402
from tests.tiny_wav2vec2 import save_tiny_wav2vec2  # noqa: E402

RATE = 16_000
KINDS = ("hum", "hiss", "chirp", "clicks")
REPEATS = 3
MAX_AUDIO_S = 2.0  # a configured limit, below the default, to see that the setting is honoured


def sound(kind: str, variant: int) -> np.ndarray:
    """Half a second of one of four sounds; variants differ in gain and a little background noise."""
    t = np.arange(RATE // 2) / RATE
    if kind == "hum":
        x = np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 440 * t)
    elif kind == "hiss":
        x = np.random.default_rng(99).standard_normal(len(t))
    elif kind == "chirp":
        x = np.sin(2 * np.pi * (1000 * t + 4000 * t**2))
    else:
        x = np.zeros(len(t))
        x[::800] = 1.0
    rng = np.random.default_rng(1000 + variant)
    x = (0.5 + 0.1 * rng.random()) * x / np.abs(x).max() + 0.01 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def as_record(x: np.ndarray, variant: int, *, id: str, space: str, ts: float) -> Audio:
    """Each variant travels in another layout: f32le mono 16 kHz, pcm_s16le stereo, f32le stereo 48 kHz."""
    layout = variant % 3
    if layout == 0:
        return Audio(id=id, space=space, sample_rate=RATE, channels=1, encoding="f32le", data=x.astype("<f4").tobytes(), ts=ts)
    if layout == 1:
        pcm = np.round(np.clip(x, -1, 1) * 32767).astype("<i2")
        return Audio(id=id, space=space, sample_rate=RATE, channels=2, encoding="pcm_s16le",
                     data=np.repeat(pcm[:, None], 2, axis=1).tobytes(), ts=ts)
    up = resample_poly(x, 3, 1).astype("<f4")
    return Audio(id=id, space=space, sample_rate=48_000, channels=2, encoding="f32le",
                 data=np.stack([up, up], axis=1).tobytes(), ts=ts)


def repeated_sounds(space: str) -> list[Audio]:
    return [as_record(sound(kind, rep), rep, id=f"{kind}-{rep}", space=space, ts=1000.0 + 10 * rep + k)
            for rep in range(REPEATS) for k, kind in enumerate(KINDS)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stage:
    """Environments and worker processes of one test module; every worker is stopped at the end."""

    def __init__(self, bootstrap: str, root: Path, model_dir: Path) -> None:
        self.bootstrap, self.root, self.model_dir = bootstrap, root, model_dir
        self.started: list[WorkerProcess] = []

    def env(self) -> dict[str, str]:
        run = unique_name("fms-audio")
        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "FMS_TOPIC_PREFIX": f"{run}.", "FMS_APP_ID": run,
                "FMS_PARTITIONS": "2", "FMS_LOG_LEVEL": "info"}

    def start(self, env: dict[str, str], role: str, model_dir: Path | None = None) -> WorkerProcess:
        port = free_port()
        extra = {"FMS_WORKER_ROLE": role, "FMS_DATA_DIR": str(self.root / f"{role}-{port}")}
        if role == "extraction":
            extra.update(FMS_EXTRACT_MODEL=str(model_dir or self.model_dir), FMS_EXTRACT_OFFLINE="1",
                         FMS_EXTRACT_WINDOW_S="0.5", FMS_EXTRACT_HOP_S="0.25", FMS_EXTRACT_THREADS="1",
                         FMS_MAX_AUDIO_S=str(MAX_AUDIO_S))
        worker = WorkerProcess({**env, **extra}, self.root / f"{role}-{port}.log", web_port=port)
        self.started.append(worker)
        return worker.start(180)

    def stop(self) -> None:
        for worker in self.started:
            worker.stop()


@pytest.fixture(scope="module")
def stage(kafka_bootstrap, tmp_path_factory):
    root = tmp_path_factory.mktemp("extraction-stage")
    s = Stage(kafka_bootstrap, root, save_tiny_wav2vec2(root / "tiny-wav2vec2"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def both_roles(stage):
    """One pattern-memory worker and one extraction worker on the same topics. The memory is pinned
    at 0.6: these tests are about extraction, and their spaces hold a dozen records, fewer than a
    calibrating space learns strictly before it chooses its threshold (streams.core.patterns.calibration)."""
    env = {**stage.env(), "FMS_MATCH_THRESHOLD": "0.6"}
    stage.start(env, "pattern-memory")
    extraction = stage.start(env, "extraction")
    return env, extraction


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"], topic_prefix=env["FMS_TOPIC_PREFIX"],
                    app_id=env["FMS_APP_ID"], partitions=int(env["FMS_PARTITIONS"]))


async def read_space(settings: Settings, topic: str, space: str, count: int, timeout: float = 120) -> list:
    """The first `count` records of `topic` that belong to audio space `space` (other tests share the topics).

    Features and recognitions are keyed by `<audio space>|<model space>`, dead letters by the audio's key.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pairs = [(k, v) for k, v in await read_topic(settings, settings.topic(topic), timeout=timeout)
                 if k == space or k.startswith(space + "|")]
        if len(pairs) >= count or loop.time() > deadline:
            assert len(pairs) >= count, f"{topic}: {len(pairs)} records of {space}, wanted {count}"
            return pairs[:count]
        await asyncio.sleep(0.5)


def send_and_read(env: dict[str, str], records: list[tuple[str, bytes]], topics: dict[str, int]) -> dict:
    """Produce (key, value) pairs to fms.audio, then read `count` records of their space from each topic."""
    settings = settings_of(env)
    space = records[0][0]

    async def go():
        await ensure_topics(settings)
        await produce(env["KAFKA_BOOTSTRAP_SERVERS"], settings.topic("audio"), records)
        return {name: await read_space(settings, name, space, count) for name, count in topics.items()}

    return asyncio.run(go())


def features_by_id(pairs) -> dict:
    out = {}
    for key, raw in pairs:
        decoded = decode("audio-features", raw)
        assert decoded.ok, decoded.result.errors
        assert key == decoded.record.space
        out[decoded.record.id] = decoded.record
    return out


def windows_of(duration_s: float) -> int:
    # 0.5 s windows at a 0.25 s hop; a clip of at most one window is one window.
    return 1 if duration_s <= 0.5 else int((duration_s - 0.5) // 0.25) + 1 + (((duration_s - 0.5) % 0.25) > 0)


def test_audio_in_features_and_recognitions_out_and_repeated_sounds_share_a_pattern(both_roles):
    env, extraction = both_roles
    audio = repeated_sounds("room-1")
    out = send_and_read(env, [(a.space, encode(a)) for a in audio],
                        {"audio-features": len(audio), "recognitions": len(audio)})

    features = features_by_id(out["audio-features"])
    assert set(features) == {f"{a.id}#w0" for a in audio}, "one window per half-second clip, named after it"
    model_id = extraction.health()["components"]["model"]["model_id"]
    assert {f.space for f in features.values()} == {f"room-1|wav2vec2:{model_id}:L2:mean"}
    assert {f.model_id for f in features.values()} == {model_id}
    for f in features.values():
        assert f.vector.shape == (32,) and abs(float(np.linalg.norm(f.vector)) - 1) < 1e-5
        assert f.meta["audio_id"] == f.id.split("#")[0] and f.meta["window"] == 0

    recognitions = {}
    for _, raw in out["recognitions"]:
        r = decode("recognitions", raw).record
        recognitions[r.event_id] = r
    assert set(recognitions) == set(features)
    pattern_of = {kind: {recognitions[f"{kind}-{rep}#w0"].pattern_id for rep in range(REPEATS)} for kind in KINDS}
    assert all(len(ids) == 1 for ids in pattern_of.values()), f"each sound is one pattern: {pattern_of}"
    assert len(set.union(*pattern_of.values())) == len(KINDS), "and different sounds are different patterns"
    assert [recognitions[f"{k}-0#w0"].new for k in KINDS] == [True] * len(KINDS)
    assert not any(recognitions[f"{k}-{rep}#w0"].new for k in KINDS for rep in range(1, REPEATS))


def audio_value(**fields) -> bytes:
    base = {"v": 1, "id": "bad", "space": "room-2", "sample_rate": RATE, "channels": 1, "encoding": "f32le",
            "data": base64.b64encode(np.full(800, 0.1, "<f4").tobytes()).decode(), "ts": 1.0}
    base.update(fields)
    return json.dumps(base).encode()


def b64(array: np.ndarray) -> str:
    return base64.b64encode(array.tobytes()).decode()


BAD_AUDIO = {
    "unknown_encoding": audio_value(encoding="mp3"),
    "audio_length_mismatch": audio_value(encoding="pcm_s16le", channels=2, data=b64(np.zeros(3, "<i2"))),
    "audio_empty": audio_value(data=""),
    "audio_too_long": audio_value(sample_rate=8000, data=b64(np.full(int(8000 * (MAX_AUDIO_S + 0.5)), 0.1, "<f4"))),
    "audio_nan": audio_value(data=b64(np.array([0.1, np.nan, 0.2] * 200, "<f4"))),
    "sample_rate_out_of_range": audio_value(sample_rate=4000),
}


def test_bad_audio_is_dead_lettered_with_its_code_and_silence_passes_with_a_warning(both_roles):
    env, _ = both_roles
    good = as_record(sound("hum", 0), 0, id="good", space="room-2", ts=5.0)
    silent = Audio(id="silent", space="room-2", sample_rate=RATE, channels=1, encoding="pcm_s16le",
                   data=np.zeros(RATE // 2, "<i2").tobytes(), ts=6.0)
    records = [("room-2", value) for value in BAD_AUDIO.values()] + [("room-2", encode(silent)), ("room-2", encode(good))]
    out = send_and_read(env, records, {"dead-letter": len(BAD_AUDIO), "audio-features": 2})

    letters = [decode("dead-letter", raw).record for _, raw in out["dead-letter"]]
    assert [letter.errors[0].code for letter in letters] == list(BAD_AUDIO)
    for letter, value in zip(letters, BAD_AUDIO.values()):
        assert letter.topic == settings_of(env).topic("audio")
        assert base64.b64decode(letter.raw) == value[: 64 * 1024]  # the contract keeps at most 64 KiB of it
    assert all(key == "room-2" for key, _ in out["dead-letter"])

    features = features_by_id(out["audio-features"])
    assert set(features) == {"silent#w0", "good#w0"}
    assert features["silent#w0"].meta["warnings"] == ["audio_silent"]
    assert "warnings" not in features["good#w0"].meta


def test_the_same_audio_gives_the_same_vectors_bit_for_bit_in_a_fresh_worker(stage, both_roles):
    # Longer clips than one window, so batching over several windows is part of what must repeat.
    audio = [as_record(np.concatenate([sound(k, 7)] * 3), 7 + i, id=f"long-{k}", space="room-3", ts=50.0 + i)
             for i, k in enumerate(KINDS)]
    values = [(a.space, encode(a)) for a in audio]
    windows = len(audio) * windows_of(1.5)
    first = features_by_id(send_and_read(both_roles[0], values, {"audio-features": windows})["audio-features"])

    env = stage.env()
    stage.start(env, "extraction")
    second = features_by_id(send_and_read(env, values, {"audio-features": windows})["audio-features"])

    assert set(first) == set(second) and len(first) == windows
    for fid, feature in first.items():
        assert feature.vector.tobytes() == second[fid].vector.tobytes(), fid
        assert feature.to_dict() == second[fid].to_dict()


def test_an_inference_failure_dead_letters_the_record_as_processing_failed_and_the_worker_goes_on(stage):
    env = stage.env()
    broken = save_tiny_wav2vec2(stage.root / "nan-wav2vec2", nan_weights=True)
    worker = stage.start(env, "extraction", model_dir=broken)
    audio = [as_record(sound("hum", i), i, id=f"doomed-{i}", space="room-4", ts=float(i)) for i in range(2)]
    out = send_and_read(env, [(a.space, encode(a)) for a in audio], {"dead-letter": 2})

    letters = [decode("dead-letter", raw).record for _, raw in out["dead-letter"]]
    assert [letter.errors[0].code for letter in letters] == ["processing_failed"] * 2
    assert all("InferenceFailed" in letter.errors[0].message and "NaN" in letter.errors[0].message for letter in letters)
    assert [json.loads(base64.b64decode(letter.raw))["id"] for letter in letters] == ["doomed-0", "doomed-1"]
    assert worker.proc.poll() is None, "the worker is still running"


def test_a_missing_model_stops_the_extraction_worker_with_one_clear_error(stage, tmp_path):
    import subprocess
    import sys

    env = {**stage.env(), "FMS_WORKER_ROLE": "extraction", "FMS_EXTRACT_MODEL": str(tmp_path / "no-model"),
           "FMS_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "streams.ops.cli", "worker"], env={**__import__("os").environ, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "no-model" in done.stderr and "FMS_EXTRACT_MODEL" in done.stderr


def test_fms_ingest_publishes_files_and_folders_reports_unreadable_ones_and_features_come_out(both_roles, tmp_path):
    import os
    import subprocess
    import sys

    import soundfile

    env, _ = both_roles
    folder = tmp_path / "recordings"
    (folder / "day-2").mkdir(parents=True)
    soundfile.write(folder / "hum.wav", np.stack([sound("hum", 1)] * 2, axis=1), RATE, subtype="PCM_16")
    soundfile.write(folder / "day-2" / "chirp.flac", sound("chirp", 1), RATE, subtype="PCM_16")
    soundfile.write(folder / "day-2" / "long.ogg", np.concatenate([sound("hiss", 1)] * 6), RATE)  # 3 s: two records
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wav file")

    done = subprocess.run([sys.executable, "-m", "streams.ops.cli", "ingest", str(folder), "--space", "room-5"],
                          env={**os.environ, **env, "FMS_MAX_AUDIO_S": str(MAX_AUDIO_S)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, "a file failed: the command failed, though it sent the others"
    assert "files: 3 read, 1 failed; audio: 4.0 s; records: 4" in done.stdout
    assert "broken.wav" in done.stderr, "reported as it happens, beside the progress bar"
    assert "failed: " in done.stdout and "broken.wav: " in done.stdout, "and in the summary, with the reason"

    # Windows of 0.5 s at a 0.25 s hop: 0.5 s -> 1 each for hum and chirp; the 3 s file as 2 s + 1 s -> 7 + 3.
    pairs = asyncio.run(read_space(settings_of(env), "audio-features", "room-5", 12))
    ids = sorted(features_by_id(pairs))
    assert ids == sorted(["recordings/hum.wav#0#w0", "recordings/day-2/chirp.flac#0#w0"]
                         + [f"recordings/day-2/long.ogg#0#w{i}" for i in range(7)]
                         + [f"recordings/day-2/long.ogg#1#w{i}" for i in range(3)])
