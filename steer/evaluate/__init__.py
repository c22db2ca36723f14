"""Measurements: does steering work (steerability), and is length doing the work."""
