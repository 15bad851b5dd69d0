"""Storage: datasets and models in object storage (versions, uploads, downloads)."""
