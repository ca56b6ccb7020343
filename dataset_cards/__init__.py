"""Jinja templates of dataset and model cards, installed as ``skillmix.cards``."""
