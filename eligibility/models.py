"""Eligibility rule sets and portfolio-margin applications."""
