"""Platform-neutral core: message types, the command router, middleware and feature handlers."""
