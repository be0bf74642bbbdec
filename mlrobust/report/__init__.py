"""Reporting: console, JSON and plots of a search result."""
