"""The import path that models registered before the package was organised in rooms
name in their code (``from coverhunter.registry import CoverHunterPyfunc``): they keep
loading. New code imports :mod:`coverhunter.mlops.registry`."""
from coverhunter.mlops.registry import CoverHunterPyfunc

__all__ = ["CoverHunterPyfunc"]
