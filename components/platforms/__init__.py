"""Where the stack runs: each module builds the database, broker and ingest service on one platform
and returns the `components.platform.TenantPlatform` the tenants are built on."""
