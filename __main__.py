"""The telemetry stack: see README.md and components/stack.py."""

from components.stack import main

main()
