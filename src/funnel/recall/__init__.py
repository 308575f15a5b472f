"""Recall: candidate generators and the merger with quotas and provenance."""
