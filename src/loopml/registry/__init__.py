"""Stage 4: registered models, versions, aliases, promotion gates and approvals."""
