"""Clustering quality through Kafka, as a user sees it: real sounds through `fms worker` with default settings.

quality.py learns its streams in process. This runs the held-out check's way instead: one
`fms worker` (default settings, fresh state, its own topics) on a real broker, each stream published
to `fms.audio-features` as one space, and the recognitions read back from `fms.recognitions`. Per
stream it reports:

- `ari_raw`: ARI of the pattern ids exactly as the recognitions named them, what a consumer that
  reads only the contract's fields sees;
- `ari`: the same ids after following the merges announced on `fms.patterns` (a `merged` record's
  `absorbed` ids, README), what quality.py calls `ari`; `ari_merged_into`: relabelled instead by
  `GET /patterns/<space>`'s `merged_into`, as a consumer that comes after compaction would;
- `same_as_in_process`: whether every recognition names the id that `SpaceMemory.learn_one` gives the
  same record in process (with the record's `ts`), which is what makes quality.py's figures the
  worker's.

Streams: by default the rehearsal of the held-out check, real_sounds.py's `kids` set (nothing was
tuned on it), log-mel and log-mel standardized per dimension, the held-out check's two features.

    python benchmarks/kafka_quality.py [--streams real_kids_logmel,real_kids_logmel_std] [--seeds 7,8]

Uses KAFKA_BOOTSTRAP_SERVERS when set, otherwise starts a private local broker as the tests do.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
import time
import urllib.request
from pathlib import Path

from common import broker, free_port, save  # noqa: E402  (sets sys.path)
from real_sounds import by_name
from throughput import worker_env
from schemas.codec import decode, decode_json
from schemas.records import AudioFeature
from streams.core.patterns import PatternConfig, SpaceMemory
from streams.core.quality import adjusted_rand_index
from streams.ops.publish import publish, read_topic
from streams.ops.worker_process import WorkerProcess
from streams.service.settings import Settings
from streams.service.topics import delete_topics, ensure_topics, topic_specs

DEFAULT_STREAMS = ("real_kids_logmel", "real_kids_logmel_std")
T0 = 1_796_000_000.0


def merges(patterns: list[tuple[str, bytes | None]]) -> dict[tuple[str, str], str]:
    """(space, absorbed id) -> the id that absorbed it, from `merged` records of fms.patterns."""
    into = {}
    for _, raw in patterns:
        if raw is None:
            continue
        record = decode_json(raw)
        for absorbed in record.get("absorbed") or ():
            into[(record["space"], absorbed)] = record["pattern_id"]
    return into


def survivor(into: dict[tuple[str, str], str], space: str, pattern_id: str) -> str:
    while (space, pattern_id) in into:
        pattern_id = into[(space, pattern_id)]
    return pattern_id


def served_merges(url: str, space: str) -> dict[str, str]:
    """`GET /patterns/<space>`'s `merged_into`: each absorbed id to the live pattern it stands for."""
    with urllib.request.urlopen(f"{url}/patterns/{space}", timeout=10) as reply:
        return decode_json(reply.read())["merged_into"]


async def run(bootstrap: str, names: list[str], seeds: list[int]) -> dict:
    run_id = f"kq{int(time.time())}"
    settings = dataclasses.replace(Settings.from_env(), bootstrap_servers=bootstrap, topic_prefix=f"{run_id}.",
                                   app_id=f"fms-{run_id}")
    workdir = Path(tempfile.mkdtemp(prefix=f"fms-{run_id}-"))
    worker = WorkerProcess({**worker_env(settings, bootstrap), "FMS_DATA_DIR": str(workdir / "state")},
                           workdir / "worker.log", web_port=free_port())
    streams = []
    for name in names:
        for seed in seeds:
            x, y, desc = by_name(name, seed)
            space = f"{name.removeprefix('real_')}-{seed}".replace("_", "-")
            feats = [AudioFeature(id=f"{space}-{i}", space=space, vector=x[i], model_id="kafka-quality",
                                  ts=T0 + i * 0.01, meta=None) for i in range(len(y))]
            streams.append((f"{name}_seed{seed}", desc, space, feats, y.tolist()))
    try:
        await ensure_topics(settings)
        await asyncio.to_thread(worker.start)
        total = sum(len(s[3]) for s in streams)
        started = time.perf_counter()
        for _, _, _, feats, _ in streams:
            await publish(settings, settings.topic("audio-features"), feats)
        recognitions = await read_topic(settings, settings.topic("recognitions"), count=total, timeout=600)
        elapsed = time.perf_counter() - started
        # Pattern events go out at each space's commit: wait until every space has committed.
        await asyncio.sleep(2 * settings.commit_interval_s + 2)
        into = merges(await read_topic(settings, settings.topic("patterns")))
        served = {space: await asyncio.to_thread(served_merges, worker.url, space) for _, _, space, _, _ in streams}
    finally:
        worker.stop()
        await delete_topics(settings, [s.name for s in topic_specs(settings)] + [
            f"{settings.app_id}-memory-changelog", f"{settings.app_id}-__assignor-__leader"])
    by_event = {}
    for _, raw in recognitions:
        record = decode("recognitions", raw).record
        by_event.setdefault(record.event_id, record)  # a redelivered one is identical but for ts
    out = []
    for stream, desc, space, feats, truth in streams:
        named = [by_event[f.id].pattern_id for f in feats]
        memory = SpaceMemory(space, PatternConfig())
        in_process = [memory.learn_one(f.id, f.vector, f.ts).pattern_id for f in feats]
        resolved = [survivor(into, space, p) for p in named]
        relabelled = [served[space].get(p, p) for p in named]
        row = {"stream": stream, "description": desc, "space": space, "records": len(feats),
               "ari_raw": round(adjusted_rand_index(truth, named), 4),
               "ari": round(adjusted_rand_index(truth, resolved), 4),
               "ari_merged_into": round(adjusted_rand_index(truth, relabelled), 4),
               "ari_in_process": round(adjusted_rand_index(truth, [memory.resolve(p) or p for p in in_process]), 4),
               "patterns_named": len(set(named)), "patterns_after_merges": len(set(resolved)),
               "same_as_in_process": named == in_process}
        out.append(row)
        print(f"{stream:32s} raw ARI {row['ari_raw']:.3f}  following merges {row['ari']:.3f}  "
              f"relabelled by merged_into {row['ari_merged_into']:.3f}  "
              f"(in process {row['ari_in_process']:.3f})  ids as in process: {row['same_as_in_process']}", flush=True)
    return {"elapsed_s": round(elapsed, 1), "records": total, "streams": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", default=",".join(DEFAULT_STREAMS), help="real_sounds.py stream names")
    ap.add_argument("--seeds", default="7,8,9,10")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    names = [n for n in args.streams.split(",") if n]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    with broker() as bootstrap:
        results = asyncio.run(run(bootstrap, names, seeds))
    if not args.no_save:
        save("kafka_quality", {"settings": "fms worker defaults (calibrated spaces)", **results})


if __name__ == "__main__":
    main()
