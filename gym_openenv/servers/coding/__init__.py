"""Coding: run Python in a bubblewrap sandbox, free-form or against hidden tests."""
