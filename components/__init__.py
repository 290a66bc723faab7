"""Pulumi components of the telemetry stack; one ComponentResource per module."""
