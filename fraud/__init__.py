"""Card fraud: a second workload on the platform, with two sources and a composite key."""
