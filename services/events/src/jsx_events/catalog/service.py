"""The activity types a region may record: the built-in ones plus its plugin's."""

from __future__ import annotations

from jsxcore.plugins import PluginHost
from jsxcore.values import RegionCode


class Catalog:
    """Asks the region's plugin (``jsx_activity_types``) for the types it adds."""

    def __init__(self, plugins: PluginHost) -> None:
        self.plugins = plugins

    async def activity_types(self, region: RegionCode) -> dict[str, str]:
        """Plugin-provided types for a region: code → Chinese name."""
        decision = await self.plugins.acall("jsx_activity_types", region)
        return {t.code: t.name for t in (decision.value or ())}
