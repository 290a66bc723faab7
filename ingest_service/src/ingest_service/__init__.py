"""The telemetry ingest service: EMQX HTTP action -> group commit -> one schema per tenant."""
