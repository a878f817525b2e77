"""The ``lfp`` command line (``infra.cli:app``; ``python -m infra``)."""

from infra.cli.app import _current_batch_run, _lag_lines, _status_table, app

__all__ = ["_current_batch_run", "_lag_lines", "_status_table", "app"]
