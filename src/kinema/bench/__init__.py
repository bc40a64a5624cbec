"""Benchmarks of the generation pipeline (`kinema bench modes`)."""
