"""nf-arch-tarflow."""
