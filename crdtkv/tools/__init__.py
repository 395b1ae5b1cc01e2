"""Tools around the store: command-line front ends, local clusters, benchmarks."""
