"""`fms`: run a worker, drive the local broker, publish features, watch topics, run the demo."""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
from pathlib import Path

# Before numpy loads OpenBLAS: matching is one matrix-vector product per record, too small to split
# across threads, and OpenBLAS's spinning threads take the cores the event loop and the Kafka
# client need (measured: a worker drains a backlog about twice as fast with one). torch, in the
# extraction role, sizes its own thread pool (FMS_EXTRACT_THREADS).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from streams.extraction.settings import ROLES, default_role
from streams.service.settings import Settings



class UsageError(Exception):
    """A user's mistake on the command line: said in one line, exit code 2, no traceback."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("feature-memory")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


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

    from streams.service.app import create_runtime
    from streams.state.local_state import DataDirInUse, close_local_state, lock_data_dir, open_local_state
    from streams.service.topics import ensure_topics

    try:
        lock_data_dir(settings.data_dir)  # before anything reads, deletes or opens local state
    except DataDirInUse as exc:
        print(f"fms worker: {exc}", file=sys.stderr)
        return 1
    loop = _loop()
    if args.role == "extraction":
        # Before any broker work: a missing model is a configuration error, said once and plainly.
        from streams.extraction.model import ModelUnavailable
        from streams.extraction.app import create_extraction_runtime
        from streams.extraction.settings import ExtractionSettings

        try:
            runtime = create_extraction_runtime(settings, ExtractionSettings.from_env())
        except ModelUnavailable as exc:
            print(f"fms worker --role extraction: {exc}", file=sys.stderr)
            return 2
    if not wait_for_broker(loop, settings):
        return 1
    loop.run_until_complete(ensure_topics(settings))
    if args.role != "extraction":
        from streams.ops import generation

        settings, control = loop.run_until_complete(generation.resolve_generation(settings))
        open_local_state(settings.state_dir)  # before faust opens RocksDB
        runtime = create_runtime(settings)
        watcher = generation.register(runtime, control)
    runtime.metrics.watch_gc()
    worker = faust.Worker(runtime.app, loglevel=settings.log_level, loop=loop)
    # faust's start-up spinner sets the root logger to DEBUG for good, so that it turns on every
    # record: every library's debug call then built a record (4% of the worker's CPU at full rate).
    worker.spinner = None
    freeze_start_up_heap()
    if args.role == "extraction":  # no tables
        worker.execute_from_commandline()
        return 0
    try:
        worker.execute_from_commandline()
    except SystemExit:
        if watcher.switch_to is None:
            raise
    finally:
        # Writes whose changelog messages never left make the store ahead of its changelog: not a
        # clean stop, so the marker stays and the next start restores the store from the changelog.
        if not runtime.checkpoint.changelog.behind:
            close_local_state(settings.state_dir)
    if watcher.switch_to is not None:
        own = settings.generation or 0
        print(f"fms worker: generation {own} stopped for generation {watcher.switch_to}; waiting until it is current",
              file=sys.stderr, flush=True)
        generation.run_as(asyncio.run(generation.wait_for_switch(settings, watcher.switch_to, own)))
    return 0


def wait_for_broker(loop, settings: Settings) -> bool:
    """Wait for a broker to answer, with backoff and a line saying so, at most FMS_BROKER_WAIT_S
    (default: forever); False, after one line saying why, when none answered in time."""
    from streams.service import broker_watch

    watch = broker_watch.install(settings)
    error = loop.run_until_complete(broker_watch.wait_for_broker(watch, settings.broker_wait_s))
    if error is None:
        return True
    print(f"fms worker: no broker answered at {settings.bootstrap_servers} within "
          f"FMS_BROKER_WAIT_S={settings.broker_wait_s:g} s ({error}); giving up", file=sys.stderr, flush=True)
    return False


def freeze_start_up_heap() -> None:
    """Collect once, then leave every object alive now out of later full collections (gc.freeze).

    A full collection walks every tracked object, most of them made at start-up (modules, classes,
    the libraries' own structures): 50-65 ms each, several times a minute at 1,000 records/s
    (fms_gc_pause_seconds), and every record in flight waits them out. Only before the worker
    starts: no RocksDB database is open yet, and faust closes a revoked partition's database by
    dropping it and collecting, which a frozen database would survive. Frozen objects are still
    freed by reference counting."""
    gc.collect()
    gc.freeze()


def cmd_broker(args) -> int:
    from streams.ops.demo import BROKER_SCRIPT

    if not BROKER_SCRIPT.exists():
        print(f"fms broker needs the repository's infra/ ({BROKER_SCRIPT} not found)", file=sys.stderr)
        return 2
    return subprocess.call(["bash", str(BROKER_SCRIPT), args.action])


def cmd_topics(args) -> int:
    from streams.service.topics import ensure_topics

    created = _loop().run_until_complete(ensure_topics(Settings.from_env()))
    print("created: " + (", ".join(created) if created else "nothing, all exist"))
    return 0


def cmd_publish(args) -> int:
    from streams.ops.publish import PublishFailed, describe_offsets, feature_records, publish_records

    settings = Settings.from_env()
    path = Path(args.path)
    # The whole file is read and validated before anything is sent: a bad row sends nothing.
    try:
        records = list(feature_records(path, space=args.space, model_id=args.model_id, id_prefix=args.id_prefix))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not records:
        raise UsageError(f"{path}: no records in the file")
    _check_dimensions(settings, path, records)
    topic = settings.topic("audio-features")
    try:
        sent = _loop().run_until_complete(publish_records(settings, topic, records, rate=args.rate))
    except PublishFailed as exc:
        print(f"fms publish: {exc}", file=sys.stderr)
        return 1
    print(f"published {len(sent)} records to {topic}: {describe_offsets(sent)}")
    return 0


def _check_dimensions(settings: Settings, path: Path, records) -> None:
    """A space's records must share one dimension, and the one its patterns already have: a running
    memory would dead-letter the others as dimension_mismatch after they were sent."""
    from streams.ops.publish import space_dimensions

    first: dict[str, tuple[int, int]] = {}
    for n, record in enumerate(records):
        dim = len(record.vector)
        seen = first.setdefault(record.space, (dim, n))
        if seen[0] != dim:
            raise UsageError(f"{path}: record {n + 1} of space {record.space!r} has dimension {dim}, "
                             f"record {seen[1] + 1} has {seen[0]}; a space has one dimension")
    known = _loop().run_until_complete(space_dimensions(settings, set(first)))
    for space, (dim, n) in first.items():
        if space in known and known[space] != dim:
            raise UsageError(f"{path}: space {space!r} holds {known[space]}-dimensional patterns, these records "
                             f"are {dim}-dimensional (the memory would dead-letter them as dimension_mismatch); "
                             "publish them to another space")


def cmd_watch(args) -> int:
    from streams.ops.publish import watch

    settings = Settings.from_env()
    topic = args.topic if args.topic.startswith(settings.topic_prefix) else settings.topic(args.topic)
    try:
        _loop().run_until_complete(watch(settings, topic, from_beginning=args.from_beginning, limit=args.limit,
                                         wait=args.wait))
    except KeyboardInterrupt:
        pass
    except LookupError as exc:  # an unknown topic, without --wait
        raise UsageError(str(exc.args[0])) from None
    return 0


def cmd_ingest(args) -> int:
    from streams.extraction.settings import ExtractionSettings
    from streams.ops.ingest import ingest

    max_seconds = args.max_seconds or ExtractionSettings.from_env().max_audio_s
    summary = _loop().run_until_complete(
        ingest(Settings.from_env(), [Path(p) for p in args.paths], space=args.space, max_seconds=max_seconds)
    )
    print(summary.describe())
    # Any file that failed fails the command (the summary names each one), even if others were sent.
    return 1 if summary.failed or not summary.files_read else 0


def cmd_replay(args) -> int:
    from streams.core.generations import parse_from
    from streams.ops.replay import replay

    settings = Settings.from_env()
    from_ts = None if args.from_ts is None else parse_from(args.from_ts)
    result = _loop().run_until_complete(
        replay(settings, from_ts=from_ts, data_dir=args.data_dir, web_port=args.web_port,
               lag_threshold=args.lag_threshold))
    print(f"generation {result.generation} is current (was {result.previous}): {result.replayed} records replayed "
          f"in {result.seconds:.1f}s ({result.rate:.0f}/s), switched in {result.switch_seconds:.1f}s; "
          f"{len(result.rewound)} partitions delivered again from the old generation's offsets; "
          f"{result.patterns_written} patterns and {result.optimizations_written} optimizations rewritten")
    if result.droppable:
        print(result.droppable)
    if args.keep_running:
        # The replay worker's state is warm in its data dir: carry on as a normal worker of the new generation.
        os.environ.update(result.worker_env)
        if args.web_port is not None:
            os.environ["FMS_WEB_PORT"] = str(args.web_port)
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", "streams.ops.cli", "worker"])
    return 0


def cmd_generations(args) -> int:
    from streams.ops.generation import drop_generation, list_generations

    settings = Settings.from_env()
    if args.action == "drop":
        if args.generation is None:
            print("fms generations drop N: which generation?", file=sys.stderr)
            return 2
        try:
            dropped = _loop().run_until_complete(drop_generation(settings, args.generation))
        except ValueError as exc:
            print(f"fms generations drop: {exc}", file=sys.stderr)
            return 1
        print(f"dropped generation {dropped.generation}: group {dropped.app_id if dropped.group else '(none)'}, "
              f"topics {', '.join(dropped.app_topics + dropped.shadow_topics) or '(none)'}")
        return 0
    for info in _loop().run_until_complete(list_generations(settings)):
        print(info.describe())
    return 0


def cmd_demo(args) -> int:
    from streams.ops.demo import run_demo

    return _loop().run_until_complete(run_demo(Settings.from_env(), records=args.records, groups=args.groups))


def _kafka_options() -> argparse.ArgumentParser:
    """Options of every command that talks to Kafka; each overrides its environment variable."""
    k = argparse.ArgumentParser(add_help=False)
    k.add_argument("--bootstrap-server", metavar="HOST:PORT[,...]",
                   help="Kafka bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092)")
    k.add_argument("--log-level", type=str.lower, choices=["debug", "info", "warning", "error", "critical"],
                   help="log level (default: FMS_LOG_LEVEL, else info)")
    return k


def _apply_kafka_options(args) -> None:
    if getattr(args, "bootstrap_server", None):
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = args.bootstrap_server
    if getattr(args, "log_level", None):
        os.environ["FMS_LOG_LEVEL"] = args.log_level
    if args.command in ("worker", "broker", "demo"):
        return  # a worker's faust sets its logging up from FMS_LOG_LEVEL
    import logging

    # The short-lived commands log warnings and worse unless told otherwise: their output is the answer.
    level = getattr(args, "log_level", None) or "warning"
    logging.basicConfig(level=getattr(logging, level.upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fms", description=__doc__)
    p.add_argument("--version", action="version", version=f"fms (feature-memory) {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    kafka = _kafka_options()

    w = sub.add_parser("worker", parents=[kafka],
                       help="run a feature-memory worker (settings from the environment, see README)")
    w.add_argument("--web-port", type=int)
    w.add_argument("--data-dir", type=Path)
    w.add_argument("--role", choices=ROLES, default=default_role(),
                   help="pattern-memory (default, or FMS_WORKER_ROLE) or extraction (wav2vec2: fms.audio -> fms.audio-features)")
    w.set_defaults(func=cmd_worker)

    b = sub.add_parser("broker", help="start, stop or check the local Kafka broker from infra/")
    b.add_argument("action", choices=["start", "stop", "status"])
    b.set_defaults(func=cmd_broker)

    t = sub.add_parser("topics", parents=[kafka], help="create the contract topics with their configuration")
    t.set_defaults(func=cmd_topics)

    pub = sub.add_parser("publish", parents=[kafka], help="publish feature vectors from a .npy (2-D) or .jsonl file")
    pub.add_argument("path")
    pub.add_argument("--space", default="demo", help="space for rows that do not name one (default: demo)")
    pub.add_argument("--model-id", default=None)
    pub.add_argument("--id-prefix", default=None, help="record ids are <prefix>-<row> (default: the file name)")
    pub.add_argument("--rate", type=float, default=0.0, help="records per second; 0 sends as fast as possible")
    pub.set_defaults(func=cmd_publish)

    wa = sub.add_parser("watch", parents=[kafka], help="print a topic's records as they arrive")
    wa.add_argument("topic", help="a contract topic name, with or without the prefix (e.g. recognitions)")
    wa.add_argument("--from-beginning", action="store_true")
    wa.add_argument("--limit", type=int, default=0, help="stop after this many records (0: never)")
    wa.add_argument("--wait", action="store_true",
                    help="wait for a topic that does not exist yet (without it, an unknown topic is refused)")
    wa.set_defaults(func=cmd_watch)

    i = sub.add_parser("ingest", parents=[kafka], help="publish WAV/FLAC/OGG files or folders of them to fms.audio")
    i.add_argument("paths", nargs="+", metavar="PATH")
    i.add_argument("--space", default="audio", help="space of the records (default: audio)")
    i.add_argument("--max-seconds", type=float, default=None,
                   help="longest record; longer files are cut (default: FMS_MAX_AUDIO_S, 30)")
    i.set_defaults(func=cmd_ingest)

    r = sub.add_parser("replay", parents=[kafka], help="rebuild the memory from the kept inputs as a new generation, then switch to it")
    r.add_argument("--from", dest="from_ts", metavar="TIMESTAMP",
                   help="replay inputs from this time on (ISO-8601, UTC unless it says, or epoch seconds); default: all")
    r.add_argument("--data-dir", type=Path, help="the replay worker's FMS_DATA_DIR (default: FMS_DATA_DIR)")
    r.add_argument("--web-port", type=int, help="the replay worker's web port (default: a free one)")
    r.add_argument("--lag-threshold", type=int, default=100,
                   help="switch once the replay is this many records behind on two consecutive polls")
    r.add_argument("--keep-running", action="store_true",
                   help="after the switch, go on as a worker of the new generation")
    r.set_defaults(func=cmd_replay)

    g = sub.add_parser("generations", parents=[kafka], help="list the generations of the memory's state, or drop one")
    g.add_argument("action", nargs="?", choices=["list", "drop"], default="list")
    g.add_argument("generation", nargs="?", type=int)
    g.set_defaults(func=cmd_generations)

    d = sub.add_parser("demo", parents=[kafka], help="broker + worker + a generated stream of known groups, end to end")
    d.add_argument("--records", type=int, default=2000)
    d.add_argument("--groups", type=int, default=6)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    from streams.service.settings import SettingsError

    args = build_parser().parse_args(argv)
    _apply_kafka_options(args)
    try:
        return args.func(args) or 0
    except (SettingsError, UsageError) as exc:  # a user's mistake: one line, no traceback
        print(f"fms {args.command}: {exc}" if isinstance(exc, UsageError) else f"fms: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
