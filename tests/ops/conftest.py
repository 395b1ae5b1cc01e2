"""The API tests' served replica, for the table's HTTP checks."""

from tests.api.conftest import make_served, served  # noqa: F401 - fixtures
