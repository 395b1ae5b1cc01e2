"""Delta-state anti-entropy between crdtkv replicas."""
