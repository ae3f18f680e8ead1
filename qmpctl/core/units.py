"""Sizes used across layers (guest pages are 4 KiB on both architectures we run)."""

PAGE_SIZE = 4096
KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
