"""某县 (TEMPLATE) rules — replace this docstring with what the plugin
encodes and the document each figure comes from (文件名、文号、施行日期).

Rules of thumb (docs/plugins.md has the full guide):

* implement only the hooks your county decides; return ``None`` for the rest
  and the city, the province or the built-in defaults answer;
* keep every figure in a :class:`~jsxcore.hookspecs.DatedTable` with the
  date it applies from and a basis line a clerk can read;
* take plain data, return plain data: no database, no network, no clock;
* once the rules are settled, declare what they read of a beneficiary
  (``rule_inputs`` below, docs/plugins.md “Declaring rule inputs”): a
  monthly batch then asks your rules once per distinct declared input
  instead of once per person. Left undeclared (``None``) everything a
  beneficiary carries counts as input — always correct, only slower.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from jsxcore.hookspecs import Amount, Beneficiary, Dated, DatedTable, PluginMeta, ProgramType, hookimpl
from jsxcore.values import Money, Period

__version__ = "0.1.0"

JSX_PLUGIN = PluginMeta(
    name="template",  # = the entry-point name in pyproject.toml
    version=__version__,  # bump on every rule change: decisions record it
    regions=("431225",),  # the county's GB/T 2260 code (431225 会同县 is only an example)
    description="示例县计生协规则：金秋助学补助（示例标准，请替换）",
    # Undeclared on purpose: a copied plugin's rules change before they settle.
    # The grant below reads only the program type and the period, so the
    # honest declaration would be (import BirthDateUse and RuleInputs from
    # jsxcore.hookspecs; a type left out of the mapping reads nothing):
    #
    #   rule_inputs={ProgramType.GOLDEN_AUTUMN.value: RuleInputs(frozenset(), BirthDateUse.UNUSED)},
    #
    # and a rule reading, say, attributes["school_level"] and the age on the
    # period's first day would declare
    #
    #   RuleInputs(frozenset({"school_level"}), BirthDateUse.AGE_ON_PERIOD_START)
    #
    # assert_plugin_conforms checks a declaration against the rules.
)

#: 金秋助学 grant per student per year, by the date it applies from.
#: EXAMPLE FIGURE — replace with your county's document before enabling.
GOLDEN_AUTUMN_GRANT: DatedTable[Money] = DatedTable(
    "示例县金秋助学补助",
    [Dated(date(2023, 1, 1), Money.yuan(1000), "示例县金秋助学 1000 元/人/年（2023-01-01 起，示例标准）")],
)


@hookimpl
def jsx_entitlement_amount(
    program_type: str, beneficiary: Beneficiary, period: Period, context: Mapping[str, Any]
) -> Amount | None:
    """金秋助学: a yearly grant at the rule in force on the period's first day.

    Returns ``None`` for every other program so higher levels decide; a
    period before the first rule raises ``NO_RULE_FOR_PERIOD`` (from
    ``DatedTable.at``) instead of paying a guessed amount.
    """
    if program_type != ProgramType.GOLDEN_AUTUMN:
        return None
    row = GOLDEN_AUTUMN_GRANT.at(period.start)
    return Amount(row.value, (row.source,))
