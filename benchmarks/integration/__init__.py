"""Checks across the whole command line, run by hand around a refactor (see ``same_outputs``)."""
