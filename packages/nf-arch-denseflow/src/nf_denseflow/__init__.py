"""nf-arch-denseflow."""
