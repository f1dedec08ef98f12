"""Sample quality and synthetic-data utility."""
