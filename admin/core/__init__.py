"""Cross-cutting pieces of the admin backend: settings, database, security, audit."""
