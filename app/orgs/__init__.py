"""Organizations (tenants), memberships and per-org branding settings."""
