"""The ``lfp`` command line (``infra.cli:app``, ``python -m infra``): the root app and
its top-level commands in :mod:`infra.cli.app`, one module per command group beside it,
what they share in :mod:`infra.cli.common` and :mod:`infra.cli.tables`."""

from infra.cli.app import app

__all__ = ["app"]
