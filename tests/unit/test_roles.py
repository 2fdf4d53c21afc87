"""Which role imports what: a pattern-memory worker never loads torch, and the audio core is pure."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def imported_after(code: str) -> set[str]:
    """Top-level package names in sys.modules after running `code` in a fresh interpreter."""
    probe = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_a_pattern_memory_worker_never_imports_torch():
    mods = imported_after(
        "from streams.service.settings import Settings\n"
        "from streams.service.app import create_runtime\n"
        "import streams.ops.cli, agents.recognition, streams.service.web, streams.service.resources\n"
        "create_runtime(Settings(data_dir=__import__('pathlib').Path('/tmp/fms-role-probe')))\n"
        "streams.ops.cli.build_parser()\n"
    )
    assert "faust" in mods, "the probe did build a worker"
    assert not mods & {"torch", "transformers", "soundfile"}


def test_the_audio_core_imports_no_shell_and_no_model():
    mods = imported_after("import streams.core.audio")
    assert "scipy" in mods
    assert not mods & {"torch", "transformers", "faust", "aiokafka", "mode"}
