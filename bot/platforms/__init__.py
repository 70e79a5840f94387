"""Platform adapters: one module per chat surface."""
