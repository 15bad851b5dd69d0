"""Images: the catalog of environment images, builds and saves (issue 15)."""
