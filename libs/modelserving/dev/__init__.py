"""Helpers for training and testing services; serving never imports them."""
