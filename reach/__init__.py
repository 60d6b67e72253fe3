"""Reach: marketing automation as code.

The ``reach`` package holds what every stage shares: settings, the clock, errors, the
position-keeping YAML loader, the database and the command line. The stages themselves
live in the top-level packages ``audiences``, ``templating``, ``campaigns``, ``journeys``,
``tracking`` and ``reports``.
"""

__version__ = "0.1.0"
