"""Sundial's SQL: migrations/NNNN_name.sql and queries/*.sql, read by sundial.core.sql."""
