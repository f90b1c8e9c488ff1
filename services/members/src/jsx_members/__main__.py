"""``python -m jsx_members``: run the members service (config from JSX_MEMBERS_* / JSX_* env)."""

from jsx_members.entrypoints.grpc import main

main()
