"""Iris species model service."""
