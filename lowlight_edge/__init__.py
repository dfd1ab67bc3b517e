"""Shared plumbing for every stage: user errors, hashing, atomic writes, image I/O."""
