"""The REST API (DRF): request parsing and validation at the edge, thin views over services."""
