"""年度计划: a site's or an association's plan for a year and its items."""
