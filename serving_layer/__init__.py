"""serving_layer."""
