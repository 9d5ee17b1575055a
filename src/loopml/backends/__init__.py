"""SEAM: metadata backends (SQL now; an HTTP client backend comes with the server)."""
