"""What every long-running service shares, below the layers: Kafka clients and topics,
and the heartbeat status files the supervisor and the healthchecks read."""
