"""怀化市 (431200) rules shared by its counties: the 暖心家园 cadence
“年度有计划、季度有慰问、每月有活动” with one volunteer per special family,
and the six uses a village 幸福基金 may be spent on.

Source: 怀化市计生协 2022 年第二十一期简报 (二、强化家庭帮扶服务; 创建“幸福基金”).
County plugins under 怀化 build on these tables by importing them.
"""

from __future__ import annotations

from jsxcore.hookspecs import CadenceTarget, FundKind, FundUses, PluginMeta, hookimpl
from jsxcore.values import RegionCode

__version__ = "0.1.0"

JSX_PLUGIN = PluginMeta(
    name="huaihua",
    version=__version__,
    regions=("431200",),
    description="怀化市计生协规则：暖心家园“年度有计划、季度有慰问、每月有活动”，幸福基金六项用途",
)

SOURCE = "依据怀化市计生协2022年第二十一期简报"

WARM_HOME_TARGETS: tuple[CadenceTarget, ...] = (
    CadenceTarget(
        "huaihua.warm_home.plan", "WARM_HOME", "PLAN", 1, "YEAR", "暖心家园年度有计划：每年制定 1 份年度计划"
    ),
    CadenceTarget(
        "huaihua.warm_home.visit",
        "WARM_HOME",
        "CARE_VISIT",
        1,
        "QUARTER",
        "暖心家园季度有慰问：每季度至少走访慰问 1 次",
    ),
    CadenceTarget(
        "huaihua.warm_home.monthly", "WARM_HOME", "ANY", 1, "MONTH", "暖心家园每月有活动：每月至少开展 1 次活动"
    ),
    CadenceTarget(
        "huaihua.warm_home.pairing",
        "WARM_HOME",
        "PAIRING",
        1,
        "YEAR",
        "每个暖心家园明确至少 1 名志愿者联系 1 户计生特殊家庭",
    ),
)

#: What a village 幸福基金 may be spent on.
HAPPINESS_FUND_USES: tuple[str, ...] = ("尊老爱幼", "生育关怀", "文体公益", "奖学助学", "扶贫帮困", "村民慰问")


@hookimpl
def jsx_cadence_targets(region: RegionCode, year: int) -> tuple[CadenceTarget, ...]:
    return WARM_HOME_TARGETS


@hookimpl
def jsx_fund_allowed_uses(fund_kind: str, region: RegionCode) -> FundUses | None:
    if fund_kind != FundKind.HAPPINESS_FUND:
        return None
    return FundUses(HAPPINESS_FUND_USES, (f"幸福基金围绕{'、'.join(HAPPINESS_FUND_USES)}等方面使用（{SOURCE}）",))
