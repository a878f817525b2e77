"""The demo e-commerce workload: feature definitions and an event generator."""
