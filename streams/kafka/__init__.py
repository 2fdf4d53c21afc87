"""The one room that touches faust's and aiokafka's internals.

Everything else uses their public APIs. Each private use below is here because no public API does
the job, carries its reason at the place of use, and was checked against the versions pyproject.toml
pins (faust-streaming 0.15.3, aiokafka 0.14.0); tests/unit/kafka/test_kafka_internals.py states each
assumption, so an upgrade that breaks one fails a test instead of a worker.

- transport.py: faust's aiokafka transport with a short fetch long-poll (aiokafka's
  ``_fetch_max_wait_ms``/``_fetch_min_bytes``, set before its Fetcher starts), aiokafka fetching only
  the partitions faust takes records from (faust's ``_fetch_records``, then aiokafka's public
  ``pause``/``resume``), acknowledgements only
  the memory makes (``Consumer.ack``), gaps in offsets only the memory accepts (``_add_gap``), the
  group's committed offsets asked of the broker (``_ensure_consumer``, ``call_thread``), and the app
  hook that builds it (``App._new_transport``). Also the producer's partitioner (public API).
- internals.py: faust's current event (``faust.streams._current_event``), its consumer's
  unacknowledged messages, committed offsets, read offsets and acknowledgement waiters
  (``_unacked_messages``, ``_committed_offset``, ``_read_offset``, ``_waiting_for_ack``), a
  RocksDB table's per-partition database (``_db_for_partition``), and deleting a consumer group
  (aiokafka's admin ``_send_request``: 0.14 has no ``delete_consumer_groups``), and faust's
  Prometheus monitor with its events runtime in seconds (``FaustMetrics``, ``PrometheusMonitor``).
- metadata.py: topic partitions from aiokafka's public admin API (no private use; it replaced
  ``consumer._client.fetch_all_metadata()``).
"""
