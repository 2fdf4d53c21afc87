"""What operators run: the `fms` command, the demo, publishing and ingesting files, replays and
generations of the memory's state, and worker processes for them and for tests."""
