"""Operations: the `lfp` CLI, the embedded local stack, Kafka topic admin."""
