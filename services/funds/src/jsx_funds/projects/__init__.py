"""计划生育“三结合” projects: a bounded context of the funds service.

Only the pure domain so far (:mod:`jsx_funds.projects.domain`): projects,
帮扶协议, tranches, tracking, 验收 and 绩效评价 with their lifecycle and
maker-checker, decided where the region's rule plugin decides
(``jsx_sanjiehe_rules``, ``jsx_sanjiehe_tranche``, ``jsx_sanjiehe_performance``).
Tables, RPCs, the CLI and events come with the rest of issue 14.
"""

from jsx_funds.projects.domain import (
    Acceptance,
    Agreement,
    Implementer,
    Performance,
    Progress,
    Project,
    ProjectsSummary,
    Stage,
    Step,
    StepRecord,
    Tranche,
    TrancheState,
    summarize,
)

__all__ = [
    "Acceptance",
    "Agreement",
    "Implementer",
    "Performance",
    "Progress",
    "Project",
    "ProjectsSummary",
    "Stage",
    "Step",
    "StepRecord",
    "Tranche",
    "TrancheState",
    "summarize",
]
