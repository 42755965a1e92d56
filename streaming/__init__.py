"""The streaming path (docs/design.md section 4): Kafka -> Spark Structured Streaming -> Delta.

- `broker`: the local Kafka-protocol broker (Tansu) for the embedded default and tests.
- `offsets`, `kafka_source`, `source`: Kafka as a streaming DataFrame (our Python Data Source, or
  Spark's built-in `kafka` source where its jar is present).
- `producer`, `replay`: the serving side's logger and the log replayer (`freshlake produce`).
- `bronze`: topics -> `impressions` / `actions` tables with validation and quarantine.
- `joiner`, `upgrades`: the online joiner -> `fresh_examples`, exactly once.
- `metrics`, `queries`: per micro-batch metrics; checkpoints, triggers and the run loop.
- `parity`: `fresh_examples` against the batch `examples`.
- `*_cli`: the `freshlake` subcommands (broker, produce, stream-ingest, stream-join, parity).
"""
