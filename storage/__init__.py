"""SQL store: SQLAlchemy 2 async models, the unit of work and repositories (which never commit)."""
