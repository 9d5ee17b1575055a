"""Governance: the hash-chained audit log (roles, lineage and reports come with later stages)."""
