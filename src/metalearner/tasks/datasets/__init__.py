"""Loaders that decode a dataset once into an in-memory :class:`LabeledSet`."""
