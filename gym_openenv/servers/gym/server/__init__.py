"""Server side of the Gymnasium environment server."""
