"""The oracle-guided search for a maximal robust layered neighborhood."""
