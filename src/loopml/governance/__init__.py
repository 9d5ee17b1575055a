"""Governance: roles and permissions, identities, and the hash-chained audit log."""
