"""Query parameters several routes share, bounded so that no value reaches PostgreSQL out of range."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

MAX_OFFSET = 1_000_000_000_000
"""Far past any table a 3 GiB file makes, and far inside PostgreSQL's BIGINT."""

Offset = Annotated[int, Parameter(ge=0, le=MAX_OFFSET, description=f"Items to skip, 0 to {MAX_OFFSET}")]

Limit = Annotated[int, Parameter(ge=1, le=1000, description="Items per page, 1 to 1000")]
