"""Loyalty: the program, the append-only ledger, lots and the balance projection."""
