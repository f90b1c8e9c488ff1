"""Run one CreatePaymentBatch in its own process (for test_batch_crash.py).

    python batch_crash_worker.py DB_URL PROGRAM_ID PERIOD REQUEST_ID CHUNK

Prints one JSON line: {"payments": n} on success, {"reason": "..."} when the
request is refused (exit 3). ``JSX_FAULT=batch.after_chunk`` makes the batch
die after its first chunk is written, ``batch.after_chunk:stop`` makes it stop
itself (SIGSTOP) there so the test can ``kill -9`` it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime

from jsx.common.v1 import common_pb2 as c
from jsx.funds.v1 import funds_pb2 as pb
from jsx_funds.disbursement import planner_pg, planner_sqlite
from jsx_funds.disbursement.service import SERVICE_NAME
from jsx_funds.entrypoints.grpc import compose
from jsxcore.db import create_engine, session_factory
from jsxcore.errors import DomainError
from jsxcore.plugins import PluginHost
from jsxcore.usecase import Idem
from jsxcore.values import Period, RegionCode


async def main(url: str, program_id: int, period: str, request_id: str) -> int:
    host = PluginHost({"hunan": ["430000"], "hongjiang": ["431281"]})
    host.discover()
    eng = create_engine(url)
    svc = compose(session_factory(eng), host, clock=lambda: datetime(2022, 8, 5, 2, tzinfo=UTC)).disbursement
    req = pb.CreatePaymentBatchRequest(
        request_id=request_id,
        program=f"programs/{program_id}",
        region=c.RegionCode(code="431281"),
        period=c.Period(code=period),
    )
    try:
        # The same request id on a rerun: AIP-155 answers it only if the first run committed.
        b = await svc.create_payment_batch(
            program_id,
            RegionCode.parse("431281"),
            Period.parse(period),
            caller=None,
            idem=Idem.of(SERVICE_NAME, "CreatePaymentBatch", req),
        )
    except DomainError as e:
        print(json.dumps({"reason": e.reason}), flush=True)
        return 3
    finally:
        await eng.dispose()
    print(json.dumps({"payments": b.payment_count, "total": b.total.fen, "batch": b.name}), flush=True)
    return 0


if __name__ == "__main__":
    url, program, period, request_id, chunk = sys.argv[1:6]
    # Small chunks so a few thousand beneficiaries make a multi-chunk batch (PostgreSQL: ~40 candidates a block).
    planner_sqlite.CHUNK = int(chunk)
    planner_pg.CHUNK_BLOCKS = max(1, int(chunk) // 100)
    sys.exit(asyncio.run(main(url, int(program), period, request_id)))
