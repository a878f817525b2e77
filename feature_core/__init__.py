"""Shared, engine-free core of the Lambda Feature Platform.

Everything every layer agrees on lives here: settings, the event schema, the
aggregation algebra, window and tile math, feature definitions, the reference
evaluator and the serving merge. It imports no engine (Spark, Flink, Redis,
FastAPI), so each layer is a thin adapter compiling these definitions.
"""

__version__ = "0.1.0"
