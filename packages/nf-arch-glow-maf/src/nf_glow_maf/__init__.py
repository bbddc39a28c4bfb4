"""nf-arch-glow-maf."""
