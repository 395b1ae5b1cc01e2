"""The image every deployment check starts from: compose/Dockerfile, parsed."""

from __future__ import annotations

import pytest

from tests.deploy.support import Image, load_image


@pytest.fixture(scope="module")
def image() -> Image:
    return load_image()
