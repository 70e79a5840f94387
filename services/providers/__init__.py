"""Model providers: each wraps one SDK and keeps its types inside."""
