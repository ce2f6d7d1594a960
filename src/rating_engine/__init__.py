"""Rating engine: tariffs compiled to arrays and Numba kernels over Arrow usage and flows."""

from .errors import RatingError, TariffError
from .schemas import RATED_SCHEMA, SUBSCRIPTION_SCHEMA

__all__ = ["RATED_SCHEMA", "SUBSCRIPTION_SCHEMA", "RatingError", "TariffError"]
