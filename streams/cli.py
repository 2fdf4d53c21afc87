"""`fms`: run a worker, drive the local broker, publish features, watch topics, run the demo."""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

# Before numpy loads OpenBLAS: matching is one matrix-vector product per record, too small to split
# across threads, and OpenBLAS's spinning threads take the cores the event loop and the Kafka
# client need (measured: a worker drains a backlog about twice as fast with one). torch, in the
# extraction role, sizes its own thread pool (FMS_EXTRACT_THREADS).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from streams.extraction_settings import ROLES, default_role
from streams.settings import Settings

REPO = Path(__file__).resolve().parent.parent
BROKER_SCRIPT = REPO / "infra" / "kafka" / "broker.sh"


def _loop() -> asyncio.AbstractEventLoop:
    # faust and the helpers below share one loop that stays current for the process.
    try:
        loop = asyncio.get_event_loop()
        if not loop.is_closed():
            return loop
    except RuntimeError:
        pass
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop


def cmd_worker(args) -> int:
    if args.web_port is not None:
        os.environ["FMS_WEB_PORT"] = str(args.web_port)
    if args.data_dir is not None:
        os.environ["FMS_DATA_DIR"] = str(args.data_dir)
    settings = Settings.from_env()
    import faust

    from streams.app import create_runtime
    from streams.local_state import close_local_state, open_local_state
    from streams.topics import ensure_topics

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    loop = _loop()
    if args.role == "extraction":
        # Before any broker work: a missing model is a configuration error, said once and plainly.
        from streams.extraction import ModelUnavailable
        from streams.extraction_app import create_extraction_runtime
        from streams.extraction_settings import ExtractionSettings

        try:
            runtime = create_extraction_runtime(settings, ExtractionSettings.from_env())
        except ModelUnavailable as exc:
            print(f"fms worker --role extraction: {exc}", file=sys.stderr)
            return 2
    loop.run_until_complete(ensure_topics(settings))
    if args.role != "extraction":
        open_local_state(settings.data_dir)  # before faust opens RocksDB
        runtime = create_runtime(settings)
    worker = faust.Worker(runtime.app, loglevel=settings.log_level, loop=loop)
    if args.role == "extraction":  # no tables
        worker.execute_from_commandline()
        return 0
    try:
        worker.execute_from_commandline()
    finally:
        close_local_state(settings.data_dir)
    return 0


def cmd_broker(args) -> int:
    if not BROKER_SCRIPT.exists():
        print(f"fms broker needs the repository's infra/ ({BROKER_SCRIPT} not found)", file=sys.stderr)
        return 2
    return subprocess.call(["bash", str(BROKER_SCRIPT), args.action])


def cmd_topics(args) -> int:
    from streams.topics import ensure_topics

    created = _loop().run_until_complete(ensure_topics(Settings.from_env()))
    print("created: " + (", ".join(created) if created else "nothing, all exist"))
    return 0


def cmd_publish(args) -> int:
    from streams.publish import publish_file

    settings = Settings.from_env()
    count = _loop().run_until_complete(
        publish_file(settings, Path(args.path), space=args.space, model_id=args.model_id,
                     rate=args.rate, id_prefix=args.id_prefix)
    )
    print(f"published {count} records to {settings.topic('audio-features')}")
    return 0


def cmd_watch(args) -> int:
    from streams.publish import watch

    settings = Settings.from_env()
    topic = args.topic if args.topic.startswith(settings.topic_prefix) else settings.topic(args.topic)
    try:
        _loop().run_until_complete(watch(settings, topic, from_beginning=args.from_beginning, limit=args.limit))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_ingest(args) -> int:
    from streams.extraction_settings import ExtractionSettings
    from streams.ingest import ingest

    max_seconds = args.max_seconds or ExtractionSettings.from_env().max_audio_s
    summary = _loop().run_until_complete(
        ingest(Settings.from_env(), [Path(p) for p in args.paths], space=args.space, max_seconds=max_seconds)
    )
    print(summary.describe())
    return 0 if summary.files_read else 1


def cmd_demo(args) -> int:
    from streams.demo import run_demo

    return _loop().run_until_complete(run_demo(Settings.from_env(), records=args.records, groups=args.groups))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fms", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    w = sub.add_parser("worker", help="run a feature-memory worker (settings from the environment, see README)")
    w.add_argument("--web-port", type=int)
    w.add_argument("--data-dir", type=Path)
    w.add_argument("--role", choices=ROLES, default=default_role(),
                   help="pattern-memory (default, or FMS_WORKER_ROLE) or extraction (wav2vec2: fms.audio -> fms.audio-features)")
    w.set_defaults(func=cmd_worker)

    b = sub.add_parser("broker", help="start, stop or check the local Kafka broker from infra/")
    b.add_argument("action", choices=["start", "stop", "status"])
    b.set_defaults(func=cmd_broker)

    t = sub.add_parser("topics", help="create the contract topics with their configuration")
    t.set_defaults(func=cmd_topics)

    pub = sub.add_parser("publish", help="publish feature vectors from a .npy (2-D) or .jsonl file")
    pub.add_argument("path")
    pub.add_argument("--space", default="demo", help="space for rows that do not name one (default: demo)")
    pub.add_argument("--model-id", default=None)
    pub.add_argument("--id-prefix", default=None, help="record ids are <prefix>-<row> (default: the file name)")
    pub.add_argument("--rate", type=float, default=0.0, help="records per second; 0 sends as fast as possible")
    pub.set_defaults(func=cmd_publish)

    wa = sub.add_parser("watch", help="print a topic's records as they arrive")
    wa.add_argument("topic", help="a contract topic name, with or without the prefix (e.g. recognitions)")
    wa.add_argument("--from-beginning", action="store_true")
    wa.add_argument("--limit", type=int, default=0, help="stop after this many records (0: never)")
    wa.set_defaults(func=cmd_watch)

    i = sub.add_parser("ingest", help="publish WAV/FLAC/OGG files or folders of them to fms.audio")
    i.add_argument("paths", nargs="+", metavar="PATH")
    i.add_argument("--space", default="audio", help="space of the records (default: audio)")
    i.add_argument("--max-seconds", type=float, default=None,
                   help="longest record; longer files are cut (default: FMS_MAX_AUDIO_S, 30)")
    i.set_defaults(func=cmd_ingest)

    d = sub.add_parser("demo", help="broker + worker + a generated stream of known groups, end to end")
    d.add_argument("--records", type=int, default=2000)
    d.add_argument("--groups", type=int, default=6)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
