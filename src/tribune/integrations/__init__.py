"""Agent-framework adapters; each is an optional extra the core never imports."""
