"""SQL metadata backend: SQLAlchemy 2 tables, one Alembic history, one store class per stage."""
