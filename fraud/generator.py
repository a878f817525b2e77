"""A synthetic bank: customers with cards, shopping at merchants and logging in.

Deterministic with a seed. Payments carry an ISO-8601 ``ts``; logins carry epoch-ms
``login_time`` and a boolean ``success``; one login in fifty starts a burst of failed
attempts from many addresses (credential stuffing).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from feature_core.sources import EventSource


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class Bank:
    def __init__(self, customers: int = 300, merchants: int = 120, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.rng = random.Random(seed ^ 0xFA11)
        self.accounts = [f"acct_{i}" for i in range(customers)]
        self.cards = {
            a: [f"card_{i}_{n}" for n in range(1 + (rng.random() < 0.3))]
            for i, a in enumerate(self.accounts)
        }
        self.merchants = [f"merch_{i}" for i in range(merchants)]
        self.home = {a: rng.choice(["DE", "FR", "GB", "US", "NL"]) for a in self.accounts}

    def payment(self, at_ms: int) -> dict[str, Any]:
        rng = self.rng
        account = rng.choice(self.accounts)
        return {
            "transaction_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "card_id": rng.choice(self.cards[account]),
            "account_id": account,
            # A few merchants take most payments (Pareto), as in real card traffic.
            "merchant_id": self.merchants[
                min(int(rng.paretovariate(1.2)) - 1, len(self.merchants) - 1)
            ],
            "amount": round(rng.lognormvariate(3.0, 1.0), 2),
            "currency": rng.choice(["EUR", "EUR", "USD", "GBP"]),
            "channel": rng.choice(["pos", "pos", "online", "atm"]),
            "country": self.home[account] if rng.random() < 0.95 else "BR",
            "ts": iso(at_ms),
        }

    def logins(self, at_ms: int) -> list[dict[str, Any]]:
        rng = self.rng
        account = rng.choice(self.accounts)
        attack = rng.random() < 0.02
        attempts = rng.randrange(5, 20) if attack else 1
        return [
            {
                "login_id": str(uuid.UUID(int=rng.getrandbits(128))),
                "account_id": account,
                "success": (not attack) and rng.random() < 0.95,
                "ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
                if attack
                else f"192.0.2.{int(account.rsplit('_', 1)[1]) % 256}",
                "device": rng.choice(["ios", "android", "web"]),
                "login_time": at_ms + n,
            }
            for n in range(attempts)
        ]

    def events(self, at_ms: int) -> list[tuple[str, dict[str, Any]]]:
        """One customer action at ``at_ms``: a payment (most often) or login attempts."""
        if self.rng.random() < 0.8:
            return [("card_transactions", self.payment(at_ms))]
        return [("account_logins", login) for login in self.logins(at_ms)]

    def live(
        self,
        rate: float,
        duration_s: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[tuple[EventSource, dict[str, Any]]]:
        from fraud.feature_repo import logins, transactions

        sources = {transactions.name: transactions, logins.name: logins}
        start = clock()
        sent = 0
        total = int(rate * duration_s)
        while sent < total:
            wait = start + sent / rate - clock()
            if wait > 0:
                sleep(wait)
            for name, event in self.events(int(clock() * 1000)):
                yield sources[name], event
                sent += 1
