"""Diabetes disease-progression model service."""
