"""Helpers shared by several test folders: real network peers of the tests' own."""
