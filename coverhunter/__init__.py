"""CoverHunter."""
