"""The domain: plain functions over a session; they may flush, never commit, never import flask."""
