"""The framework's own cost per record: a faust agent that does what the plain aiokafka loop does.

throughput.py and e2e_latency.py run it beside that loop and the worker (`start`). The app is the
worker's own (`streams.service.app.create_app`: its transport with the short fetch long-poll, its producer
settings, and faust's Prometheus sensor as FMS_FAUST_SENSOR says), with one agent instead of the
memory: it reads fms.audio-features as the memory does (`stream.events()`), decodes each record
with orjson and sends one small record per input through the producer, as the worker's outputs
go; faust acknowledges each record as the agent moves on. No tables, no sequencing, no journal.

    python benchmarks/faust_loop.py <output topic>   (settings from the environment, as a worker's)
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import faust
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.service.app import create_app  # noqa: E402
from streams.service.metrics import Metrics  # noqa: E402
from streams.service.settings import Settings  # noqa: E402


def start(env: dict[str, str], out_topic: str, log_path: Path) -> subprocess.Popen:
    """This loop as a child process with a worker's environment `env`, writing to `out_topic`."""
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, __file__, out_topic], env={**os.environ, **env},
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def main() -> int:
    out_topic = sys.argv[1]
    settings = Settings.from_env()
    app = create_app(settings, Metrics.create(), app_id=f"{settings.app_id}-faust-loop")
    inputs = app.topic(settings.topic("audio-features"), key_serializer="raw", value_serializer="raw")

    @app.agent(inputs, name="loop")
    async def loop(stream):
        async for event in stream.events():
            record = orjson.loads(event.value)
            value = orjson.dumps({"v": 1, "event_id": record["id"], "space": record["space"], "ts": time.time()})
            await app.producer.send(out_topic, event.message.key, value, None, None, None)

    worker = faust.Worker(app, loglevel="warning")
    worker.spinner = None  # as `fms worker` (streams/ops/cli.py): it leaves the root logger at DEBUG
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
