"""Prefect flow of the ``traits-refresh`` deployment: recompute every contact's RFM traits."""

from __future__ import annotations

from typing import Any

from prefect import flow


@flow(name="traits-refresh", log_prints=False)
def refresh_traits_flow(project_dir: str, event_type: str = "purchase",
                        revenue_property: str = "amount") -> dict[str, Any]:
    """Recompute ``contact_traits`` from the events table; returns how many were written."""
    from audiences.traits import refresh_traits
    from reach.db import connect
    from reach.settings import load_settings

    settings = load_settings(project_dir)
    engine = connect(settings.resolved_database_url)
    written = refresh_traits(engine, event_type, revenue_property)
    return {"contacts": written}
