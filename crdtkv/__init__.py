"""crdtkv: a geo-replicated key-value store in which every value is a CRDT."""

__version__ = "0.1.0"
