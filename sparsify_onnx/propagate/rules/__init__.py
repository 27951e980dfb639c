"""Built-in propagation rules, one module per op family (imported by the registry)."""
