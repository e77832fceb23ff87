"""OS backends: the only modules that make OS-specific calls."""
