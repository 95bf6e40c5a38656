"""The HTTP edge: Tribune's API (``/v1``), the AuthZEN PDP endpoints, health and metrics."""
