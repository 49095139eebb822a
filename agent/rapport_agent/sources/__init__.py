"""Local sources: SQL tables (sql.py); the CSV drop folder is read in scan.py."""
