"""``python -m jsx_funds``: run the funds service (config from JSX_FUNDS_* / JSX_* env)."""

from jsx_funds.entrypoints.grpc import main

main()
