"""The data contract, validation with quarantine, loaders, and the synthetic marketplace."""
