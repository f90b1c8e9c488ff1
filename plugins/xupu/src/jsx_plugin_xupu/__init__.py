"""溆浦县 (431224) rules: the village 幸福基金 of the county's
“党建+群建+村规民约+幸福基金” model, spent only on the six uses.

Source: 怀化市计生协 2022 年第二十一期简报 (溆浦县 report, 四、以“幸福基金”为抓手;
the city section lists the six uses).
"""

from __future__ import annotations

from jsx_plugin_huaihua import HAPPINESS_FUND_USES
from jsxcore.hookspecs import FundKind, FundUses, PluginMeta, hookimpl
from jsxcore.values import RegionCode

__version__ = "0.1.0"

JSX_PLUGIN = PluginMeta(
    name="xupu",
    version=__version__,
    regions=("431224",),
    description="溆浦县计生协规则：村级幸福基金（党建+群建+村规民约+幸福基金）六项用途",
)


@hookimpl
def jsx_fund_allowed_uses(fund_kind: str, region: RegionCode) -> FundUses | None:
    if fund_kind != FundKind.HAPPINESS_FUND:
        return None
    return FundUses(
        HAPPINESS_FUND_USES,
        (
            f"溆浦县村级幸福基金只用于{'、'.join(HAPPINESS_FUND_USES)}",
            "“党建+群建+村规民约+幸福基金”村级治理模式：支出经村级审议并公开账目（依据怀化市计生协2022年第二十一期简报（溆浦县））",
        ),
    )
