"""The kernel's own pages under ``/_kernkoa/``: listings, OpenAPI, docs, info and health."""
