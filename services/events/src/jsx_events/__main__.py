"""``python -m jsx_events``: migrate the database, then serve EventsService."""

from jsx_events.entrypoints.grpc import main

main()
