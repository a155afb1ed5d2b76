"""Benchmarks: commands that print figures (never timed tests). See the README's "Benchmarks"."""
