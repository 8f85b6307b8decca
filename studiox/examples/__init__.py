"""Example integrations that the example missions start (see missions/invoice.yaml)."""
