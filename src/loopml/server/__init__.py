"""EDGE: the platform server (FastAPI): REST API under /api/v1, health, metrics, web UI."""
