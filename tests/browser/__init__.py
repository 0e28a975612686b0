"""Tests in a real browser (chromium through Playwright)."""
