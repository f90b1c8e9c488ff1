"""jsx-funds: the funds service (sources, funds and their ledger, programs and applications,
disbursement, reports, and what it keeps of members' and events' facts)."""

#: The gRPC service: AIP-155 request fingerprints and page tokens name their RPC under it.
SERVICE_NAME = "jsx.funds.v1.FundsService"
