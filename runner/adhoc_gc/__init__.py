"""adhoc-gc: deletes auto-created (ad-hoc) customer stacks from PostgreSQL, in batches."""

__version__ = "0.1.0"
