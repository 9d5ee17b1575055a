"""HTTP metadata and artifact backends: the same store protocols, spoken over the REST API."""
