"""Definitions of the quality stage."""
