"""funnel: search and recommendation engine for marketplaces."""
__version__ = "0.1.0"
