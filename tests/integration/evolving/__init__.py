"""One source before and after a nullable field is added (the schema-evolution test)."""
