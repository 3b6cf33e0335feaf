"""Metrics, each with a name, a version and the protocol it follows."""
