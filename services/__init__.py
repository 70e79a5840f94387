"""Services: text generation and the other model-backed capabilities, behind small protocols."""
