"""The worker's state: one faust table in RocksDB, its changelog, and what writes it.

- patterns.py: the pattern memory's tables (spaces, pattern pages, patterns, the calibration
  sample, recent recognitions and interactions) over streams.core.patterns.
- optimizations.py: the optimization memories' table over streams.core.optimizations.
- checkpoint.py: the one owner of the state between two commits: repair -> begin -> keep (or
  rollback) per space and batch, then commit and one flush of the changelog, in that order.
- journal.py: writes held until the commit, a commit applied all or nothing, and which records
  were applied.
- changelog.py: the table written straight to RocksDB and its changelog topic.
- local_state.py: the data directory: its lock, and what a worker does with local state left by an
  unclean stop.
"""
