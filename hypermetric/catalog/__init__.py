"""The metadata DB: models, migrations, and the transactions every other layer asks for.

SQLAlchemy is imported only in this package; records it hands out are frozen dataclasses.
"""

__all__: list[str] = []
