"""B2B accounts: companies, their contacts (customers with a role), their orders and
invoices, and the balance their open invoices owe (docs/accounts.md)."""
