"""Synthetic demo traffic: realistic sessions (page views, clicks, API calls, state changes, errors) that
walk a shop's checkout, sent through the real gateway.  Event generation is pure and seeded."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

__all__ = ["demo_events", "send_events"]

_PAGES = ["/", "/products", "/products/42", "/cart", "/checkout/shipping", "/checkout/payment", "/checkout/done"]


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def demo_events(project: str, count: int, *, seed: int = 7, now: datetime | None = None) -> list[dict[str, Any]]:
    """``count`` events in sessions of 5-40 events each, strictly increasing time within a session."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    events: list[dict[str, Any]] = []
    while len(events) < count:
        session = f"demo-{uuid.UUID(int=rng.getrandbits(128))}"
        user = f"user-{rng.randint(1, max(2, count // 20))}"
        t = now - timedelta(minutes=rng.uniform(5, 120))
        depth = rng.randint(1, len(_PAGES))
        seq = 0
        for page in _PAGES[:depth]:
            for etype, extra in _page_events(rng, page):
                if len(events) >= count:
                    break
                seq += 1
                t += timedelta(milliseconds=rng.randint(300, 20_000))
                events.append(
                    {
                        "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                        "project_id": project,
                        "session.id": session,
                        "user.id": user,
                        "event.type": etype,
                        "event.timestamp": _iso(t),
                        "event.sequence": seq,
                        "page.path": page,
                        "page.title": page.strip("/").replace("/", " > ").title() or "Home",
                        "ui.viewport": "1440x900",
                        **extra,
                    }
                )
    return events


def _page_events(rng: random.Random, page: str) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = [("page.view", {})]
    out.append(("ui.click", {"ui.component.name": "PrimaryButton", "ui.action": "click", "ui.element.text": "Next"}))
    if page == "/cart":
        out.append(
            (
                "state.change",
                {
                    "ui.state.key": "cart.items",
                    "ui.state.before": "[]",
                    "ui.state.after": '[{"id":"prod_123","qty":1}]',
                    "ui.state.change_type": "set",
                },
            )
        )
    if page.startswith("/checkout"):
        status = 200 if rng.random() > 0.1 else 502
        out.append(
            (
                "api.response",
                {
                    "api.method": "POST",
                    "api.path": "/api" + page,
                    "api.status_code": status,
                    "api.duration_ms": round(rng.uniform(20, 900), 1),
                },
            )
        )
        if status >= 500:
            out.append(("error", {"error.type": "PaymentGatewayError", "error.message": "upstream returned 502"}))
    return out


def send_events(
    gateway_url: str,
    api_key: str,
    events: list[dict[str, Any]],
    batch_size: int = 100,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """POST ``events`` in batches; returns how many the gateway accepted.  Fails loudly on a non-202."""
    accepted = 0
    with httpx.Client(base_url=gateway_url, headers={"X-PG-API-Key": api_key}, timeout=30) as client:
        for i in range(0, len(events), batch_size):
            resp = client.post("/v1/events", json={"events": events[i : i + batch_size]})
            if resp.status_code != 202:
                raise RuntimeError(f"gateway answered {resp.status_code}: {resp.text[:300]}")
            accepted += int(resp.json()["accepted"])
            if progress:
                progress(min(i + batch_size, len(events)), len(events))
    return accepted
