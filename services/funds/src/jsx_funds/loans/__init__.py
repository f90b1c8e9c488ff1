"""贷款贴息 (计生家庭创业贷款贴息): a bounded context of the funds service.

Only the pure domain so far (:mod:`jsx_funds.loans.domain`): loans, interest
receipts and claims, checked here and decided by the region's rule plugin
(``jsx_loan_purposes``, ``jsx_loan_subsidy_terms``, ``jsx_loan_subsidy``).
Tables, RPCs, the CLI and events come with the rest of issue 14.
"""

from jsx_funds.loans.domain import (
    MAX_RATE_BP,
    InterestReceipt,
    LenderKind,
    Loan,
    check_amount,
    format_rate,
    parse_rate,
    prepare_claim,
)

__all__ = [
    "MAX_RATE_BP",
    "InterestReceipt",
    "LenderKind",
    "Loan",
    "check_amount",
    "format_rate",
    "parse_rate",
    "prepare_claim",
]
