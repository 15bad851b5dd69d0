"""Object stores (local filesystem, S3) and the storage catalog (SQL, memory)."""
