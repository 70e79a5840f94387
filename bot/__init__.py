"""Composition root: settings, CLI, HTTP app and platform adapters."""
