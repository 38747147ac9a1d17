from tests.mcp.conftest import recorder

__all__ = ["recorder"]
