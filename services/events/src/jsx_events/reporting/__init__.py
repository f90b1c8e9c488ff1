"""What was done against plans and targets: plan fulfilment (GetPlan, ListPlans), cadence
compliance (GetComplianceReport) and summaries (GetSummary). Reads the other contexts
through their services; owns no tables."""
