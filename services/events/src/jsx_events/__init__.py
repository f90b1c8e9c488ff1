"""jsx events service: activities, 走访慰问 visits, annual plans, awards, cadence compliance.

Bounded contexts (each a sub-package: ``domain``, ``service``, ``tables``, ``wire``),
composed in :mod:`jsx_events.composition`; see services/events/README.md.
"""

#: The gRPC service's full name (AIP-155 method names, page-token queries).
SERVICE_NAME = "jsx.events.v1.EventsService"
