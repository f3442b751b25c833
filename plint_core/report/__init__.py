"""Presenting a finished run: its tables and summaries, its figures, and a self-contained HTML report."""
