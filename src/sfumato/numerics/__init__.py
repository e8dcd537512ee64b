"""Numerical building blocks shared by every stage (no models, no images): an Adam for one tensor."""
