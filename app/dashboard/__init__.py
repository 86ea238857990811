"""Org dashboard: revenue, customers, grants, refunds and the audit trail."""
