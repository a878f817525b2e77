"""What a supervised set of processes (the embedded stack, the local cluster) listens on.

Every process a supervisor starts runs in a session of its own (``start_new_session``):
the supervisor's, or a service's, whose id is the pid ``stack.json`` records. A process
belongs to the set if its session is one of those, or if it descends from one of them
(a daemon that started a session of its own, e.g. a JVM's forked Python worker).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Listener:
    pid: int
    name: str
    cmdline: str
    address: str
    port: int
    kind: str  # "tcp" or "udp"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.address)

    def describe(self) -> str:
        return f"{self.kind} {self.address}:{self.port}  pid {self.pid} {self.name}: {self.cmdline}"


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback; False for wildcards and every
    other address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def supervised_processes(state: dict) -> list[psutil.Process]:
    """The supervisor of ``state`` (a ``stack.json``), its services and everything they
    started, by session and by descent."""
    roots = {int(state["supervisor_pid"])}
    roots |= {int(s["pid"]) for s in state["services"].values() if s.get("pid")}
    found: dict[int, psutil.Process] = {}
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) in roots:
                found[process.pid] = process
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    for pid in roots:
        try:
            process = psutil.Process(pid)
            found[pid] = process
            for child in process.children(recursive=True):
                found[child.pid] = child
        except psutil.NoSuchProcess:
            continue
    return list(found.values())


def listeners(processes: list[psutil.Process]) -> list[Listener]:
    """Every listening TCP socket and every bound, unconnected UDP socket of ``processes``."""
    found = []
    for process in processes:
        try:
            connections = process.net_connections(kind="inet")
            name, cmdline = process.name(), " ".join(process.cmdline())
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        for c in connections:
            tcp = c.type == socket.SOCK_STREAM
            if (tcp and c.status != psutil.CONN_LISTEN) or (not tcp and c.raddr):
                continue
            found.append(
                Listener(
                    process.pid,
                    name,
                    cmdline[:300],
                    c.laddr.ip,
                    c.laddr.port,
                    "tcp" if tcp else "udp",
                )
            )
    return sorted(found, key=lambda item: (item.pid, item.port))


def table(found: list[Listener]) -> str:
    return "\n".join(item.describe() for item in found)
