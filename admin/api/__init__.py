"""The versioned REST API."""
