"""Model host: device placement, offline model files, loading models once."""
