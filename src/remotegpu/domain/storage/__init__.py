"""Storage: datasets, models, versions and their manifests."""
