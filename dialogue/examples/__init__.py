"""Example deployment extensions (tools) that show how a deployment plugs in without touching the core."""
