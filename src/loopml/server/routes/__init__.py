"""Routers, one per stage."""
