"""Datasets: canonical records, one loader per upstream format, validation, statistics."""
