"""The architecture's rules, checked on the code: import-linter's contracts (pyproject.toml), and
faust's and aiokafka's private attributes used only in streams/kafka."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The private faust and aiokafka names the project needs (streams/kafka/__init__.py says why).
PRIVATE = re.compile(r"\._(current_event|unacked_messages|committed_offset|db_for_partition|new_transport|add_gap|"
                     r"send_request|client|fetch_max_wait_ms|fetch_min_bytes|create_worker_consumer|ensure_consumer|"
                     r"new_consumer_thread|read_offset|waiting_for_ack)\b|\b_current_event\b|\"_db_for_partition\"")


def test_import_contracts_are_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint, "import-linter is in the test extra"
    done = subprocess.run([lint], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_faust_and_aiokafka_internals_stay_in_streams_kafka():
    offenders = []
    for path in sorted([*REPO.glob("streams/**/*.py"), *REPO.glob("agents/**/*.py"), *REPO.glob("schemas/**/*.py")]):
        if path.is_relative_to(REPO / "streams" / "kafka"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            # The project's own attributes of the same names (self._client...) are not faust's.
            if PRIVATE.search(code) and not re.search(r"\bself\._(client|producer)\b", code):
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, "private faust/aiokafka use outside streams/kafka:\n" + "\n".join(offenders)


def test_the_pure_core_contract_names_every_shell_module_of_streams():
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    core = next(c for c in config["contracts"] if c.get("source_modules") == ["streams.core"])
    shell = {f"streams.{p.stem}" for p in (REPO / "streams").glob("*.py") if p.stem != "__init__"}
    shell |= {f"streams.{p.name}" for p in (REPO / "streams").iterdir() if (p / "__init__.py").exists() and p.name != "core"}
    missing = shell - set(core["forbidden_modules"])
    assert not missing, f"add to the core contract in pyproject.toml: {sorted(missing)}"
