"""Business understanding: projects with a business goal, OKRs and KPIs (stage 1)."""
